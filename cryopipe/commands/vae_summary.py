"""VAE-summary: DeepHEMNMA's amplitudes and the VAE's z side by side on the same particles, per data set.

For each embedding (DeepHEMNMA: the network's set-2 predictions, set 1's alignment; the VAE: every particle):
|Spearman ρ| of PC1 with the true trajectory position, k-means accuracy with the true states (discrete
distributions), and the groups' map resolution vs the truth (FSC 0.5, `evaluate`). summary.csv / .md / .png.
"""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_table", "out_markdown", "out_plot"]


def params_from_config(cfg: dict) -> dict:
    return {"distribution": cfg["conformations"]["distribution"], "seed": cfg["seed"]}


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--datasets", nargs="+", required=True, help="data set names, in the order of the files")
    p.add_argument("--truth", nargs="+", required=True, help="each data set's simulate/<dataset>/truth.csv")
    p.add_argument("--deephemnma-space", nargs="+", required=True, help="each analysis/<dataset>/space.csv")
    p.add_argument("--deephemnma-resolutions", nargs="+", required=True, help="each analysis/<dataset>/resolutions.csv")
    p.add_argument("--vae-space", nargs="+", required=True, help="each vae/<dataset>/analysis/space.csv")
    p.add_argument("--vae-resolutions", nargs="+", required=True, help="each vae/<dataset>/analysis/resolutions.csv")
    p.add_argument("--vae-history", nargs="+", required=True, help="each vae/<dataset>/history.csv (time per epoch)")
    p.add_argument("--out-table", required=True)
    p.add_argument("--out-markdown", required=True)
    p.add_argument("--out-plot", required=True)


def embedding_scores(space, truth, names: list[str], discrete: bool, seed: int) -> dict:
    """Spearman of PC1 (recomputed on these rows) and k-means accuracy for the rows of one embedding."""
    import numpy as np

    from cryopipe.analysis.separation import kmeans_accuracy, trajectory_spearman
    from cryopipe.analysis.space import fit_pca

    label = truth.set_index("particle").loc[space["particle"], "label"].to_numpy()
    x = space[names].to_numpy(np.float64)
    pc1 = fit_pca(x).transform(x)[:, 0]
    return {
        "images": len(space),
        "spearman_pc1": trajectory_spearman(pc1, label),
        "kmeans_accuracy": kmeans_accuracy(x, label, seed) if discrete else float("nan"),
    }


def main(args: argparse.Namespace) -> None:
    import pandas as pd

    from cryopipe.analysis.errors import to_markdown
    from cryopipe.analysis.space import embedding_columns
    from cryopipe.errors import CryopipeError
    from cryopipe.io.atomic import atomic_path
    from cryopipe.plots import save_embedding_comparison

    params = resolve_params(args, params_from_config)
    discrete = params["distribution"] == "discrete"
    files = [args.truth, args.deephemnma_space, args.deephemnma_resolutions, args.vae_space, args.vae_resolutions]
    if any(len(f) != len(args.datasets) for f in files + [args.vae_history]):
        raise CryopipeError("vae-summary: give one file of every kind per data set, in the order of --datasets")
    rows = []
    for i, ds in enumerate(args.datasets):
        truth = pd.read_csv(args.truth[i])
        vae_seconds = float(pd.read_csv(args.vae_history[i])["seconds"].median())
        for method, space_path, res_path in (
            ("DeepHEMNMA", args.deephemnma_space[i], args.deephemnma_resolutions[i]),
            ("VAE", args.vae_space[i], args.vae_resolutions[i]),
        ):
            space = pd.read_csv(space_path)
            names = embedding_columns(space.columns)
            resolution = pd.read_csv(res_path)["resolution vs truth @0.5 (Å)"]
            for source, part in space.groupby("source", sort=False):
                rows.append(
                    {
                        "dataset": ds,
                        "method": method,
                        "source": source,
                        **embedding_scores(part, truth, names, discrete, params["seed"]),
                        "groups_resolution_vs_truth_mean": float(resolution.mean()),
                        "groups_resolution_vs_truth_best": float(resolution.min()),
                        "seconds_per_epoch": vae_seconds if method == "VAE" else float("nan"),
                    }
                )
    table = pd.DataFrame(rows)
    with atomic_path(args.out_table) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    headers = {
        "spearman_pc1": "|Spearman| PC1 vs trajectory",
        "kmeans_accuracy": "k-means accuracy",
        "groups_resolution_vs_truth_mean": "group maps vs truth @0.5, mean (Å)",
        "groups_resolution_vs_truth_best": "best (Å)",
        "seconds_per_epoch": "VAE s/epoch",
    }
    with atomic_path(args.out_markdown) as tmp:
        tmp.write_text(to_markdown(table.rename(columns=headers), floatfmt=".3f") + "\n")
    save_embedding_comparison(args.out_plot, table, discrete)
    for r in rows:
        print(
            f"vae-summary: {r['dataset']} {r['method']} ({r['source']}, {r['images']} images): |ρ| PC1 "
            f"{r['spearman_pc1']:.3f}, k-means {r['kmeans_accuracy']:.3f}, "
            f"maps vs truth {r['groups_resolution_vs_truth_mean']:.2f} Å"
        )
