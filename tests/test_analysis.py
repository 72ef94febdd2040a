"""Stage 3: conformational space, groups, STAR subsets, half-map reconstruction, FSC evaluation, trajectories."""

import json

import mrcfile
import numpy as np
import pandas as pd
import pytest
import torch

from cryopipe.analysis.errors import errors, to_markdown
from cryopipe.analysis.groups import assign_groups, density_peaks, in_polygons, n_groups, pc1_bins
from cryopipe.analysis.space import fit_pca
from cryopipe.geometry import matrix_to_euler, random_rotations
from cryopipe.imaging.ctf import ctf_2d
from cryopipe.imaging.fourier import crop_centered, pad_centered
from cryopipe.imaging.project import atoms_to_map, project_atoms
from cryopipe.io.mrc import write_mrc
from cryopipe.io.star import image_names, load_images, make_optics, read_star, write_star
from helpers import TINY, corr, run_cli, stage_json


def test_pca_recovers_the_axis_with_a_fixed_sign():
    g = np.random.default_rng(0)
    v = np.array([0.6, -0.8, 0.0])
    x = 3.0 * g.standard_normal((500, 1)) * v + 0.1 * g.standard_normal((500, 3)) + [1.0, 2.0, -1.0]
    pca = fit_pca(x)
    assert abs(pca.axes[0] @ v) > 0.999
    assert pca.axes[0][np.argmax(np.abs(pca.axes[0]))] > 0  # sign convention: largest loading positive
    assert pca.explained[0] > 0.99 and np.sqrt(pca.variance[0]) == pytest.approx(3.0, rel=0.1)
    np.testing.assert_allclose(pca.inverse(pca.transform(x)), x, atol=1e-10)
    flipped = fit_pca(x[::-1])
    np.testing.assert_allclose(flipped.axes, pca.axes, atol=1e-10)


def test_groups_by_bins_kmeans_gmm_and_polygons():
    g = np.random.default_rng(1)
    centres = np.array([[-6.0, 0.0], [0.0, 4.0], [6.0, 0.0]])
    true = np.repeat([2, 0, 1], 50)  # deliberately not in PC1 order
    pts = centres[true] + 0.5 * g.standard_normal((150, 2))
    pc1 = pts[:, 0]
    for method in ("kmeans", "gmm"):
        labels = assign_groups(pts, pc1, {"method": method, "k": 3}, seed=0)
        # Pure clusters, renumbered by mean PC1: group 0 is the leftmost.
        for k in range(3):
            assert len(set(true[labels == k])) == 1
        means = [pc1[labels == k].mean() for k in range(3)]
        assert means == sorted(means)
    eq = pc1_bins(pc1, 3)
    assert np.bincount(eq).tolist() == [50, 50, 50]
    edges = pc1_bins(pc1, 0, edges=[-3.0, 3.0, 20.0])
    assert (
        (edges[pc1 < -3] == -1).all() and (edges[(pc1 >= -3) & (pc1 < 3)] == 0).all() and (edges[pc1 >= 3] == 1).all()
    )
    square = [[-1, 3], [1, 3], [1, 5], [-1, 5]]
    lab = in_polygons(np.array([[0.0, 4.0], [5.0, 5.0]]), [square])
    assert lab.tolist() == [0, -1]
    assert n_groups({"method": "polygons", "polygons": [square, square]}) == 2
    assert n_groups({"method": "pc1_bins", "k": 4, "bins": [0, 1, 2]}) == 2


def test_dense_regions_find_the_dense_blobs_and_leave_the_background_out():
    g = np.random.default_rng(2)
    centres = np.array([[3.0, -1.0], [-3.0, 0.0], [0.0, 2.5]])
    sizes = [300, 600, 400]  # the densest blob is not the first, nor leftmost
    blobs = np.concatenate([c + 0.3 * g.standard_normal((n, 2)) for c, n in zip(centres, sizes)])
    which = np.repeat([0, 1, 2], sizes)
    background = g.uniform(-6, 6, (300, 2))
    pts = np.concatenate([blobs, background])
    found, _bandwidth, separation = density_peaks(pts, 3)
    for c in centres:  # each blob centre found once, to within a fraction of its width
        assert np.linalg.norm(found - c, axis=1).min() < 0.15
    assert np.linalg.norm(found[0] - centres[1]) < 0.15  # densest first
    labels = assign_groups(pts, pts[:, 0], {"method": "dense", "k": 3}, seed=0)
    # Groups numbered by mean PC1 (here x): group 0 is the blob at x = −3, group 2 the one at x = 3.
    for grp, blob in ((0, 1), (1, 2), (2, 0)):
        assert (labels[: len(blobs)][which == blob] == grp).mean() > 0.99
    far = np.linalg.norm(background[:, None] - centres[None], axis=2).min(1) > separation / 2 + 0.2
    assert (labels[len(blobs) :][far] == -1).all() and far.sum() > 150  # the empty space is in no group
    narrow = assign_groups(pts, pts[:, 0], {"method": "dense", "k": 3, "radius": 0.5}, seed=0)
    assert ((narrow >= 0) <= (labels >= 0)).all() and (narrow >= 0).sum() < (labels >= 0).sum()
    with pytest.raises(ValueError, match=r"analysis\.cluster\.k"):  # 40 regions 4 units apart do not fit
        assign_groups(pts, pts[:, 0], {"method": "dense", "k": 40, "separation": 4.0}, seed=0)


def test_umap_is_seeded_and_keeps_clusters_apart():
    from cryopipe.analysis.space import fit_umap

    g = np.random.default_rng(2)
    x = np.concatenate([g.normal(0, 0.3, (60, 3)), g.normal(5, 0.3, (60, 3))])
    a, b = fit_umap(x, seed=3, n_neighbors=10), fit_umap(x, seed=3, n_neighbors=10)
    np.testing.assert_array_equal(a, b)
    d = np.linalg.norm(a[:, None] - a[None], axis=-1)
    np.fill_diagonal(d, np.inf)
    nearest = d.argmin(1)
    assert ((nearest < 60) == (np.arange(120) < 60)).all()


def test_parameter_errors_know_the_answer():
    g = np.random.default_rng(3)
    n, names = 20, ["mode7", "mode8"]
    euler = matrix_to_euler(random_rotations(n, torch.Generator().manual_seed(4))).numpy()
    a = {"amplitudes": g.normal(size=(n, 2)), "euler": euler, "shifts": g.normal(size=(n, 2))}
    coords, modes = g.normal(0, 10, (50, 3)), g.normal(size=(2, 50, 3))
    e = errors(a, a, names, coords, modes, 1.5)
    assert all(np.allclose(v, 0, atol=1e-5) for v in e.values())
    b = {
        "amplitudes": a["amplitudes"] + [0.5, 0.0],
        "euler": euler + [0.0, 0.0, 10.0],
        "shifts": a["shifts"] + [3.0, 4.0],
    }
    e = errors(b, a, names, coords, modes, 1.5)
    np.testing.assert_allclose(e["angle (°)"], 10.0, atol=1e-6)  # a psi offset is an in-plane rotation of 10°
    np.testing.assert_allclose(e["|Δmode7| (Å RMSD)"], 0.5)
    np.testing.assert_allclose(e["shift (px)"], 5.0 / 1.5)
    np.testing.assert_allclose(e["RMSD amplitudes (Å)"], 0.5 * np.sqrt((modes[0] ** 2).sum(1).mean()))
    md = to_markdown(pd.DataFrame({"x": [1.234, np.nan], "y": ["a", "b"]}))
    assert md.splitlines()[2] == "| 1.23 | a |" and "n/a" in md


L, APIX = 40, 2.0


@pytest.fixture(scope="module")
def posed_stack(tmp_path_factory):
    """2,000 CTF-modulated (not phase-flipped), shifted projections of a blob, with a RELION STAR of the true poses."""
    d = tmp_path_factory.mktemp("posed")
    g = np.random.default_rng(5)
    coords, w = torch.tensor(g.normal(0, 7, (200, 3))), torch.tensor(g.uniform(0.5, 2, 200))
    n = 2000
    A = random_rotations(n, torch.Generator().manual_seed(6))
    origins = torch.tensor(g.uniform(-4, 4, (n, 2)))
    df = g.uniform(1e4, 2.5e4, n)
    stack = np.empty((n, L, L), np.float32)
    for i in range(0, n, 250):
        sl = slice(i, i + 250)
        imgs = project_atoms(coords[None], w, A[sl], origins[sl], pixel_size=APIX, size=L, sigma=2.5)
        ctf = ctf_2d(
            df[sl],
            df[sl] - 200,
            np.full(len(imgs), 30.0),
            voltage=300.0,
            spherical_aberration=2.7,
            amplitude_contrast=0.1,
            pixel_size=APIX,
            shape=(2 * L, 2 * L),
            rfft=False,
        ).double()
        F = torch.fft.fft2(torch.fft.ifftshift(pad_centered(imgs, 2 * L), dim=(-2, -1))) * ctf
        stack[sl] = crop_centered(torch.fft.fftshift(torch.fft.ifft2(F).real, dim=(-2, -1)), L).numpy()
    stack += 0.05 * stack.std() * g.standard_normal(stack.shape).astype(np.float32)
    write_mrc(d / "particles.mrcs", stack, APIX)
    euler = matrix_to_euler(A).numpy()
    particles = pd.DataFrame(
        {
            "rlnImageName": image_names(d / "particles.mrcs", n),
            "rlnAngleRot": euler[:, 0],
            "rlnAngleTilt": euler[:, 1],
            "rlnAnglePsi": euler[:, 2],
            "rlnOriginXAngst": origins[:, 0].numpy(),
            "rlnOriginYAngst": origins[:, 1].numpy(),
            "rlnDefocusU": df,
            "rlnDefocusV": df - 200,
            "rlnDefocusAngle": 30.0,
            "rlnOpticsGroup": 1,
        }
    )
    write_star(d / "particles.star", particles, make_optics(APIX, L, 300.0, 2.7, 0.1))
    return d, atoms_to_map(coords, w, pixel_size=APIX, size=L, sigma=2.5)


def test_backproject_cli_recovers_the_map_from_a_star(posed_stack):
    d, vol = posed_stack
    params = json.loads(stage_json("backproject"))
    run_cli(
        "backproject",
        "--params",
        json.dumps(params),
        "--star",
        d / "particles.star",
        "--out-half1",
        d / "h1.mrc",
        "--out-half2",
        d / "h2.mrc",
        "--out-map",
        d / "map.mrc",
    )
    maps = {}
    for name in ("h1", "h2", "map"):
        with mrcfile.open(d / f"{name}.mrc") as mrc:
            assert mrc.voxel_size.x == pytest.approx(APIX) and mrc.data.shape == (L, L, L)
            maps[name] = mrc.data.copy()
    assert corr(maps["map"], vol) > 0.97
    assert corr(maps["h1"], maps["h2"]) > 0.9
    # Wrong shifts (sign flipped) must hurt: the test can fail.
    particles, optics = read_star(d / "particles.star")
    particles[["rlnOriginXAngst", "rlnOriginYAngst"]] *= -1
    from cryopipe.analysis.reconstruct import reconstruct_halves

    bad = reconstruct_halves(particles, optics.iloc[0].to_dict(), d / "particles.star")
    assert corr(bad["full"], vol) < corr(maps["map"], vol) - 0.03


def test_backproject_fsc_regulariser_tracks_the_noise(posed_stack):
    from cryopipe.analysis.fsc import resolution_at
    from cryopipe.analysis.reconstruct import reconstruct_halves

    d, vol = posed_stack
    particles, optics = read_star(d / "particles.star")
    optics_row = optics.iloc[0].to_dict()
    clean = reconstruct_halves(particles.iloc[:600], optics_row, d / "particles.star")
    # Heavy noise: the same poses, images 5× noisier than their signal.
    noisy_stack = load_images(particles.iloc[:600], d / "particles.star")
    noisy_stack = noisy_stack + 5 * noisy_stack.std() * np.random.default_rng(7).standard_normal(
        noisy_stack.shape
    ).astype(np.float32)
    write_mrc(d / "noisy.mrcs", noisy_stack, APIX)
    noisy_p = particles.iloc[:600].copy()
    noisy_p["rlnImageName"] = image_names(d / "noisy.mrcs", 600)
    noisy = reconstruct_halves(noisy_p, optics_row, d / "particles.star")
    assert resolution_at(noisy["fsc"], L, APIX, 0.143) > resolution_at(clean["fsc"], L, APIX, 0.143)
    assert (noisy["regulariser"][5:15] > clean["regulariser"][5:15]).all()
    assert corr(noisy["full"], vol) > 0.5


def test_cluster_writes_star_subsets_that_round_trip(tiny_dataset, tmp_path):
    sim = tiny_dataset / "sim"
    raw, raw_optics = read_star(sim / "particles.star")
    g = np.random.default_rng(8)
    n = len(raw)
    space = pd.DataFrame(
        {
            "particle": np.arange(n),
            "source": "network",
            "pc1": g.normal(size=n),
            "pc2": g.normal(size=n),
            "rlnAngleRot": g.uniform(-180, 180, n),
            "rlnAngleTilt": g.uniform(0, 180, n),
            "rlnAnglePsi": g.uniform(-180, 180, n),
            "rlnOriginXAngst": g.normal(size=n),
            "rlnOriginYAngst": g.normal(size=n),
        }
    )
    space.to_csv(tmp_path / "space.csv", index=False)
    cfg = {**TINY, "analysis": {"cluster": {"method": "pc1_bins", "k": 2}}}
    stars = [tmp_path / "group0.star", tmp_path / "group1.star"]
    run_cli(
        "cluster",
        "--params",
        stage_json("cluster", cfg),
        "--space",
        tmp_path / "space.csv",
        "--raw-star",
        sim / "particles.star",
        "--out-table",
        tmp_path / "groups.csv",
        "--out-groups",
        *stars,
        "--out-plot",
        tmp_path / "groups.png",
    )
    seen = []
    for k, path in enumerate(stars):
        particles, optics = read_star(path)
        assert optics["rlnImagePixelSize"].iloc[0] == raw_optics["rlnImagePixelSize"].iloc[0]
        ids = [int(name.split("@")[0]) - 1 for name in particles["rlnImageName"]]
        seen += ids
        sub = space.set_index("particle").loc[ids]
        np.testing.assert_allclose(particles["rlnAngleTilt"], sub["rlnAngleTilt"], atol=1e-5)
        np.testing.assert_allclose(particles["rlnOriginXAngst"], sub["rlnOriginXAngst"], atol=1e-5)
        np.testing.assert_allclose(particles["rlnDefocusU"], raw["rlnDefocusU"].iloc[ids], atol=1e-3)
        assert (particles["rlnRandomSubset"] == np.array(ids) % 2 + 1).all()
        assert (particles["rlnClassNumber"] == k + 1).all()
        assert (sub["pc1"] <= space["pc1"].median()).all() == (k == 0)
        np.testing.assert_array_equal(
            load_images(particles, path), load_images(raw, sim / "particles.star", np.array(ids))
        )
    assert sorted(seen) == list(range(n))
    # Dense regions: images between them are in no group's STAR; asking for more regions than fit is
    # a one-line error naming the key, and no group file is written.
    dense = {**TINY, "analysis": {"cluster": {"method": "dense", "k": 2}}}
    run_cli(
        "cluster",
        "--params",
        stage_json("cluster", dense),
        "--space",
        tmp_path / "space.csv",
        "--raw-star",
        sim / "particles.star",
        "--out-table",
        tmp_path / "dense.csv",
        "--out-groups",
        *stars,
        "--out-plot",
        tmp_path / "dense.png",
    )
    labels = pd.read_csv(tmp_path / "dense.csv")["group"]
    assert (labels == -1).any() and sum(len(read_star(p)[0]) for p in stars) == (labels >= 0).sum()
    crowded = {**TINY, "analysis": {"cluster": {"method": "dense", "k": 2, "separation": 100.0}}}
    fresh = [tmp_path / "crowded0.star", tmp_path / "crowded1.star"]
    proc = run_cli(
        "cluster",
        "--params",
        stage_json("cluster", crowded),
        "--space",
        tmp_path / "space.csv",
        "--raw-star",
        sim / "particles.star",
        "--out-table",
        tmp_path / "crowded.csv",
        "--out-groups",
        *fresh,
        "--out-plot",
        tmp_path / "crowded.png",
        check=False,
    )
    assert proc.returncode != 0 and "analysis.cluster.k" in proc.stderr and "space.csv" in proc.stderr
    assert not any(p.exists() for p in [*fresh, tmp_path / "crowded.csv"])


def test_trajectory_frames_are_linear_along_the_axis(tiny_dataset, tmp_path):
    import prody

    from cryopipe.structure.modes import Modes, deform

    g = np.random.default_rng(9)
    pca = fit_pca(g.normal(size=(100, 3)) * [3.0, 1.0, 0.5])
    (tmp_path / "pca.json").write_text(json.dumps({"modes": ["mode7", "mode8", "mode9"], **pca.to_dict()}))
    cfg = {**TINY, "analysis": {"trajectory": {"components": [1, 2], "frames": 5, "extent": 2.0}}}
    out = [tmp_path / "pc1.pdb", tmp_path / "pc2.pdb"]
    run_cli(
        "trajectory",
        "--params",
        stage_json("trajectory", cfg),
        "--pca",
        tmp_path / "pca.json",
        "--reference-pdb",
        tiny_dataset / "ref.pdb",
        "--modes",
        tiny_dataset / "modes.npz",
        "--out-pdbs",
        *out,
    )
    ref = prody.parsePDB(str(tiny_dataset / "ref.pdb"))
    traj = prody.parsePDB(str(out[0]))
    frames = traj.getCoordsets()
    assert frames.shape == (5, ref.numAtoms(), 3)
    vectors = Modes.load(tiny_dataset / "modes.npz").select([7, 8, 9])
    np.testing.assert_allclose(frames[2], deform(ref.getCoords(), vectors, pca.mean), atol=2e-3)
    for i in range(5):
        np.testing.assert_allclose(frames[i] - frames[0], (frames[4] - frames[0]) * i / 4, atol=3e-3)
    end = deform(ref.getCoords(), vectors, pca.mean + 2.0 * np.sqrt(pca.variance[0]) * pca.axes[0])
    np.testing.assert_allclose(frames[4], end, atol=2e-3)


def test_evaluate_scores_maps_against_the_true_centroid(tiny_dataset, tmp_path):
    from cryopipe.commands.evaluate import centroid_map
    from cryopipe.io.structure import Atoms
    from cryopipe.structure.modes import Modes

    truth = pd.read_csv(tiny_dataset / "sim" / "truth.csv").set_index("particle")
    atoms, modes = Atoms.load(tiny_dataset / "atoms.npz"), Modes.load(tiny_dataset / "modes.npz")
    cols = ["mode7", "mode8", "mode9"]
    groups = pd.DataFrame({"particle": truth.index, "group": (truth.index >= 12).astype(int)})
    groups.to_csv(tmp_path / "groups.csv", index=False)
    g = np.random.default_rng(10)
    paths = {"half1": [], "half2": [], "maps": []}
    size, apix = 40, 2.0
    for k in range(2):
        ref, _ = centroid_map(
            truth,
            groups.loc[groups["group"] == k, "particle"].to_numpy(),
            atoms,
            modes.select([7, 8, 9]),
            cols,
            size,
            apix,
            5.0,
        )
        noise = 0.3 * float(ref.std()) if k == 0 else 3.0 * float(ref.std())  # group 1 much noisier
        for key in paths:
            p = tmp_path / f"g{k}_{key}.mrc"
            write_mrc(p, (ref.numpy() + noise * g.standard_normal(ref.shape)).astype(np.float32), apix)
            paths[key].append(p)
    run_cli(
        "evaluate",
        "--params",
        stage_json("evaluate"),
        "--groups-table",
        tmp_path / "groups.csv",
        "--half1",
        *paths["half1"],
        "--half2",
        *paths["half2"],
        "--maps",
        *paths["maps"],
        "--atoms",
        tiny_dataset / "atoms.npz",
        "--modes",
        tiny_dataset / "modes.npz",
        "--truth",
        tiny_dataset / "sim" / "truth.csv",
        "--out-fsc",
        tmp_path / "fsc.csv",
        "--out-resolutions",
        tmp_path / "res.csv",
        "--out-plot",
        tmp_path / "fsc.png",
    )
    res = pd.read_csv(tmp_path / "res.csv")
    assert res["images"].tolist() == [12, 12]
    half, vs_truth = res["resolution half-maps @0.143 (Å)"], res["resolution vs truth @0.5 (Å)"]
    assert half[0] < half[1] and vs_truth[0] < vs_truth[1]
    assert vs_truth[0] < 12.0  # 5-Å Gaussians plus mild noise: matches the truth well beyond 12 Å
    curves = pd.read_csv(tmp_path / "fsc.csv")
    assert curves.groupby("group")["fsc_truth"].first().gt(0.99).all()  # DC shell


@pytest.mark.parametrize(
    "bad, key",
    [
        ({"cluster": {"method": "polygons"}}, "analysis.cluster.polygons"),
        ({"cluster": {"method": "kmeans", "space": "umap"}, "umap": False}, "analysis.cluster.space"),
        ({"cluster": {"method": "dense", "space": "umap"}, "umap": False}, "analysis.cluster.space"),
        ({"cluster": {"bins": [1.0, 0.0]}}, "analysis.cluster.bins"),
    ],
)
def test_inconsistent_analysis_config_names_the_key(bad, key):
    from cryopipe.config import validate_config
    from cryopipe.errors import CryopipeError

    with pytest.raises(CryopipeError, match=key):
        validate_config({"analysis": bad})


def test_params_planned_by_another_version_are_refused(tiny_dataset, tmp_path):
    params = json.loads(stage_json("trajectory"))
    params["cryopipe_version"] = "0.0.0-other"
    proc = run_cli(
        "trajectory",
        "--params",
        json.dumps(params),
        "--pca",
        tmp_path / "none.json",
        "--reference-pdb",
        tiny_dataset / "ref.pdb",
        "--modes",
        tiny_dataset / "modes.npz",
        "--out-pdbs",
        tmp_path / "t.pdb",
        check=False,
    )
    assert proc.returncode == 2 and "planned with cryopipe 0.0.0-other" in proc.stderr
    assert not (tmp_path / "t.pdb").exists()


def test_view_concentration_flags_collapsed_poses():
    from cryopipe.commands.evaluate import view_concentration

    spread = matrix_to_euler(random_rotations(2000, torch.Generator().manual_seed(11))).numpy()
    collapsed = np.array([[30.0, 60.0, 0.0]]) + np.random.default_rng(12).normal(0, 5, (300, 3))
    collapsed[:, 2] = np.random.default_rng(13).uniform(-180, 180, 300)  # in-plane rotation does not change the view
    assert view_concentration(spread) < 0.1
    assert view_concentration(collapsed) > 0.95


def test_refine_cli_refits_set2_and_reports_bad_input(tiny_dataset, tmp_path):
    """The refine command: a local rigid re-fit from poses 5° off brings them back, keeps the amplitudes,
    writes a STAR of the same particles; a missing particle or `mode: none` is a one-line error."""
    from cryopipe.geometry import angular_distance, euler_to_matrix

    sim = tiny_dataset / "sim"
    particles, optics = read_star(sim / "particles.star")
    truth = pd.read_csv(sim / "truth.csv")
    modes = [c for c in truth.columns if c.startswith("mode")]
    start = particles.copy()
    start["rlnAnglePsi"] = start["rlnAnglePsi"] + 5.0
    write_star(tmp_path / "net.star", start, optics)
    truth[["particle"] + modes].to_csv(tmp_path / "net.csv", index=False)
    cfg = {**TINY, "refine": {"mode": "rigid", "search": "local"}}
    common = [
        "--star",
        tmp_path / "net.star",
        "--atoms",
        tiny_dataset / "atoms.npz",
        "--modes",
        tiny_dataset / "modes.npz",
        "--out-star",
        tmp_path / "out.star",
        "--out-amplitudes",
        tmp_path / "out.csv",
        "--out-plot",
        tmp_path / "out.png",
    ]
    run_cli("refine", "--params", stage_json("refine", cfg), "--amplitudes", tmp_path / "net.csv", *common)
    out, _ = read_star(tmp_path / "out.star")
    assert list(out["rlnImageName"]) == list(particles["rlnImageName"])
    angles = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]
    err = angular_distance(
        euler_to_matrix(torch.tensor(out[angles].to_numpy())),
        euler_to_matrix(torch.tensor(particles[angles].to_numpy())),
    ).numpy()
    # From 5° everywhere to well under it on most images (noisy 40-px images with CTF, not preprocessed).
    assert np.median(err) < 3.5 and (err < 5.0).mean() >= 0.75, err
    table = pd.read_csv(tmp_path / "out.csv")
    np.testing.assert_allclose(table[modes].to_numpy(), truth[modes].to_numpy(), atol=1e-5)  # rigid: kept
    assert (tmp_path / "out.png").exists()

    truth[["particle"] + modes].iloc[1:].to_csv(tmp_path / "short.csv", index=False)
    for f in ("out.star", "out.csv", "out.png"):
        (tmp_path / f).unlink()
    proc = run_cli(
        "refine", "--params", stage_json("refine", cfg), "--amplitudes", tmp_path / "short.csv", *common, check=False
    )
    assert proc.returncode == 2 and "short.csv: no row for particle" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "out.star").exists()
    proc = run_cli(
        "refine", "--params", stage_json("refine", TINY), "--amplitudes", tmp_path / "net.csv", *common, check=False
    )
    assert proc.returncode == 2 and "refine.mode" in proc.stderr


def test_coordinates_join_back_onto_the_users_own_star(tiny_dataset, tmp_path):
    """A user's STAR spells image names its own way ("7@stack.mrcs", next to the STAR); `import` keeps them as
    rlnImageOriginalName and `cluster --out-coordinates` keys every particle's coordinates by them, so a plain
    join on rlnImageName puts each particle's group and PC scores back onto the user's table."""
    import shutil

    import starfile

    user = tmp_path / "user"
    user.mkdir()
    shutil.copy(tiny_dataset / "sim" / "particles.mrcs", user / "stack.mrcs")
    blocks = starfile.read(tiny_dataset / "sim" / "particles.star", always_dict=True)
    own = [f"{int(n.split('@')[0])}@stack.mrcs" for n in blocks["particles"]["rlnImageName"]]
    blocks["particles"]["rlnImageName"] = own
    starfile.write(blocks, user / "mine.star", overwrite=True)
    cfg = {**TINY, "data": {"source": "import", "import": {"star": str(user / "mine.star")}}}
    run_cli("import", "--params", stage_json("import_star", cfg), "--out-star", tmp_path / "imported.star")
    n = len(own)
    g = np.random.default_rng(3)
    space = pd.DataFrame({"particle": np.arange(n), "source": "network", "mode7": g.normal(size=n),
                          "pc1": g.normal(size=n), "pc2": g.normal(size=n)})  # fmt: skip
    for c in ("rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"):
        space[c] = g.uniform(-10, 10, n)
    space = space.sample(frac=1.0, random_state=1)  # the space's rows in any order
    space.to_csv(tmp_path / "space.csv", index=False)
    cfg = {**cfg, "analysis": {"cluster": {"method": "pc1_bins", "k": 2}}}
    run_cli("cluster", "--params", stage_json("cluster", cfg), "--space", tmp_path / "space.csv",
            "--raw-star", tmp_path / "imported.star", "--out-table", tmp_path / "groups.csv",
            "--out-groups", tmp_path / "g0.star", tmp_path / "g1.star", "--out-plot", tmp_path / "groups.png",
            "--out-coordinates", tmp_path / "coordinates.csv")  # fmt: skip
    coords = pd.read_csv(tmp_path / "coordinates.csv")
    joined = starfile.read(user / "mine.star", always_dict=True)["particles"].merge(coords, on="rlnImageName")
    assert len(joined) == n and sorted(joined["rlnImageName"]) == sorted(own)
    by_particle = space.set_index("particle")
    ids = [int(name.split("@")[0]) - 1 for name in joined["rlnImageName"]]
    np.testing.assert_allclose(joined["pc1"], by_particle.loc[ids, "pc1"], atol=1e-5)
    groups = pd.read_csv(tmp_path / "groups.csv").set_index("particle")
    np.testing.assert_array_equal(joined["group"], groups.loc[ids, "group"])
    for k in (0, 1):  # the group STARs hold the same images as the CSV's groups
        names = read_star(tmp_path / f"g{k}.star")[0]["rlnImageOriginalName"]
        assert sorted(names) == sorted(joined["rlnImageName"][joined["group"] == k])


def test_separation_scores_are_invariant_to_cluster_names_and_axis_sign():
    """k-means accuracy matches clusters to states one-to-one (names do not matter, mixing does); the PC1
    Spearman score ignores the arbitrary sign of a principal axis."""
    import numpy as np

    from cryopipe.analysis.separation import kmeans_accuracy, trajectory_spearman

    rng = np.random.default_rng(0)
    states = np.repeat([0, 1, 2], 50)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    x = centres[states] + rng.normal(size=(150, 2))
    assert kmeans_accuracy(x, states, 0) == 1.0
    assert kmeans_accuracy(x, (states + 1) % 3, 0) == 1.0  # the states renamed
    mixed = rng.normal(size=(150, 2))  # no structure: near chance (1/3), well below 1
    assert kmeans_accuracy(mixed, states, 0) < 0.6
    t = rng.uniform(size=100)
    assert trajectory_spearman(-3 * t, t) == pytest.approx(1.0)
    assert trajectory_spearman(rng.uniform(size=100), t) < 0.4
