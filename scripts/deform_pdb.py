#!/usr/bin/env python
"""Write the reference deformed along normal modes as PDB (amplitudes in Å RMSD), e.g. to view a mode.

    python scripts/deform_pdb.py results/reference/reference.pdb results/modes/modes.npz \\
        --modes 7 8 --amplitudes 4 -2 deformed.pdb
    python scripts/deform_pdb.py ... --modes 7 --trajectory -5 5 11 mode7.pdb   # multi-model PDB to animate
"""

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("pdb", help="centred reference PDB written by the `reference` stage")
    ap.add_argument("modes", help="modes.npz written by the `modes` stage")
    ap.add_argument("output")
    ap.add_argument("--modes", type=int, nargs="+", required=True, dest="numbers")
    ap.add_argument("--amplitudes", type=float, nargs="+", help="one per mode, Å RMSD")
    ap.add_argument(
        "--trajectory", type=float, nargs=3, metavar=("FROM", "TO", "STEPS"), help="frames along the first mode, Å RMSD"
    )
    args = ap.parse_args()

    import numpy as np
    import prody

    from cryopipe.io.structure import parse_structure
    from cryopipe.structure.modes import Modes, deform

    sel = parse_structure(args.pdb, "all")
    vectors = Modes.load(args.modes).select(args.numbers)
    if args.trajectory:
        lo, hi, steps = args.trajectory
        amps = np.zeros((int(steps), len(args.numbers)))
        amps[:, 0] = np.linspace(lo, hi, int(steps))
    else:
        if not args.amplitudes or len(args.amplitudes) != len(args.numbers):
            ap.error("give one --amplitudes value per mode, or --trajectory")
        amps = np.asarray(args.amplitudes)[None]
    frames = deform(sel.getCoords(), vectors, amps)
    ag = sel.copy()
    ag.setCoords(frames[0])
    for f in frames[1:]:
        ag.addCoordset(f)
    prody.writePDB(args.output, ag)


if __name__ == "__main__":
    main()
