"""Outlier rejection on the estimated amplitudes by Mahalanobis distance (HEMNMA/DeepHEMNMA: 3.2)."""

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
