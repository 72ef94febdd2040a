"""Guard against invented density: how much density a map holds where the truth has none."""

from __future__ import annotations

import numpy as np


def absent_and_present_density(vol, coords: np.ndarray, present: np.ndarray, voxel_size: float) -> tuple[float, float]:
    """(mean density of `vol` where atoms were removed: voxels within 2.5 Å of a removed atom and 6 Å from every
    present one; mean density within 1.5 Å of a present atom). `vol` is (z, y, x) with voxel L//2 at the origin of
    `coords` (N, 3, Å); `present` (N,) bool marks the atoms that are there."""
    from scipy.spatial import cKDTree

    L = vol.shape[-1]
    c = (np.arange(L) - L // 2) * voxel_size
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    grid = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
    d_present, _ = cKDTree(coords[present]).query(grid)
    d_absent, _ = cKDTree(coords[~present]).query(grid)
    v = np.asarray(vol).ravel()
    return float(v[(d_absent < 2.5) & (d_present > 6.0)].mean()), float(v[d_present < 1.5].mean())
