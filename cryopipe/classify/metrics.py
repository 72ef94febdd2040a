"""Scores of a classifier on labelled test images: accuracy with its confidence interval, confusion matrix."""

from __future__ import annotations

import numpy as np
from scipy.stats import norm


def wilson_interval(correct: int, total: int, level: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (honest near 0 and 1, unlike the normal one)."""
    if total == 0:
        return float("nan"), float("nan")
    z = float(norm.ppf(0.5 + level / 2))
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z / (1 + z * z / total) * np.sqrt(p * (1 - p) / total + z * z / (4 * total * total))
    return float(centre - half), float(centre + half)


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, n_classes: int) -> np.ndarray:
    """(K, K) counts: row = true class, column = predicted class."""
    m = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(truth, dtype=int), np.asarray(predicted, dtype=int)), 1)
    return m


def accuracy_row(truth: np.ndarray, predicted: np.ndarray, level: float = 0.95) -> dict:
    """accuracy, its Wilson interval (ci_low, ci_high) and the number of test images."""
    correct, total = int((np.asarray(truth) == np.asarray(predicted)).sum()), len(truth)
    lo, hi = wilson_interval(correct, total, level)
    return {"accuracy": correct / max(total, 1), "ci_low": lo, "ci_high": hi, "images": total}
