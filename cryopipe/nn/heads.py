"""MLP heads (DeepHEMNMA: 1000-512-128, ReLU, dropout 0.5) and the full regressor."""

from __future__ import annotations

import torch
from torch import nn

from cryopipe.imaging.fourier import fourier_crop
from cryopipe.nn.bins import OrientationBins
from cryopipe.nn.resnet import ResNet

# Output kinds and their sizes (amplitudes: one per mode).
KINDS = ("amplitudes", "orientation", "shifts")


def mlp(cin: int, cout: int, hidden=(1000, 512, 128), dropout: float = 0.5) -> nn.Sequential:
    layers = []
    for h in hidden:
        layers += [nn.Linear(cin, h), nn.ReLU(inplace=True), nn.Dropout(dropout)]
        cin = h
    layers.append(nn.Linear(cin, cout))
    return nn.Sequential(*layers)


class Regressor(nn.Module):
    """ResNet + MLP predicting the requested kinds: amplitudes (M), orientation (unit quaternion), shifts (2).

    One model per kind as in DeepHEMNMA, or all kinds from one head ("combined").
    `hypotheses` K > 1: the orientation is K quaternions with a score each (`cryopipe.nn.hypotheses`);
    `orientation` is then the best-scored one, `hypotheses` (B, K, 4) and `scores` (B, K) all of them.
    `input_size` px: images are Fourier-cropped to it first (an ideal low-pass; the network then costs
    about (input_size / image_size)² as much); `width`: planes of the ResNet's first stage (64 in He et al.).
    `orientation_bins` (degrees): the orientation is instead a classifier over the bins of an SO(3) grid of
    that spacing (`cryopipe.nn.bins`): `orientation_logits` (B, G), read out as `orientation`, K
    `hypotheses` (the best distinct bins) and their `scores` (logits); `bin_weight` scales its cross-entropy
    against the L1 terms.
    """

    def __init__(
        self,
        kinds: tuple[str, ...],
        n_modes: int,
        depth: int = 34,
        dropout: float = 0.5,
        image_size: int = 64,
        *,
        hypotheses: int = 1,
        width: int = 64,
        input_size: int | None = None,
        orientation_bins: float | None = None,
        bin_weight: float = 1.0,
    ):
        super().__init__()
        self.kinds = tuple(kinds)
        self.hypotheses = hypotheses if "orientation" in self.kinds else 1
        self.input_size = input_size if input_size and input_size < image_size else None
        orientation = 4 if self.hypotheses == 1 else 5 * self.hypotheses  # K quaternions + K scores
        self.orientation_bins = OrientationBins(orientation_bins, bin_weight) if orientation_bins else None
        if self.orientation_bins is not None:
            orientation = len(self.orientation_bins)
        self.sizes = {"amplitudes": n_modes, "orientation": orientation, "shifts": 2}
        self.backbone = ResNet(depth, image_size=self.input_size or image_size, width=width)
        self.head = mlp(self.backbone.out_features, sum(self.sizes[k] for k in self.kinds), dropout=dropout)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.input_size:
            x = fourier_crop(x.float(), self.input_size)
        out = self.head(self.backbone(x)).float()
        res, lo = {}, 0
        for k in self.kinds:
            res[k] = out[:, lo : lo + self.sizes[k]]
            lo += self.sizes[k]
        if "orientation" in res and self.orientation_bins is not None:
            res["orientation_logits"] = logits = res.pop("orientation")
            if not self.training:  # the loss is on the logits alone; the read-out is for predictions
                with torch.no_grad():
                    res["orientation"], hyp, scores = self.orientation_bins.read_out(logits.detach(), self.hypotheses)
                if self.hypotheses > 1:
                    res["hypotheses"], res["scores"] = hyp, scores
        elif "orientation" in res:  # unit quaternions: normalised before they are used or compared
            K = self.hypotheses
            if K > 1:
                raw = res.pop("orientation")
                q = raw[:, : 4 * K].reshape(-1, K, 4)
                res["hypotheses"] = q / q.norm(dim=-1, keepdim=True).clamp_min(1e-8)
                res["scores"] = raw[:, 4 * K :]
                best = res["scores"].argmax(1)
                res["orientation"] = res["hypotheses"][torch.arange(len(q), device=q.device), best]
            else:
                res["orientation"] = res["orientation"] / res["orientation"].norm(dim=1, keepdim=True).clamp_min(1e-8)
        return res

    def config(self) -> dict:
        """The constructor's architecture arguments beyond kinds/modes/depth/dropout/size, for checkpoints."""
        return {
            "hypotheses": self.hypotheses,
            "width": self.backbone.width,
            "input_size": self.input_size,
            "orientation_bins": None if self.orientation_bins is None else self.orientation_bins.spacing,
            "bin_weight": 1.0 if self.orientation_bins is None else self.orientation_bins.weight,
        }
