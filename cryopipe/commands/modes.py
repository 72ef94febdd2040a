"""Modes: normal modes of the reference (ANM on Cα or RTB), extended to all atoms; npz + NMWiz .nmd."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_modes", "out_nmd"]


def params_from_config(cfg: dict) -> dict:
    return dict(cfg["modes"])


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--pdb", required=True, help="centred reference PDB (from `reference`)")
    p.add_argument("--out-modes", required=True, help="output modes .npz (amplitude 1 = 1 Å RMSD)")
    p.add_argument("--out-nmd", required=True, help="output .nmd for VMD's NMWiz")


def main(args: argparse.Namespace) -> None:
    import prody

    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.structure import parse_structure
    from cryopipe.structure.modes import compute_modes

    params = resolve_params(args, params_from_config)
    sel = parse_structure(args.pdb, "all")
    modes, model, ca = compute_modes(
        sel, params["method"], params["n_modes"], params["cutoff"], params["gamma"], params["rtb_block_size"]
    )
    modes.save(args.out_modes)
    with atomic_path(args.out_nmd) as tmp:
        prody.writeNMD(str(tmp), model, ca if params["method"] == "anm" else sel)
    print(
        f"modes: {params['method']} {len(modes.numbers)} modes ({modes.numbers[0]}..{modes.numbers[-1]}) "
        f"over {modes.vectors.shape[1]} atoms"
    )
