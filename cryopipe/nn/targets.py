"""Training targets, their standardisation, and the losses (L1; sign-invariant for quaternions; cross-entropy
for class labels)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cryopipe.geometry import euler_to_quaternion
from cryopipe.io.star import EULER, ORIGIN
from cryopipe.nn.bins import OrientationBins, soft_targets


def targets_from_tables(
    particles: pd.DataFrame, amplitudes: pd.DataFrame | None, amp_cols: list[str]
) -> dict[str, np.ndarray]:
    """amplitudes (n, M) Å RMSD, orientation (n, 4) unit quaternions, shifts (n, 2) Å (rlnOriginX/YAngst)."""
    out = {
        "orientation": euler_to_quaternion(torch.tensor(particles[EULER].to_numpy(dtype=np.float64))).numpy(),
        "shifts": particles[ORIGIN].to_numpy(dtype=np.float64),
    }
    if amplitudes is not None:
        out["amplitudes"] = amplitudes[amp_cols].to_numpy(dtype=np.float64)
    return out


class Standardiser:
    """Amplitudes: per-mode mean/std; shifts: zero mean, isotropic RMS; quaternions stay unit vectors."""

    def __init__(self, stats: dict[str, tuple[list, list]]):
        self.stats = {k: (np.asarray(m), np.asarray(s)) for k, (m, s) in stats.items()}

    @classmethod
    def fit(cls, targets: dict[str, np.ndarray]) -> Standardiser:
        stats = {}
        for k, v in targets.items():
            if k == "amplitudes":
                stats[k] = (v.mean(0).tolist(), np.maximum(v.std(0), 1e-6).tolist())
            elif k == "shifts":  # zero mean, one isotropic scale: commutes with in-plane rotation
                rms = max(float(np.sqrt((v**2).mean())), 1e-6)
                stats[k] = ([0.0, 0.0], [rms, rms])
        return cls(stats)

    def forward(self, targets: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: (v - self.stats[k][0]) / self.stats[k][1] if k in self.stats else v for k, v in targets.items()}

    def inverse(self, outputs: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {k: v * self.stats[k][1] + self.stats[k][0] if k in self.stats else v for k, v in outputs.items()}

    def state(self) -> dict:
        return {k: (m.tolist(), s.tolist()) for k, (m, s) in self.stats.items()}


def quaternion_l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample L1 distance between unit quaternions, invariant to q ↔ −q (the same rotation)."""
    pred = pred / pred.norm(dim=-1, keepdim=True).clamp_min(1e-8)
    return torch.minimum((pred - target).abs().sum(-1), (pred + target).abs().sum(-1))


def constant_prediction(
    targets: dict[str, torch.Tensor], max_candidates: int = 512, max_targets: int = 4096
) -> dict[str, torch.Tensor]:
    """The best single prediction for every image under the L1 training loss: what a network that has
    learnt nothing from the images converges to, and the level its validation loss must beat.

    Amplitudes and shifts: the per-component median. Orientation: the quaternion medoid, i.e. the
    target quaternion with the least mean sign-invariant L1 distance to the others (evenly spaced
    subsets of candidates and targets bound the cost on large sets).
    """
    out = {}
    for k, v in targets.items():
        if k == "class":  # class labels: the log training frequencies as logits (log K for balanced classes)
            counts = torch.bincount(v.long()).double().clamp_min(0.5)
            out[k] = torch.log(counts / counts.sum()).float()
        elif k == "orientation":
            cand = v[torch.linspace(0, len(v) - 1, min(len(v), max_candidates)).long()]
            ref = v[torch.linspace(0, len(v) - 1, min(len(v), max_targets)).long()]
            cost = quaternion_l1(cand[:, None], ref[None]).mean(1)  # (candidates, targets) → mean per candidate
            out[k] = cand[int(torch.argmin(cost))]
        else:
            out[k] = v.median(dim=0).values
    return out


def constant_loss(
    train_targets: dict[str, torch.Tensor], val_targets: dict[str, torch.Tensor], bins: OrientationBins | None = None
) -> float:
    """Validation loss (summed over kinds, as the engine reports it) of `constant_prediction(train_targets)`;
    with orientation `bins`, the constant logits are the log of the training targets' mean soft target."""
    const = constant_prediction(train_targets)
    if bins is not None and "orientation" in const:
        del const["orientation"]
        q = train_targets["orientation"].float().to(bins.quaternions.device)
        prior = torch.cat([soft_targets(c, bins.quaternions, bins.sigma) for c in q.split(1024)]).mean(0)
        const["orientation_logits"] = torch.log(prior.clamp_min(1e-12))
    if "class" in const:  # a class missing from training gets the frequency of half an image
        k = max(len(const["class"]), int(val_targets["class"].max()) + 1)
        logits = torch.full((k,), float(const["class"].min()))
        logits[: len(const["class"])] = const["class"]
        const["class"] = logits.expand(len(val_targets["class"]), k)
    n_val = len(next(iter(val_targets.values())))
    return float(
        sum(
            loss_terms(
                {k: c if k == "class" else c.expand(n_val, *c.shape[-1:]) for k, c in const.items()}, val_targets, bins
            ).values()
        )
    )


def loss_terms(
    outputs: dict[str, torch.Tensor], targets: dict[str, torch.Tensor], bins: OrientationBins | None = None
) -> dict[str, torch.Tensor]:
    """Mean L1 loss per kind (standardised amplitudes/shifts; quaternion L1 up to sign). With several
    orientation hypotheses (`hypotheses`, `scores` in the outputs) the orientation term is the
    winner-takes-all loss, score ranking included (`cryopipe.nn.hypotheses`); with `orientation_logits`
    over `bins`, the cross-entropy against the soft targets (`cryopipe.nn.bins`)."""
    from cryopipe.nn.hypotheses import winner_takes_all

    terms = {}
    for k, v in outputs.items():
        if k == "orientation_logits":
            if bins is None:
                raise ValueError("orientation logits need the model's orientation bins")
            terms["orientation"] = bins.loss(v, targets["orientation"])
        elif k == "orientation":
            if "orientation_logits" in outputs:
                continue
            if "hypotheses" in outputs:
                terms[k] = winner_takes_all(outputs["hypotheses"], outputs["scores"], targets[k])[0]
            else:
                terms[k] = quaternion_l1(v, targets[k]).mean()
        elif k == "class":  # logits (B, K) against labels: cross-entropy
            terms[k] = torch.nn.functional.cross_entropy(v.float(), targets[k].long())
        elif k not in ("hypotheses", "scores"):
            terms[k] = (v - targets[k]).abs().mean()
    return terms
