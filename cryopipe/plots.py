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


def save_estimates_vs_truth(path, est: np.ndarray, true: np.ndarray, names: list[str], angle_error: np.ndarray,
                            shift_error: np.ndarray, title: str = "") -> None:
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
