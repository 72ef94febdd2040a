"""Homologues: the class builder of the classification benchmark (PNNL PDX1.2 / PDX1.3, issue 17).

A homo-oligomeric ring in K arrangements of two subunit variants (`cryopipe.structure.homologues`). Writes
the all-A assembly's atoms with one presence mask per class (.npz) and a table per class: its pattern,
atoms, the share of atoms that differ from every other class, and how its noiseless map differs from the
first class's: the lowest FSC between the two and its shell (Å), and ‖m − m₁‖/‖m₁‖.
"""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_classes", "out_table"]


def params_from_config(cfg: dict) -> dict:
    c = cfg["classification"]
    return {**c["classes"], "box": c["box"], "pixel_size": c["pixel_size"], "resolution": c["resolution"]}


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--out-classes", required=True, help="output .npz: the all-A assembly's atoms, one mask per class")
    p.add_argument("--out-table", required=True, help="output CSV: class, pattern, atoms, differing atoms, map FSC")


def main(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd
    import torch

    from cryopipe.analysis.fsc import fsc
    from cryopipe.imaging.project import atoms_to_map, sigma_for_resolution
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.structure import atoms_from_selection, parse_structure
    from cryopipe.structure.homologues import differing_fraction, exposed_loop, homologue_classes

    params = resolve_params(args, params_from_config)
    atoms = atoms_from_selection(parse_structure(params["pdb"], params["selection"]))
    loop = exposed_loop(atoms.coords, atoms.names, atoms.resnums, atoms.chains, params["loop_length"])
    classes = homologue_classes(atoms.chains, atoms.resnums, loop, params["arrangements"])

    def volume(keep):
        return atoms_to_map(torch.as_tensor(atoms.coords[keep]), torch.as_tensor(atoms.weights[keep]),
                            pixel_size=params["pixel_size"], size=params["box"],
                            sigma=sigma_for_resolution(params["resolution"]))  # fmt: skip

    first = volume(classes[0].keep)
    rows = []
    for c in classes:
        m = volume(c.keep)
        _, curve = fsc(first, m)
        rows.append(
            {
                "class": c.name,
                "pattern": c.pattern,
                "atoms": int(c.keep.sum()),
                **{f"differing_vs_{o.name}": differing_fraction(c, o) for o in classes},
                # the FSC never drops to 0.5 between classes this alike: its lowest value, and at which Å
                f"min_fsc_vs_{classes[0].name}": float(curve[1:].min()),
                "min_fsc_at (Å)": params["box"] * params["pixel_size"] / (1 + int(np.argmin(curve[1:]))),
                f"map_difference_vs_{classes[0].name}": float(torch.linalg.norm(m - first) / torch.linalg.norm(first)),
            }
        )
    table = pd.DataFrame(rows)
    with atomic_path(args.out_classes) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, coords=atoms.coords, weights=atoms.weights, chains=atoms.chains, resnums=atoms.resnums,
                     names=np.array([c.name for c in classes]), keep=np.stack([c.keep for c in classes]),
                     loop=np.array(loop))  # fmt: skip
    with atomic_path(args.out_table) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    most = max(differing_fraction(a, b) for a in classes for b in classes)
    print(
        f"homologues: {len(classes)} classes of {params['pdb']} ({len(atoms.coords)} atoms), loop residues "
        f"{loop[0]}–{loop[1]} removed in B subunits; at most {most:.1%} of the atoms differ between two classes"
    )
