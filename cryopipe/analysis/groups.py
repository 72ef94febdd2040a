"""Grouping images of similar conformation: k-means, GMM, bins along PC1, dense regions, or user polygons.

Every method returns a label 0..n_groups-1 per point (−1 = in no group: polygons, bins with
edges, dense regions). Automatic
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


def density_peaks(
    x: np.ndarray, k: int, bandwidth: float | None = None, separation: float | None = None, max_cells: int = 512
) -> tuple[np.ndarray, float, float]:
    """Centres (k, 2) of the k densest regions of 2D points, at least `separation` apart.

    The density is a histogram on a fine grid smoothed by a Gaussian of σ = `bandwidth` (space
    units; default Scott's rule, n^(-1/6) × the points' RMS spread). Peaks are taken greedily: the
    densest cell, then the densest cell farther than `separation` (default 4 × bandwidth) from
    every chosen one, and so on, so on a continuous distribution they also fall on its ridges and
    shoulders, not only on strict local maxima. Returns (centres, bandwidth, separation).
    """
    from scipy.ndimage import gaussian_filter

    x = np.asarray(x, dtype=np.float64)
    if bandwidth is None:
        spread = float(np.sqrt(x.var(0).mean()))
        bandwidth = max(spread, 1e-12) * len(x) ** (-1 / 6)
    separation = 4.0 * bandwidth if separation is None else separation
    lo, hi = x.min(0) - 3 * bandwidth, x.max(0) + 3 * bandwidth
    cell = max(bandwidth / 4, float((hi - lo).max()) / max_cells)
    shape = np.ceil((hi - lo) / cell).astype(int) + 1
    idx = np.floor((x - lo) / cell).astype(int)
    density = np.zeros(shape)
    np.add.at(density, (idx[:, 0], idx[:, 1]), 1.0)
    density = gaussian_filter(density, bandwidth / cell, mode="constant")
    gx, gy = np.meshgrid(
        lo[0] + (np.arange(shape[0]) + 0.5) * cell, lo[1] + (np.arange(shape[1]) + 0.5) * cell, indexing="ij"
    )
    floor = 1e-3 * density.max()  # below this the "region" is empty space, not a dense region
    centres: list[np.ndarray] = []
    for _ in range(k):
        i = int(np.argmax(density))
        if density.flat[i] <= floor:
            raise ValueError(
                f"only {len(centres)} dense region(s) lie at least {separation:.3g} apart, "
                f"analysis.cluster.k asks for {k} (lower k or analysis.cluster.separation)"
            )
        c = np.array([gx.flat[i], gy.flat[i]])
        centres.append(c)
        density[(gx - c[0]) ** 2 + (gy - c[1]) ** 2 < separation**2] = 0.0
    return np.array(centres), bandwidth, separation


def dense_regions(
    x: np.ndarray, k: int, bandwidth: float | None = None, separation: float | None = None, radius: float | None = None
) -> np.ndarray:
    """Labels of the points within `radius` (default separation / 2: regions do not overlap) of
    each of the k density peaks (nearest peak), −1 elsewhere: DeepHEMNMA's "groups of images in
    the dense regions of the space", chosen automatically."""
    centres, _, separation = density_peaks(x, k, bandwidth, separation)
    radius = separation / 2 if radius is None else radius
    d = np.linalg.norm(np.asarray(x, dtype=np.float64)[:, None, :] - centres[None], axis=2)
    labels = d.argmin(1)
    labels[d.min(1) > radius] = -1
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
    if method == "dense":
        labels = dense_regions(space, k, spec.get("bandwidth"), spec.get("separation"), spec.get("radius"))
        return order_by(labels, pc1, k)
    labels = kmeans(space, k, seed) if method == "kmeans" else gmm(space, k, seed)
    return order_by(np.asarray(labels), pc1, k)
