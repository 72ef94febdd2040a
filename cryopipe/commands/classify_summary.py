"""Classify-summary: accuracy of every classifier across the SNR grid (the report's Tables 1 and 2).

summary.csv (one row per SNR × classifier, with 95% Wilson intervals), summary.md (SNR × classifier, the
report's rows beside), accuracy_vs_snr.png.
"""

from __future__ import annotations

import argparse

OUTPUTS = ["out_table", "out_markdown", "out_plot"]


def add_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--accuracy", nargs="+", required=True, help="every SNR's accuracy.csv (classify-evaluate)")
    p.add_argument("--classes", type=int, required=True, help="number of classes (chance = 1 / classes)")
    p.add_argument("--out-table", required=True)
    p.add_argument("--out-markdown", required=True)
    p.add_argument("--out-plot", required=True)


def main(args: argparse.Namespace) -> None:
    import pandas as pd

    from cryopipe.analysis.errors import to_markdown
    from cryopipe.classify.figures import REPORT_ACCURACY, save_accuracy_vs_snr
    from cryopipe.io.atomic import atomic_path

    summary = pd.concat([pd.read_csv(p) for p in args.accuracy], ignore_index=True)
    summary = summary.sort_values("snr", ascending=False, kind="stable").reset_index(drop=True)
    with atomic_path(args.out_table) as tmp:
        summary.to_csv(tmp, index=False, float_format="%.4f")
    cell = summary.assign(
        cell=[
            f"{a:.1%} ({lo:.1%}–{hi:.1%})"
            for a, lo, hi in zip(summary["accuracy"], summary["ci_low"], summary["ci_high"])
        ]
    )
    wide = cell.pivot(index="snr", columns="classifier", values="cell")[summary["classifier"].unique()]
    for name, values in REPORT_ACCURACY.items():
        wide[name] = [f"{values[s]:.0%}" if s in values else "" for s in wide.index]
    best = summary.loc[summary.groupby("snr")["accuracy"].idxmax()].set_index("snr")
    wide["best"] = [f"{best.loc[s, 'classifier']}" for s in wide.index]
    wide = wide.sort_index(ascending=False).reset_index()
    wide["snr"] = [f"{v:g}" for v in wide["snr"]]
    images = int(summary["images"].iloc[0])
    text = (
        f"Test accuracy (95% Wilson interval, {images} test images per SNR; chance {1 / args.classes:.0%}).\n\n"
        + to_markdown(wide)
        + "\n"
    )
    with atomic_path(args.out_markdown) as tmp:
        open(tmp, "w").write(text)
    save_accuracy_vs_snr(args.out_plot, summary, 1 / args.classes)
    print(text)
