"""Several orientation hypotheses per image, trained winner-takes-all (CryoSPIN's answer to ambiguous poses).

A head predicts K quaternions and K scores per image. The loss is the sign-invariant L1 distance
(`quaternion_l1`) of the *nearest* hypothesis to the target: only that one is pulled, so the hypotheses
spread over the modes of an ambiguous image's pose posterior instead of averaging them (a single
regressor meets two symmetric answers halfway, which is neither). A cross-entropy teaches the scores to
point at that winner, so at inference they rank the hypotheses that a local re-fit then polishes.

`relax` (Rupprecht et al. 2017, "relaxed" WTA) gives the other hypotheses a small share of the pull,
so that none is left where it started because it never won.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from cryopipe.nn.targets import quaternion_l1


def winner_takes_all(
    quaternions: torch.Tensor,
    scores: torch.Tensor,
    target: torch.Tensor,
    *,
    score_weight: float = 0.1,
    relax: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(loss, winner (B,)) for K hypotheses (B, K, 4) (any norm, any sign), their scores (B, K) (logits)
    and unit target quaternions (B, 4). loss = mean over images of (1 − relax)·d_winner +
    relax·mean(d_others) + score_weight·cross-entropy(scores, winner)."""
    d = quaternion_l1(quaternions, target[:, None, :])  # (B, K), q ↔ −q invariant on both sides
    winner = d.detach().argmin(1)
    d_win = d.gather(1, winner[:, None])[:, 0]
    K = d.shape[1]
    pull = d_win
    if relax > 0 and K > 1:
        d_others = (d.sum(1) - d_win) / (K - 1)
        pull = (1 - relax) * d_win + relax * d_others
    return pull.mean() + score_weight * F.cross_entropy(scores, winner), winner


def ranked(quaternions: torch.Tensor, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(unit quaternions (B, K, 4), scores (B, K)), best score first: the order a re-fit tries them in."""
    order = scores.argsort(dim=1, descending=True)
    q = quaternions / quaternions.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return q.gather(1, order[..., None].expand_as(q)), scores.gather(1, order)
