"""Outlier rejection: amplitudes by Mahalanobis distance (HEMNMA/DeepHEMNMA: 3.2), fits by their cc
in the population."""

from __future__ import annotations

import numpy as np


def mahalanobis(x: np.ndarray) -> np.ndarray:
    """Distance of each row of x (n, M) from the mean, in units of the sample covariance."""
    x = np.asarray(x, dtype=np.float64)
    centred = x - x.mean(0)
    cov = np.atleast_2d(np.cov(x, rowvar=False))
    cov += 1e-9 * np.trace(cov) / len(cov) * np.eye(len(cov))  # guard a degenerate covariance
    return np.sqrt(np.einsum("ij,jk,ik->i", centred, np.linalg.inv(cov), centred))


def inliers(x: np.ndarray, threshold: float) -> np.ndarray:
    return mahalanobis(x) <= threshold


def fit_quality(cc: np.ndarray, threshold: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Robust z-score of each image's cc within the population ((cc − median) / (1.4826·MAD)) and whether it
    passes (z ≥ −threshold; every image when threshold is None). A wrong pose or conformation fits worse
    than the population's typical image of the same data."""
    cc = np.asarray(cc, dtype=np.float64)
    mad = 1.4826 * np.median(np.abs(cc - np.median(cc)))
    z = (cc - np.median(cc)) / max(mad, 1e-12)
    return z, (np.ones(len(cc), dtype=bool) if threshold is None else z >= -threshold)
