"""MLP heads (DeepHEMNMA: 1000-512-128, ReLU, dropout 0.5) and the full regressor."""

from __future__ import annotations

import torch
from torch import nn

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
    """

    def __init__(
        self, kinds: tuple[str, ...], n_modes: int, depth: int = 34, dropout: float = 0.5, image_size: int = 64
    ):
        super().__init__()
        self.kinds = tuple(kinds)
        self.sizes = {"amplitudes": n_modes, "orientation": 4, "shifts": 2}
        self.backbone = ResNet(depth, image_size=image_size)
        self.head = mlp(self.backbone.out_features, sum(self.sizes[k] for k in self.kinds), dropout=dropout)

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        out = self.head(self.backbone(x)).float()
        res, lo = {}, 0
        for k in self.kinds:
            res[k] = out[:, lo : lo + self.sizes[k]]
            lo += self.sizes[k]
        if "orientation" in res:  # unit quaternion: normalised before it is used or compared
            res["orientation"] = res["orientation"] / res["orientation"].norm(dim=1, keepdim=True).clamp_min(1e-8)
        return res
