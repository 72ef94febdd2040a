"""Small matplotlib helpers (Agg backend) for the figures every stage writes beside its results."""

from __future__ import annotations

import numpy as np


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_montage(path, images: np.ndarray, title: str, ncols: int = 8) -> None:
    plt = _plt()
    n = len(images)
    nrows = max(1, int(np.ceil(n / ncols)))
    fig, axes = plt.subplots(nrows, ncols, figsize=(1.6 * ncols, 1.6 * nrows + 0.4), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, im in zip(axes.flat, images):
        ax.imshow(im, cmap="gray", origin="lower")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_amplitude_pairs(path, amplitudes: np.ndarray, names: list[str], color=None, title: str = "") -> None:
    plt = _plt()
    k = amplitudes.shape[1]
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)] or [(0, 0)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(3.2 * len(pairs), 3.2), squeeze=False)
    for ax, (i, j) in zip(axes.flat, pairs):
        if i == j:
            ax.hist(amplitudes[:, i], bins=50)
            ax.set_xlabel(f"{names[i]} (Å RMSD)")
        else:
            ax.scatter(amplitudes[:, i], amplitudes[:, j], s=2, c=color, cmap="viridis")
            ax.set_xlabel(f"{names[i]} (Å RMSD)")
            ax.set_ylabel(f"{names[j]} (Å RMSD)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_estimates_vs_truth(
    path,
    est: np.ndarray,
    true: np.ndarray,
    names: list[str],
    angle_error: np.ndarray,
    shift_error: np.ndarray,
    title: str = "",
) -> None:
    """Per-mode scatter of estimated vs true amplitude, and histograms of angular and shift errors."""
    plt = _plt()
    k = est.shape[1]
    fig, axes = plt.subplots(1, k + 2, figsize=(3.2 * (k + 2), 3.2), squeeze=False)
    for i in range(k):
        ax = axes[0, i]
        ax.scatter(true[:, i], est[:, i], s=3, alpha=0.5)
        lim = [min(true[:, i].min(), est[:, i].min()), max(true[:, i].max(), est[:, i].max())]
        ax.plot(lim, lim, "k--", lw=0.8)
        r = np.corrcoef(true[:, i], est[:, i])[0, 1]
        ax.set_title(f"{names[i]}  r = {r:.3f}", fontsize=9)
        ax.set_xlabel("true (Å RMSD)")
        ax.set_ylabel("estimated (Å RMSD)")
    ax = axes[0, k]
    ax.hist(np.clip(angle_error, 0, 45), bins=45, range=(0, 45))
    ax.set_title(f"angular error, median {np.median(angle_error):.2f}°", fontsize=9)
    ax.set_xlabel("degrees (clipped at 45)")
    ax = axes[0, k + 1]
    ax.hist(np.clip(shift_error, 0, 3), bins=30, range=(0, 3))
    ax.set_title(f"shift error, median {np.median(shift_error):.2f} px", fontsize=9)
    ax.set_xlabel("pixels (clipped at 3)")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_refinement(
    path, angle_change: np.ndarray, cc: np.ndarray, errors: dict[str, np.ndarray] | None = None, title: str = ""
) -> None:
    """How far refinement moved each pose and how well it fits; with ground truth, the angular errors
    before and after."""
    plt = _plt()
    n = 3 if errors else 2
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 3.2), squeeze=False)
    ax = axes[0, 0]
    ax.hist(angle_change, bins=36, range=(0, 180))
    ax.set_title(f"pose change, median {np.median(angle_change):.1f}°", fontsize=9)
    ax.set_xlabel("angle network → refined (°)")
    ax = axes[0, 1]
    ax.hist(cc, bins=40)
    ax.set_title(f"correlation, mean {np.mean(cc):.3f}", fontsize=9)
    ax.set_xlabel("cc of the refined fit")
    if errors:
        ax = axes[0, 2]
        for name, e in errors.items():
            ax.hist(e, bins=36, range=(0, 180), histtype="step", label=f"{name} (median {np.median(e):.1f}°)")
        ax.set_xlabel("angular error vs truth (°)")
        ax.set_yscale("log")
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _space_axes(table, space: str):
    if space == "pca":
        x = table["pc1"].to_numpy()
        y = table["pc2"].to_numpy() if "pc2" in table.columns else np.zeros(len(table))
        return x, y, "PC1 (Å RMSD)", "PC2 (Å RMSD)"
    return table["umap1"].to_numpy(), table["umap2"].to_numpy(), "UMAP 1", "UMAP 2"


def save_space(path, table, color, explained, title: str = "") -> None:
    """Rows: PCA (and UMAP); columns: points by source, density (hexbin), points by true label."""
    plt = _plt()
    spaces = ["pca"] + (["umap"] if "umap1" in table.columns else [])
    ncol = 3 if color is not None else 2
    fig, axes = plt.subplots(len(spaces), ncol, figsize=(3.6 * ncol, 3.4 * len(spaces)), squeeze=False)
    for row, space in zip(axes, spaces):
        x, y, xl, yl = _space_axes(table, space)
        for src, marker in (("network", "o"), ("alignment", "^")):
            sel = table["source"].to_numpy() == src
            if sel.any():
                row[0].scatter(x[sel], y[sel], s=3, alpha=0.6, marker=marker, label=f"{src} ({sel.sum()})")
        row[0].legend(fontsize=7, markerscale=3)
        row[1].hexbin(x, y, gridsize=30, cmap="magma", mincnt=1)
        row[1].set_title("density", fontsize=8)
        if color is not None:
            sc = row[2].scatter(x, y, s=3, c=color, cmap="viridis")
            fig.colorbar(sc, ax=row[2], label="true position / state")
        for ax in row:
            ax.set_xlabel(xl)
            ax.set_ylabel(yl)
    axes[0, 0].set_title(
        "PCA: " + ", ".join(f"PC{k + 1} {100 * e:.0f}%" for k, e in enumerate(explained[:3])), fontsize=8
    )
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_groups(path, table, space: str, edges=None, title: str = "") -> None:
    """Groups in the 2D space, and the PC1 histogram per group (with bin edges if any)."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(8, 3.6))
    x, y, xl, yl = _space_axes(table, space)
    g = table["group"].to_numpy()
    for k in sorted(set(g)):
        sel = g == k
        label = "none" if k < 0 else f"group {k} ({sel.sum()})"
        colour = "lightgray" if k < 0 else f"C{k % 10}"  # the same colour for a group in both panels
        axes[0].scatter(x[sel], y[sel], s=3, label=label, color=colour)
        axes[1].hist(table["pc1"].to_numpy()[sel], bins=40, alpha=0.6, label=label, color=colour)
    for e in edges if edges is not None else []:
        if np.isfinite(e):
            axes[1].axvline(e, color="k", lw=0.8)
    axes[0].set_xlabel(xl)
    axes[0].set_ylabel(yl)
    axes[0].legend(fontsize=7, markerscale=3)
    axes[1].set_xlabel("PC1 (Å RMSD)")
    axes[1].set_ylabel("images")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_fsc(path, curves: dict, title: str = "") -> None:
    """curves: {label: (spatial frequency 1/Å, fsc)}; 0.143 and 0.5 thresholds drawn."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.8))
    colours: dict[str, str] = {}
    for label, (freq, f) in curves.items():
        key = " ".join(label.split()[:2]) if label.startswith("group") else label  # one colour per group
        colour = colours.setdefault(key, f"C{len(colours) % 10}")
        style = "--" if "truth" in label else ":" if "unmasked" in label else "-"
        ax.plot(freq, f, label=label, lw=1.2, ls=style, color=colour)
    for t in (0.143, 0.5):
        ax.axhline(t, color="gray", lw=0.6, ls=":")
    ax.set_xlabel("spatial frequency (1/Å)")
    ax.set_ylabel("FSC")
    ax.set_ylim(-0.1, 1.05)
    ax.legend(fontsize=6, ncol=2)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_benchmark_summary(path, summary) -> None:
    """Per dataset: mean angle / amplitude errors of alignment, network, a constant prediction (and the
    network's re-fit), and the best group resolutions."""
    plt = _plt()
    # "constant prediction": one value for every image, the level a network that learnt nothing reaches
    panels = [
        (
            "angle (°)",
            ["alignment: angle (°)", "network: angle (°)", "constant prediction: angle (°)", "refined: angle (°)"],
        ),
        (
            "amplitudes RMSD (Å)",
            [
                "alignment: amplitudes RMSD (Å)",
                "network: amplitudes RMSD (Å)",
                "constant prediction: amplitudes RMSD (Å)",
                "refined: amplitudes RMSD (Å)",
            ],
        ),
        ("resolution (Å)", ["best half-map resolution (Å)", "best resolution vs truth @0.5 (Å)"]),
    ]
    colours = {"alignment": "C0", "network": "C1", "constant prediction": "0.6", "refined": "C3"}
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.4))
    x = np.arange(len(summary))
    for ax, (ylabel, cols) in zip(axes, panels):
        cols = [c for c in cols if c in summary.columns]
        for j, c in enumerate(cols):
            width = 0.76 / len(cols)
            ax.bar(
                x + (j - (len(cols) - 1) / 2) * width,
                summary[c].to_numpy(dtype=float),
                width=width * 0.95,
                label=c,
                color=colours.get(c.split(":")[0]),
            )
        ax.set_xticks(x)
        ax.set_xticklabels(summary["dataset"], rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=6, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_learning_curve(history, path) -> None:
    """Training and validation loss per epoch (history: the engine's DataFrame), with the constant
    prediction's validation loss as the line a network that learnt nothing sits on."""
    import pandas as pd

    plt = _plt()
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(history["epoch"], history["train_loss"], label="train")
    ax.plot(history["epoch"], history["val_loss"], label="validation")
    if "constant_val_loss" in history and history["constant_val_loss"].notna().any():
        # a network that learnt nothing from the images sits on this line
        ax.axhline(
            float(history["constant_val_loss"].iloc[-1]),
            color="grey",
            ls="--",
            lw=1,
            label="validation, constant prediction",
        )
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss (L1 standardised; classes: cross-entropy)")
    losses = pd.concat([history["train_loss"], history["val_loss"]])
    if losses.min() > 0 and losses.max() / losses.min() > 3:  # log only where it helps: else 3.5×10⁰ labels
        ax.set_yscale("log")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_embedding_comparison(path, table, discrete: bool) -> None:
    """Per data set, one bar per embedding (method: source): |Spearman| of PC1 with the true trajectory,
    k-means accuracy (discrete states) and the group maps' mean resolution vs the truth."""
    plt = _plt()
    panels = [("spearman_pc1", "|Spearman| PC1 vs trajectory")]
    if discrete:
        panels.append(("kmeans_accuracy", "k-means accuracy"))
    panels.append(("groups_resolution_vs_truth_mean", "group maps vs truth @0.5 (Å)"))
    keys = list(dict.fromkeys(f"{m}: {s}" for m, s in zip(table["method"], table["source"])))
    datasets = list(dict.fromkeys(table["dataset"]))
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 4.0), squeeze=False)
    x = np.arange(len(datasets))
    width = 0.8 / max(len(keys), 1)
    for ax, (col, ylabel) in zip(axes[0], panels):
        for j, key in enumerate(keys):
            rows = table[[f"{m}: {s}" == key for m, s in zip(table["method"], table["source"])]].set_index("dataset")
            values = [float(rows[col].get(d, np.nan)) for d in datasets]
            ax.bar(x + (j - (len(keys) - 1) / 2) * width, values, width=width * 0.95, label=key, color=f"C{j}")
        ax.set_xticks(x)
        ax.set_xticklabels(datasets, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=6, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=2, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_map_pairs(path, rows, labels: list[str], title: str = "") -> None:
    """One row per map set: the central z slice of each (L, L, L) map in `rows` [(map, map, ...)], each slice on its
    own grey scale; `labels` name the columns."""
    import numpy as np

    plt = _plt()
    cols = len(labels)
    fig, axes = plt.subplots(len(rows), cols, figsize=(2.2 * cols, 2.2 * len(rows)), squeeze=False)
    for r, maps in enumerate(rows):
        for c, vol in enumerate(maps):
            v = np.asarray(vol, dtype=np.float32)
            axes[r, c].imshow(v[v.shape[0] // 2], cmap="gray", origin="lower")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(labels[c], fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
