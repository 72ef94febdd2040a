"""Figures of the classification benchmark: the classes, confusion matrices, accuracy vs SNR, Grad-CAM."""

from __future__ import annotations

import numpy as np
import pandas as pd

from cryopipe.plots import _plt

# The report's Tables 1 and 2 (50k images, 4 classes), the rows every run is compared with.
REPORT_ACCURACY = {
    "report: pixel difference": {0.5: 0.99, 0.25: 0.93, 0.1: 0.38, 0.05: 0.28},
    "report: ResNet": {0.5: 0.99, 0.25: 0.99, 0.1: 0.90, 0.05: 0.50},
}


def save_class_projections(path, projections: np.ndarray, names: list[str]) -> None:
    """Top: each class's CTF-free projection at one pose; bottom: its difference from the first class."""
    plt = _plt()
    k = len(names)
    fig, axes = plt.subplots(2, k, figsize=(1.9 * k, 4.0), squeeze=False)
    diff = projections - projections[:1]
    lim = max(float(np.abs(diff).max()), 1e-12)
    for j, name in enumerate(names):
        axes[0, j].imshow(projections[j], cmap="gray", origin="lower")
        axes[0, j].set_title(name, fontsize=8)
        axes[1, j].imshow(diff[j], cmap="RdBu_r", vmin=-lim, vmax=lim, origin="lower")
        axes[1, j].set_title(f"{name} − {names[0]}", fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_confusion_matrices(path, matrices: dict[str, np.ndarray], names: list[str], title: str) -> None:
    """One panel per classifier: rows = true class, columns = predicted, shares of each row."""
    plt = _plt()
    n = len(matrices)
    fig, axes = plt.subplots(1, n, figsize=(2.6 * n + 0.4, 2.9), squeeze=False)
    for ax, (name, m) in zip(axes[0], matrices.items()):
        share = m / np.maximum(m.sum(1, keepdims=True), 1)
        ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
        for (i, j), v in np.ndenumerate(share):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color="white" if v > 0.5 else "black")
        ax.set_xticks(range(len(names)), names, rotation=60, fontsize=6)
        ax.set_yticks(range(len(names)), names, fontsize=6)
        ax.set_title(f"{name}: {np.trace(m) / max(m.sum(), 1):.1%}", fontsize=7)
        ax.set_xlabel("predicted", fontsize=7)
    axes[0, 0].set_ylabel("true", fontsize=7)
    fig.suptitle(title, fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_accuracy_vs_snr(path, summary: pd.DataFrame, chance: float) -> None:
    """Test accuracy (95% Wilson intervals) of every classifier against SNR, beside the report's rows."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    for name, rows in summary.groupby("classifier", sort=False):
        rows = rows.sort_values("snr")
        err = np.stack([rows["accuracy"] - rows["ci_low"], rows["ci_high"] - rows["accuracy"]])
        ax.errorbar(rows["snr"], rows["accuracy"], yerr=err, marker="o", ms=3, capsize=2, label=name)
    for name, values in REPORT_ACCURACY.items():
        snr = sorted(values)
        ax.plot(snr, [values[s] for s in snr], ls=":", color="grey" if "pixel" in name else "black", label=name)
    ax.axhline(chance, color="grey", lw=0.8, ls="--", label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("SNR")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=6, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def save_gradcam(path, images: np.ndarray, cams: np.ndarray, differences: np.ndarray, titles: list[str]) -> None:
    """Per test image (a column): the image, its Grad-CAM over it, and where its class's projection differs
    from the other classes' at the same pose."""
    plt = _plt()
    n = len(images)
    fig, axes = plt.subplots(3, n, figsize=(1.7 * n, 5.4), squeeze=False)
    for j in range(n):
        axes[0, j].imshow(images[j], cmap="gray", origin="lower")
        axes[0, j].set_title(titles[j], fontsize=6)
        axes[1, j].imshow(images[j], cmap="gray", origin="lower")
        axes[1, j].imshow(cams[j], cmap="jet", alpha=0.45, vmin=0, vmax=1, origin="lower")
        axes[2, j].imshow(differences[j], cmap="magma", origin="lower")
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    axes[0, 0].set_ylabel("image", fontsize=7)
    axes[1, 0].set_ylabel("Grad-CAM", fontsize=7)
    axes[2, 0].set_ylabel("class difference", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
