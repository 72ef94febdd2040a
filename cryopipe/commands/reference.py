"""Reference: read PDB/mmCIF, select and centre atoms, write atoms (npz, PDB) and the density map (MRC)."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_atoms", "out_pdb", "out_map"]


def params_from_config(cfg: dict) -> dict:
    return {**cfg["reference"], "box": cfg["simulate"]["box"], "pixel_size": cfg["simulate"]["pixel_size"]}


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--out-atoms", required=True, help="output .npz of centred atoms")
    p.add_argument("--out-pdb", required=True, help="output centred PDB of the selected atoms")
    p.add_argument("--out-map", required=True, help="output reference map .mrc")


def main(args: argparse.Namespace) -> None:
    import torch

    from cryopipe.imaging.project import atoms_to_map, sigma_for_resolution
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.mrc import write_mrc
    from cryopipe.io.structure import atoms_from_selection, parse_structure

    params = resolve_params(args, params_from_config)
    sel = parse_structure(params["pdb"], params["selection"])
    atoms = atoms_from_selection(sel)
    sel.setCoords(atoms.coords)
    vol = atoms_to_map(
        torch.as_tensor(atoms.coords),
        torch.as_tensor(atoms.weights),
        pixel_size=params["pixel_size"],
        size=params["box"],
        sigma=sigma_for_resolution(params["resolution"]),
    )
    import prody

    atoms.save(args.out_atoms)
    with atomic_path(args.out_pdb) as tmp:
        prody.writePDB(str(tmp), sel)
    write_mrc(args.out_map, vol.numpy(), params["pixel_size"])
    extent = float(abs(atoms.coords).max())
    print(
        f"reference: {len(atoms.coords)} atoms, max |coordinate| {extent:.1f} Å, map {params['box']}³ at "
        f"{params['pixel_size']} Å"
    )
