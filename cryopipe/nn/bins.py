"""Orientation as a distribution over an SO(3) grid: a classifier's answer to ambiguous poses.

A quaternion regressor, even with several winner-takes-all hypotheses, must put each hypothesis at
a point, and with few images it learns poses slowly. A classifier over the bins of the alignment's own
grid (`geometry.rotation_grid`) instead scores every pose at once: the loss is the cross-entropy against
a soft target, each bin weighted by exp(−θ²/2σ²) with θ its angle to the true rotation and σ half the
spacing, so neighbouring bins share what an image teaches and a pose between bins is not penalised.
Read out, the K best bins that are at least `min_angle` apart are the hypotheses a local re-fit
starts from (their logits the scores), and the best one, moved to the probability-weighted mean of
the bins around it, is the orientation.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from cryopipe.geometry import distinct_columns, matrix_to_quaternion, rotation_grid


def bin_quaternions(spacing: float) -> torch.Tensor:
    """Unit quaternions (G, 4) of `rotation_grid(spacing)` (degrees), float32."""
    return matrix_to_quaternion(rotation_grid(spacing)).float()


def angle_to_bins(q: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Angles (radians, (B, G)) between unit quaternions q (B, 4) and the bins (G, 4), q ↔ −q invariant."""
    dot = (q @ bins.T).abs().clamp_max(1.0)
    return 2 * torch.arccos(dot)


def soft_targets(q: torch.Tensor, bins: torch.Tensor, sigma: float) -> torch.Tensor:
    """(B, G) target distributions over the bins: exp(−θ²/2σ²) normalised, σ in radians."""
    theta = angle_to_bins(q / q.norm(dim=-1, keepdim=True).clamp_min(1e-8), bins)
    return F.softmax(-(theta**2) / (2 * sigma**2), dim=1)


def bins_loss(logits: torch.Tensor, q: torch.Tensor, bins: torch.Tensor, sigma: float) -> torch.Tensor:
    """Mean cross-entropy of logits (B, G) against the soft targets of true quaternions q (B, 4)."""
    p = soft_targets(q.float(), bins, sigma)
    return -(p * F.log_softmax(logits.float(), dim=1)).sum(1).mean()


def read_out(
    logits: torch.Tensor, bins: torch.Tensor, k: int, min_angle: float, radius: float, top: int | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(orientation (B, 4), hypotheses (B, k, 4), scores (B, k)) from logits (B, G).

    Hypotheses: greedily the best bins that are more than `min_angle` (radians) from every bin already
    taken, among the `top` best (default 32·k; when too few are that far apart, the next best fill in, ranked
    after them: the scores never increase along the hypotheses). Orientation: the mean of the bins within
    `radius` (radians) of the best one, weighted by probability, signs aligned with the best (a pose between
    two bins reads between them)."""
    top = min(top or 32 * k, logits.shape[1])
    s, idx = logits.topk(top, dim=1)
    cand = bins[idx]  # (B, T, 4)
    near = (cand @ cand.transpose(1, 2)).abs() > math.cos(min_angle / 2)  # (B, T, T): within min_angle
    cols = distinct_columns(near, k)
    hyp = torch.gather(cand, 1, cols[..., None].expand(-1, -1, 4))
    scores = torch.gather(s, 1, cols).cummin(1).values
    best = bins[idx[:, 0]]  # (B, 4)
    dot = best @ bins.T  # (B, G)
    w = torch.where(dot.abs() > math.cos(radius / 2), F.softmax(logits.float(), dim=1), torch.zeros_like(dot))
    mean = (w * dot.sign()) @ bins  # each bin's sign aligned with the best one's
    orientation = mean / mean.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return orientation, hyp, scores


class OrientationBins(torch.nn.Module):
    """The bins of a `spacing`° grid (a buffer that moves with the model, rebuilt from `spacing`, not saved),
    the soft-target loss and the read-out: hypotheses ≥ 2 spacings apart, the orientation averaged over
    the bins within 1.5 spacings of the best."""

    quaternions: torch.Tensor  # (G, 4) buffer

    def __init__(self, spacing: float, weight: float = 1.0):
        super().__init__()
        self.spacing = float(spacing)
        self.weight = float(weight)  # of the cross-entropy against the L1 terms of amplitudes and shifts
        self.register_buffer("quaternions", bin_quaternions(spacing), persistent=False)

    def __len__(self) -> int:
        return len(self.quaternions)

    @property
    def sigma(self) -> float:
        return math.radians(self.spacing) / 2

    def loss(self, logits: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
        return self.weight * bins_loss(logits, q, self.quaternions, self.sigma)

    def read_out(
        self, logits: torch.Tensor, k: int, top: int | None = None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        step = math.radians(self.spacing)
        return read_out(logits.float(), self.quaternions, k, min_angle=2 * step, radius=1.5 * step, top=top)
