"""Reference: read PDB/mmCIF, select and centre atoms, write atoms (npz, PDB) and the density map (MRC).

Or, with `reference.map`, an EM map: converted into pseudoatoms (3-D Gaussians, `cryopipe.structure.pseudoatoms`)
that stand in for the atoms everywhere downstream (modes, alignment); their PDB has one `CA` per pseudoatom.
"""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_atoms", "out_pdb", "out_map"]


def params_from_config(cfg: dict) -> dict:
    ref = {**cfg["reference"], "box": cfg["simulate"]["box"], "pixel_size": cfg["simulate"]["pixel_size"]}
    if not ref["map"]:  # a PDB reference: the pseudoatom settings do not concern it
        ref.pop("pseudoatoms")
        ref.pop("map")
    else:
        ref["seed"] = cfg["seed"]
        ref["sigma"] = pseudoatom_sigma(cfg)
    return ref


def model_resolution(cfg: dict) -> float:
    """Å whose σ = 0.225·d (`sigma_for_resolution`) is the width of the reference's Gaussians: reference.resolution
    for atoms, reference.pseudoatoms.sigma for a map's pseudoatoms (the simulator and the alignment use it)."""
    import math

    ref = cfg["reference"]
    return pseudoatom_sigma(cfg) * math.pi * math.sqrt(2.0) if ref["map"] else ref["resolution"]


def pseudoatom_sigma(cfg: dict) -> float:
    """Å: reference.pseudoatoms.sigma, or 1.3 × the σ of a map at reference.resolution (σ = 0.225·d): wide enough
    for a few times fewer pseudoatoms than atoms, narrow enough to keep the map's correlation ≥ 0.95
    (`benchmarks/pseudoatoms.py`: 4AKE at 4 Å, σ 1.2 Å: 1,108 pseudoatoms, 0.985; σ 1.5 Å: 0.951)."""
    from cryopipe.imaging.project import sigma_for_resolution

    ref = cfg["reference"]
    return ref["pseudoatoms"]["sigma"] or 1.3 * sigma_for_resolution(ref["resolution"])


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--out-atoms", required=True, help="output .npz of centred atoms")
    p.add_argument("--out-pdb", required=True, help="output centred PDB of the selected atoms")
    p.add_argument("--out-map", required=True, help="output reference map .mrc")


def pseudoatoms_as_atoms(p):
    """`Atoms` of a map's pseudoatoms (`Pseudoatoms`), what the modes and the alignment take: named CA, element C,
    weights the fitted masses, residue numbers 4 Å cells (the coarse stage's beads). Not re-centred: the map's box
    centre stays the origin, the frame of the particles' poses refined against that map."""
    import numpy as np

    from cryopipe.align.model import spatial_groups
    from cryopipe.io.structure import Atoms

    n = len(p.coords)
    return Atoms(
        coords=p.coords,
        weights=p.weights.astype(np.float64),
        names=np.full(n, "CA"),
        elements=np.full(n, "C"),
        resnums=spatial_groups(p.coords),
        chains=np.full(n, "A"),
        center=np.zeros(3),
        bfactors=np.zeros(n),
    )


def map_reference(params: dict, args: argparse.Namespace) -> None:
    """reference.map → pseudoatoms: atoms.npz (weights = the fitted Gaussian masses, element C), their PDB, and
    the pseudoatoms' map on the simulate box."""
    import numpy as np
    import torch

    from cryopipe.errors import CryopipeError
    from cryopipe.imaging.project import atoms_to_map
    from cryopipe.io.mrc import read_mrc, write_mrc
    from cryopipe.structure.pseudoatoms import fit_pseudoatoms, write_pseudoatom_pdb

    volume, apix = read_mrc(params["map"])
    if volume.ndim != 3 or len(set(volume.shape)) != 1:
        raise CryopipeError(f"{params['map']}: reference.map must be a cubic 3-D map, not {volume.shape}")
    if not np.isfinite(volume).all():
        raise CryopipeError(f"{params['map']}: reference.map has NaN/Inf voxels")
    if not apix > 0:
        raise CryopipeError(f"{params['map']}: reference.map has voxel size {apix} Å in its header; set it (Å/voxel)")
    pa = params["pseudoatoms"]
    p = fit_pseudoatoms(
        volume,
        apix,
        params["sigma"],
        threshold=pa["threshold"],
        target_error=pa["target_error"],
        max_atoms=pa["max_atoms"],
        seed=params["seed"],
        progress=True,
    )
    n = len(p.coords)
    atoms = pseudoatoms_as_atoms(p)
    atoms.save(args.out_atoms)
    write_pseudoatom_pdb(args.out_pdb, p)
    vol = atoms_to_map(
        torch.as_tensor(atoms.coords),
        torch.as_tensor(atoms.weights),
        pixel_size=params["pixel_size"],
        size=params["box"],
        sigma=p.sigma,
    )
    write_mrc(args.out_map, vol.numpy(), params["pixel_size"])
    print(
        f"reference: {params['map']} ({volume.shape[0]}³ at {apix:.3g} Å) → {n} pseudoatoms of σ {p.sigma} Å above "
        f"threshold {p.threshold:.4g}: approximation error {p.error:.3f}, correlation with the map {p.correlation:.4f}"
    )


def main(args: argparse.Namespace) -> None:
    import torch

    from cryopipe.imaging.project import atoms_to_map, sigma_for_resolution
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.mrc import write_mrc
    from cryopipe.io.structure import atoms_from_selection, parse_structure

    params = resolve_params(args, params_from_config)
    if params.get("map"):
        return map_reference(params, args)
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
