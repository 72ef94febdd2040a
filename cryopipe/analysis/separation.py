"""How well an embedding (mode amplitudes, a VAE's z) finds the known structure of simulated data.

- Order: |Spearman ρ| of PC1 of the embedding with the true trajectory position (or state); the sign of
  a principal axis is arbitrary.
- Separation: k-means with the true number of states on the embedding (standardised per coordinate, since a
  VAE's coordinates have no common unit), accuracy under the best matching of clusters to states.
"""

from __future__ import annotations

import numpy as np


def trajectory_spearman(pc1: np.ndarray, position: np.ndarray) -> float:
    """|Spearman ρ| between PC1 scores and the true position along the trajectory."""
    from scipy.stats import spearmanr

    return float(abs(spearmanr(pc1, position).statistic))


def kmeans_accuracy(embedding: np.ndarray, states: np.ndarray, seed: int) -> float:
    """Share of particles whose k-means cluster (k = number of states) is matched to their true state, under
    the one-to-one matching of clusters to states that maximises it (Hungarian)."""
    from scipy.optimize import linear_sum_assignment
    from sklearn.cluster import KMeans

    x = np.asarray(embedding, dtype=np.float64)
    x = (x - x.mean(0)) / np.maximum(x.std(0), 1e-12)
    values, truth = np.unique(states, return_inverse=True)
    k = len(values)
    found = KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)
    counts = np.zeros((k, k))
    np.add.at(counts, (found, truth), 1)
    rows, cols = linear_sum_assignment(-counts)
    return float(counts[rows, cols].sum() / len(states))
