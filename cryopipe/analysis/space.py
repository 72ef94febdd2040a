"""The conformational space: PCA (and optionally UMAP) of normal-mode amplitudes (DeepHEMNMA stage 3).

Amplitudes are in Å RMSD, so PCA runs on them unscaled: a principal axis is a direction of
combined motion and its score is in Å RMSD too (unit-norm axes).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class PCA:
    mean: np.ndarray  # (M,) mean amplitudes
    axes: np.ndarray  # (K, M) unit principal axes, rows sorted by explained variance
    variance: np.ndarray  # (K,) variance of the scores along each axis (Å² RMSD)

    def transform(self, amplitudes: np.ndarray) -> np.ndarray:
        return (np.asarray(amplitudes, dtype=np.float64) - self.mean) @ self.axes.T

    def inverse(self, scores: np.ndarray) -> np.ndarray:
        scores = np.atleast_2d(scores)
        return self.mean + scores @ self.axes[: scores.shape[1]]

    @property
    def explained(self) -> np.ndarray:
        return self.variance / max(self.variance.sum(), 1e-300)

    def to_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "axes": self.axes.tolist(), "variance": self.variance.tolist()}

    @classmethod
    def from_dict(cls, d: dict) -> PCA:
        return cls(np.asarray(d["mean"]), np.asarray(d["axes"]), np.asarray(d["variance"]))


def embedding_columns(columns) -> list[str]:
    """The coordinates a space is built from, in order: normal-mode amplitudes ('mode7', ...; Å RMSD), or
    else a VAE's latent coordinates ('z1', ...; `vae-train`)."""
    import re

    from cryopipe.structure.conformations import mode_columns

    return mode_columns(columns) or [c for c in columns if re.fullmatch(r"z\d+", str(c))]


def fit_pca(amplitudes: np.ndarray) -> PCA:
    """PCA by SVD; each axis's sign is fixed (largest |loading| positive) so reruns and platforms agree."""
    x = np.asarray(amplitudes, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError("PCA needs at least 2 points")
    mean = x.mean(0)
    _, s, vt = np.linalg.svd(x - mean, full_matrices=False)
    big = np.argmax(np.abs(vt), axis=1)
    vt = vt * np.sign(vt[np.arange(len(vt)), big])[:, None]
    return PCA(mean, vt, s**2 / (len(x) - 1))


def fit_umap(x: np.ndarray, seed: int, n_neighbors: int = 15, min_dist: float = 0.1) -> np.ndarray:
    """2D UMAP embedding; a fixed random_state makes it deterministic (and single-threaded)."""
    import warnings

    import umap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "n_jobs overridden to 1 by setting random_state": intended
        model = umap.UMAP(
            n_components=2, n_neighbors=min(n_neighbors, len(x) - 1), min_dist=min_dist, random_state=seed
        )
        return model.fit_transform(np.asarray(x, dtype=np.float64)).astype(np.float64)
