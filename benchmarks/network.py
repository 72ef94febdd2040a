"""DeepHEMNMA Tables 1–4 analogue from a finished run: network vs ground truth and vs alignment.

For the small test set (the `test` subset of image set 1, never trained on, predicted by the
`infer` rule) and for image set 2, prints mean ± std of the errors of amplitudes (|Δa| per mode,
Å RMSD), angles (angle of R_pred·R_trueᵀ) and shifts (|Δ| px), the same errors as RMSD in Å of
the atoms displaced with predicted vs true parameters (one parameter type at a time), and the
ratio of the network's set-2 errors to the alignment's own errors on set 1 and to the errors of
one constant prediction for every image (the alignment's medians / medoid orientation: what a
network that learnt nothing from the images predicts). The same numbers
feed results/benchmark/parameters.csv; this prints one dataset in full.

    python benchmarks/network.py --results results --dataset snr0.1_df0.5-2
"""

from __future__ import annotations

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results")
    ap.add_argument("--dataset", required=True)
    args = ap.parse_args()

    from pathlib import Path

    import numpy as np
    import pandas as pd

    from cryopipe.commands.tables import dataset_errors

    refined = (Path(args.results) / "refine" / args.dataset / "particles.star").exists()
    _, runs = dataset_errors(args.results, args.dataset, refined=refined)
    cols = list(next(iter(runs.values())).keys())
    table = pd.DataFrame(
        {
            f"{subset}: {comp}": {
                "images": len(e[cols[0]]),
                **{c: f"{np.mean(e[c]):.2f} ± {np.std(e[c]):.2f}" for c in cols},
            }
            for (comp, subset), e in runs.items()
        }
    ).T
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(f"dataset {args.dataset}")
        print(table.to_string())
    net, ali = runs.get(("network vs truth", "set 2")), runs.get(("alignment vs truth", "set 1 (kept)"))
    if net is not None and ali is not None:
        print("\nratio set-2 network error / set-1 alignment error (mean; target ≤ 1.5):")
        print("  " + ", ".join(f"{c}: {np.mean(net[c]) / max(np.mean(ali[c]), 1e-9):.1f}×" for c in cols))
    const = runs.get(("constant prediction vs truth", "set 2"))
    if net is not None and const is not None:
        print("ratio set-2 network error / error of one constant prediction for every image (< 1: the network learnt):")
        print("  " + ", ".join(f"{c}: {np.mean(net[c]) / max(np.mean(const[c]), 1e-9):.2f}" for c in cols))
    ref = runs.get(("network + refinement vs truth", "set 2"))
    if ref is not None and ali is not None:
        print("ratio set-2 error after the pose re-fit (refine stage) / set-1 alignment error:")
        print("  " + ", ".join(f"{c}: {np.mean(ref[c]) / max(np.mean(ali[c]), 1e-9):.1f}×" for c in cols))


if __name__ == "__main__":
    main()
