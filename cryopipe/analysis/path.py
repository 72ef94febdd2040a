"""Scores along a morph path (data between two real structures, `conformations.distribution: morph`).

The truth of an image is its fraction t of the path (0: the reference, 1: the second structure).
Per tenth of t: the median angular error and the share of images more than 10° off; over all images,
the Spearman correlation between t and the fitted amplitudes projected on the path's direction in
the modes (c, the least-squares amplitudes of the whole displacement, as the truth table holds t·c);
and how well PC1 of the conformational space separates the two ends of the path.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def path_direction(truth: pd.DataFrame, names: list[str], t_column: str) -> np.ndarray | None:
    """c (M,) with truth[names] = t·c (least squares over the images), or None when a mode is missing."""
    if not set(names) <= set(truth.columns):
        return None
    t = truth[t_column].to_numpy(np.float64)
    return (t[:, None] * truth[names].to_numpy(np.float64)).sum(0) / max(float((t**2).sum()), 1e-12)


def along_path(amplitudes: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Fitted amplitudes (n, M) projected on the path direction: 0 at the reference, 1 at the second structure."""
    return amplitudes @ direction / float(direction @ direction)


def tenths_table(t: np.ndarray, angle_error: np.ndarray, along: np.ndarray | None) -> pd.DataFrame:
    """One row per tenth of the path: images, median angle error (°), share > 10° off, mean fitted position."""
    tenth = np.clip((np.asarray(t) * 10).astype(int), 0, 9)
    rows = []
    for b in range(10):
        s = tenth == b
        row = {
            "tenth of path": f"{b / 10:.1f}–{(b + 1) / 10:.1f}",
            "images": int(s.sum()),
            "median angle error (°)": float(np.median(angle_error[s])) if s.any() else np.nan,
            "images > 10° off (%)": 100 * float(np.mean(angle_error[s] > 10)) if s.any() else np.nan,
        }
        if along is not None:
            row["mean fitted position on path"] = float(along[s].mean()) if s.any() else np.nan
        rows.append(row)
    return pd.DataFrame(rows)


def end_separation(pc1: np.ndarray, t: np.ndarray, end: float = 0.1) -> float:
    """Share of the images in the first and last `end` of the path that fall on their own side of PC1's
    midpoint between the two ends' medians (1 = PC1 tells every open from every closed image)."""
    pc1, t = np.asarray(pc1), np.asarray(t)
    lo, hi = pc1[t < end], pc1[t >= 1 - end]
    if not len(lo) or not len(hi):
        return float("nan")
    mid, sign = 0.5 * (np.median(lo) + np.median(hi)), np.sign(np.median(hi) - np.median(lo))
    right = np.concatenate([sign * (lo - mid) < 0, sign * (hi - mid) > 0])
    return float(right.mean())
