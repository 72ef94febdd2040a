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
