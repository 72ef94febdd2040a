"""Grouping images of similar conformation: k-means, GMM, bins along PC1, or user polygons.

Every method returns a label 0..n_groups-1 per point (−1 = in no group, polygons only). Automatic
labels are renumbered by the mean PC1 of their members so group 0 is always at the low end of
PC1: names stay stable across reruns and match the trajectory direction.
"""

from __future__ import annotations

import numpy as np


def n_groups(spec: dict) -> int:
    """How many groups a cluster spec makes (known before the data: the workflow's outputs)."""
    if spec["method"] == "polygons":
        return len(spec["polygons"])
    if spec["method"] == "pc1_bins" and spec.get("bins"):
        return len(spec["bins"]) - 1
    return spec["k"]


def order_by(labels: np.ndarray, key: np.ndarray, k: int) -> np.ndarray:
    """Renumber labels 0..k-1 by increasing mean `key` of their members (empty groups last)."""
    means = [key[labels == g].mean() if (labels == g).any() else np.inf for g in range(k)]
    rank = np.empty(k, dtype=int)
    rank[np.argsort(means, kind="stable")] = np.arange(k)
    out = labels.copy()
    inside = labels >= 0
    out[inside] = rank[labels[inside]]
    return out


def kmeans(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.cluster import KMeans

    return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(x)


def gmm(x: np.ndarray, k: int, seed: int) -> np.ndarray:
    from sklearn.mixture import GaussianMixture

    return GaussianMixture(n_components=k, n_init=3, random_state=seed).fit(x).predict(x)


def pc1_bins(pc1: np.ndarray, k: int, edges=None) -> np.ndarray:
    """Bins along PC1: given edges (points outside → −1), or k bins of equal counts (quantiles)."""
    if edges is None:
        edges = np.quantile(pc1, np.linspace(0, 1, k + 1))
        edges[0], edges[-1] = -np.inf, np.inf
    edges = np.asarray(edges, dtype=np.float64)
    labels = np.searchsorted(edges, pc1, side="right") - 1
    labels[(pc1 < edges[0]) | (pc1 > edges[-1])] = -1
    labels[pc1 == edges[-1]] = len(edges) - 2
    return labels


def in_polygons(points: np.ndarray, polygons: list) -> np.ndarray:
    """Label of the first polygon containing each 2D point, −1 if none."""
    from matplotlib.path import Path

    labels = np.full(len(points), -1)
    for g, verts in enumerate(polygons):
        inside = Path(np.asarray(verts, dtype=np.float64)).contains_points(points) & (labels < 0)
        labels[inside] = g
    return labels


def assign_groups(space: np.ndarray, pc1: np.ndarray, spec: dict, seed: int) -> np.ndarray:
    """Labels for points `space` (N, 2) with PC1 scores `pc1` (N,) according to the cluster spec."""
    method, k = spec["method"], n_groups(spec)
    if method == "polygons":
        return in_polygons(space, spec["polygons"])
    if method == "pc1_bins":
        return pc1_bins(pc1, k, spec.get("bins"))
    if len(space) < k:
        raise ValueError(f"{len(space)} points cannot make {k} groups")
    labels = kmeans(space, k, seed) if method == "kmeans" else gmm(space, k, seed)
    return order_by(np.asarray(labels), pc1, k)
