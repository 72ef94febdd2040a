"""STAR + MRCS written by the pipeline round-trip through starfile/mrcfile with RELION 3.1 columns."""

import mrcfile
import numpy as np
import pandas as pd
import pytest
import starfile

from cryopipe.io.star import load_images, read_star, write_star
from helpers import TINY, run_cli, run_preprocess, run_simulate, stage_json

PARTICLE_COLUMNS = [
    "rlnImageName",
    "rlnAngleRot",
    "rlnAngleTilt",
    "rlnAnglePsi",
    "rlnOriginXAngst",
    "rlnOriginYAngst",
    "rlnDefocusU",
    "rlnDefocusV",
    "rlnDefocusAngle",
    "rlnOpticsGroup",
]
OPTICS_COLUMNS = [
    "rlnOpticsGroup",
    "rlnImagePixelSize",
    "rlnImageSize",
    "rlnVoltage",
    "rlnSphericalAberration",
    "rlnAmplitudeContrast",
]


def test_simulated_star_and_stack_round_trip(tiny_dataset):
    star = tiny_dataset / "sim" / "particles.star"
    blocks = starfile.read(star, always_dict=True)
    assert set(PARTICLE_COLUMNS) <= set(blocks["particles"].columns)
    assert set(OPTICS_COLUMNS) <= set(blocks["optics"].columns)
    optics = blocks["optics"].iloc[0]
    with mrcfile.open(tiny_dataset / "sim" / "particles.mrcs") as mrc:
        assert mrc.data.shape == (24, 40, 40)
        assert float(mrc.voxel_size.x) == optics["rlnImagePixelSize"] == TINY["simulate"]["pixel_size"]
        assert mrc.is_image_stack()
        stack = np.array(mrc.data)
    # Ground truth travels with the stack and agrees with the STAR's poses.
    truth = pd.read_csv(tiny_dataset / "sim" / "truth.csv")
    parts = blocks["particles"]
    np.testing.assert_allclose(truth["rlnAngleTilt"], parts["rlnAngleTilt"], atol=1e-5)
    np.testing.assert_allclose(truth["rlnDefocusU"], parts["rlnDefocusU"], atol=1e-3)
    particles, optics_row = read_star(star)
    np.testing.assert_array_equal(load_images(particles, star), stack)
    # Writing and reading again keeps every value.
    out = tiny_dataset / "copy.star"
    write_star(out, particles, optics_row)
    p2, o2 = read_star(out)
    pd.testing.assert_frame_equal(p2, particles)
    pd.testing.assert_frame_equal(o2, optics_row)


def test_relion30_star_is_converted(tiny_dataset, tmp_path):
    particles, optics = read_star(tiny_dataset / "sim" / "particles.star")
    old = particles.drop(columns=["rlnOriginXAngst", "rlnOriginYAngst", "rlnOpticsGroup"]).copy()
    apix = optics["rlnImagePixelSize"].iloc[0]
    old["rlnOriginX"] = particles["rlnOriginXAngst"] / apix
    old["rlnOriginY"] = particles["rlnOriginYAngst"] / apix
    old["rlnVoltage"], old["rlnSphericalAberration"], old["rlnAmplitudeContrast"] = 200.0, 2.0, 0.1
    old["rlnDetectorPixelSize"], old["rlnMagnification"] = 5.0, 5.0e4 / apix
    old["rlnImageName"] = [
        n.split("@")[0] + "@" + str(tiny_dataset / "sim" / "particles.mrcs") for n in old["rlnImageName"]
    ]
    starfile.write(old, tmp_path / "old.star")
    p, o = read_star(tmp_path / "old.star")
    assert o["rlnImagePixelSize"].iloc[0] == apix and o["rlnImageSize"].iloc[0] == 40
    np.testing.assert_allclose(p["rlnOriginXAngst"], particles["rlnOriginXAngst"], atol=1e-5)


def test_same_seed_same_bytes_different_seed_different(tiny_dataset, tmp_path):
    def simulate(seed, out):
        run_simulate(tiny_dataset, out, "snr0.5_df1-2", {**TINY, "seed": seed})
        return (out / "particles.mrcs").read_bytes()

    original = (tiny_dataset / "sim" / "particles.mrcs").read_bytes()
    assert simulate(TINY["seed"], tmp_path / "a") == original
    assert simulate(TINY["seed"] + 1, tmp_path / "b") != original


def test_preprocess_outputs(tiny_dataset, tmp_path):
    star = tiny_dataset / "sim" / "particles.star"
    run_preprocess(star, tmp_path)
    _particles, optics = read_star(tmp_path / "particles.star")
    assert optics["rlnImageSize"].iloc[0] == 32
    assert optics["rlnImagePixelSize"].iloc[0] == 2.0 * 40 / 32
    with mrcfile.open(tmp_path / "particles.mrcs") as mrc:
        assert float(mrc.voxel_size.x) == 2.5 and mrc.data.shape == (24, 32, 32)
    s1, _ = read_star(tmp_path / "set1.star")
    s2, _ = read_star(tmp_path / "set2.star")
    assert len(s1) + len(s2) == 24 and not set(s1["rlnImageName"]) & set(s2["rlnImageName"])
    split = pd.read_csv(tmp_path / "split.csv")
    assert (split["image_set"] == 1).sum() == len(s1)


def test_import_then_preprocess(tiny_dataset, tmp_path):
    """A user's RELION 3.0 STAR (origins in px, no optics table) → import → preprocess."""
    particles, optics = read_star(tiny_dataset / "sim" / "particles.star")
    apix = optics["rlnImagePixelSize"].iloc[0]
    old = particles.drop(columns=["rlnOriginXAngst", "rlnOriginYAngst", "rlnOpticsGroup"]).copy()
    old["rlnOriginX"] = particles["rlnOriginXAngst"] / apix
    old["rlnOriginY"] = particles["rlnOriginYAngst"] / apix
    old["rlnVoltage"], old["rlnSphericalAberration"], old["rlnAmplitudeContrast"] = 200.0, 2.0, 0.1
    old["rlnImageName"] = [
        n.split("@")[0] + "@" + str(tiny_dataset / "sim" / "particles.mrcs") for n in old["rlnImageName"]
    ]
    starfile.write(old, tmp_path / "user.star")
    cfg = {**TINY, "data": {"source": "import", "import": {"star": str(tmp_path / "user.star"), "pixel_size": apix}}}
    run_cli("import", "--params", stage_json("import_star", cfg), "--out-star", tmp_path / "imported.star")
    p, o = read_star(tmp_path / "imported.star")
    assert o["rlnImagePixelSize"].iloc[0] == apix and o["rlnVoltage"].iloc[0] == 200.0
    np.testing.assert_allclose(p["rlnOriginXAngst"], particles["rlnOriginXAngst"], atol=1e-5)
    run_preprocess(tmp_path / "imported.star", tmp_path / "pre", cfg)
    with mrcfile.open(tmp_path / "pre" / "particles.mrcs") as mrc:
        assert mrc.data.shape == (24, 32, 32)


def test_reference_map_has_voxel_size_and_mass(tiny_dataset):
    from cryopipe.io.mrc import read_mrc
    from cryopipe.io.structure import Atoms

    vol, voxel = read_mrc(tiny_dataset / "map.mrc")
    atoms = Atoms.load(tiny_dataset / "atoms.npz")
    assert voxel == TINY["simulate"]["pixel_size"] and vol.shape == (40, 40, 40)
    assert vol.sum() == pytest.approx(atoms.weights.sum(), rel=1e-3)  # every atom's Gaussian inside the 80 Å box
    np.testing.assert_allclose(atoms.coords.mean(0), 0.0, atol=1e-9)  # centred
    # The map's centre of mass sits at the box centre (pixel L//2), where the atoms' centroid is.
    idx = np.arange(40) - 20
    com_x = (vol.sum((0, 1)) * idx).sum() / vol.sum() * voxel
    weighted = (atoms.coords[:, 0] * atoms.weights).sum() / atoms.weights.sum()
    assert com_x == pytest.approx(weighted, abs=0.01)


def test_stack_writer_header_statistics_and_reader_order(tmp_path):
    """StackWriter (plain writes, statistics streamed at the end) gives the header mrcfile would; StackReader reads
    any order with repeats, across runs of consecutive images, as the data are."""
    import mrcfile

    from cryopipe.io.mrc import StackReader, StackWriter

    data = np.random.default_rng(0).normal(0.3, 2.0, (37, 12, 12)).astype(np.float32)
    with StackWriter(tmp_path / "s.mrcs", 37, 12, 1.7) as w:
        w.write(0, data[:20])
        w.write(20, data[20:])
        np.testing.assert_array_equal(w.read(5, 3), data[5:8])
    with mrcfile.open(tmp_path / "s.mrcs") as m:
        np.testing.assert_array_equal(m.data, data)
        assert m.voxel_size.x == pytest.approx(1.7)
        h = m.header
        assert (h.dmin, h.dmax) == (data.min(), data.max())
        assert h.dmean == pytest.approx(data.mean(dtype=np.float64), rel=1e-6)
        assert h.rms == pytest.approx(data.std(dtype=np.float64), rel=1e-6)
    idx = [36, 0, 1, 2, 17, 2, 35, 9]
    np.testing.assert_array_equal(StackReader(tmp_path / "s.mrcs").read(idx), data[idx])


def test_band_grid_holds_the_lowpass():
    """The local fit's fine grid: even, its Nyquist passes the low-pass, never larger than the image."""
    from cryopipe.align.run import band_size

    for L, apix, lowpass in [(64, 1.3, 5.0), (128, 0.65, 5.0), (32, 2.5, 5.5), (200, 1.0, 3.0)]:
        n = band_size(L, apix, lowpass)
        assert n % 2 == 0 and n <= L
        assert n == L or 2 * (L * apix / n) <= lowpass  # the cropped grid's Nyquist (Å) is finer than the low-pass
    assert band_size(64, 1.3, 5.0) == 36


def test_spatial_groups_are_cells_numbered_in_order():
    from cryopipe.align.model import spatial_groups

    pts = np.array([[0.5, 0.5, 0.5], [9.0, 0.0, 0.0], [1.0, 3.0, 2.0], [9.5, 1.0, 1.0], [-1.0, 0.0, 0.0]])
    np.testing.assert_array_equal(spatial_groups(pts, 4.0), [1, 2, 1, 2, 3])
