"""The map-improvement network: a 3-D U-Net with residual blocks (EMReady's SCUNet without the window
attention; see the README for why), and EMReady's loss, smooth-L1 + SSIM, on boxes of normalised density.

`MapImprover` scores itself (`returns_loss`, as the training engine expects of such models): `forward(maps)`
returns the improved boxes, `forward(maps, {"map": targets})` the loss terms.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

SSIM_EPS = 1e-4  # EMReady's ε: keeps the SSIM term finite on empty boxes


class ResBlock3d(nn.Module):
    """Two 3×3×3 convolutions with a skip connection (He et al.'s basic block, no normalisation: boxes are few
    per batch)."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv1 = nn.Conv3d(channels, channels, 3, padding=1)
        self.conv2 = nn.Conv3d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x + self.conv2(F.leaky_relu(self.conv1(x), 0.1)), 0.1)


class UNet3d(nn.Module):
    """(B, 1, D, D, D) → (B, 1, D, D, D), D divisible by 2^(levels − 1): an encoder of residual blocks with strided
    downsampling (channels width · 2^level), a mirrored decoder with transposed convolutions and skip
    concatenations, and a global residual (the network predicts the change to its input)."""

    def __init__(self, width: int = 16, levels: int = 3):
        super().__init__()
        ch = [width * 2**i for i in range(levels)]
        self.levels = levels
        self.stem = nn.Conv3d(1, ch[0], 3, padding=1)
        self.enc = nn.ModuleList(ResBlock3d(c) for c in ch)
        self.down = nn.ModuleList(nn.Conv3d(ch[i], ch[i + 1], 2, stride=2) for i in range(levels - 1))
        self.up = nn.ModuleList(nn.ConvTranspose3d(ch[i + 1], ch[i], 2, stride=2) for i in range(levels - 1))
        self.merge = nn.ModuleList(nn.Conv3d(2 * ch[i], ch[i], 1) for i in range(levels - 1))
        self.dec = nn.ModuleList(ResBlock3d(ch[i]) for i in range(levels - 1))
        self.head = nn.Conv3d(ch[0], 1, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.leaky_relu(self.stem(x), 0.1)
        skips = []
        for i in range(self.levels):
            h = self.enc[i](h)
            if i < self.levels - 1:
                skips.append(h)
                h = F.leaky_relu(self.down[i](h), 0.1)
        for i in reversed(range(self.levels - 1)):
            h = self.up[i](h)
            h = self.dec[i](F.leaky_relu(self.merge[i](torch.cat([h, skips[i]], 1)), 0.1))
        return x + self.head(h)


def ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """EMReady's global SSIM loss per box, averaged over the batch: 1 − (2σ_xy + ε) / (σ_x² + σ_y² + ε) (the contrast
    and structure terms of SSIM, no luminance term), σ over each whole box."""
    p = pred.flatten(1)
    t = target.flatten(1)
    p = p - p.mean(1, keepdim=True)
    t = t - t.mean(1, keepdim=True)
    cov = (p * t).mean(1)
    return (1 - (2 * cov + SSIM_EPS) / (p.pow(2).mean(1) + t.pow(2).mean(1) + SSIM_EPS)).mean()


class MapImprover(nn.Module):
    """The U-Net with its loss: smooth-L1 (local, voxel by voxel) + SSIM (global, per box), EMReady's pair."""

    returns_loss = True
    memory_format = torch.channels_last_3d  # measured ~2× faster than contiguous for 3-D convolutions on CPU

    def __init__(self, width: int = 16, levels: int = 3):
        super().__init__()
        self.net = UNet3d(width, levels)
        self.multiple = 2 ** (levels - 1)  # box sizes must be divisible by this
        self.to(memory_format=self.memory_format)  # type: ignore[call-overload]  # (torch's stub lacks it)

    def forward(self, maps: torch.Tensor, targets: dict | None = None):
        out = self.net(maps.contiguous(memory_format=self.memory_format))
        if targets is None:
            return out
        t = targets["map"]
        return {"smooth_l1": F.smooth_l1_loss(out.float(), t), "ssim": ssim_loss(out.float(), t)}
