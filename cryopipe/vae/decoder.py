"""The decoder V(k, z): a positionally encoded MLP over 3-D Fourier coordinates and the latent z (cryoDRGN).

k: frequencies in cycles per box, each coordinate in [−0.5, 0.5); the output is the map's centred Hartley
transform there (`cryopipe.imaging.hartley`), in units of `scale`. An image at RELION rotation A is the
central section k = Aᵀ(kx, ky, 0) (as `cryopipe.imaging.fourier_slice`), so a decoder trained on images'
Hartley transforms at their poses learns the map, and `decode_map` reads the whole map back.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from cryopipe.imaging.hartley import inverse_hartley


class PositionalEncoding(nn.Module):
    """sin and cos of 2π f k for `n_freqs` frequencies f geometric from 1 to L/2 cycles per box (cryoDRGN's
    geom_lowf): (..., 3) → (..., 6 · n_freqs)."""

    freqs: torch.Tensor

    def __init__(self, n_freqs: int, box: int):
        super().__init__()
        self.register_buffer("freqs", torch.exp(torch.linspace(0.0, math.log(box / 2), n_freqs)))
        self.out_features = 6 * n_freqs

    def forward(self, k: torch.Tensor) -> torch.Tensor:
        a = 2 * math.pi * k[..., None] * self.freqs
        return torch.cat([torch.sin(a), torch.cos(a)], -1).flatten(-2)


class HartleyDecoder(nn.Module):
    """V(k, z) → Hartley value: positional encoding of k, concatenated with z, then `layers` ReLU layers."""

    def __init__(self, zdim: int, box: int, *, hidden: int = 256, layers: int = 3, n_freqs: int | None = None):
        super().__init__()
        self.box, self.zdim = box, zdim
        self.encoding = PositionalEncoding(n_freqs or max(1, box // 4), box)
        mods: list[nn.Module] = []
        cin = self.encoding.out_features + zdim
        for _ in range(layers):
            mods += [nn.Linear(cin, hidden), nn.ReLU(inplace=True)]
            cin = hidden
        self.mlp = nn.Sequential(*mods, nn.Linear(cin, 1))

    def forward(self, k: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """k (B, P, 3), z (B, zdim) → (B, P)."""
        zz = z[:, None, :].expand(-1, k.shape[1], -1)
        return self.mlp(torch.cat([self.encoding(k), zz.to(k.dtype)], -1))[..., 0]


def plane(box: int, device=None) -> torch.Tensor:
    """(L², 3) frequencies (kx, ky, 0) of a centred L × L transform, cycles per box, rows as images flatten."""
    c = (torch.arange(box, dtype=torch.float32, device=device) - box // 2) / box
    gy, gx = torch.meshgrid(c, c, indexing="ij")
    return torch.stack([gx, gy, torch.zeros_like(gx)], -1).reshape(-1, 3)


def slice_coordinates(rotations: torch.Tensor, box: int) -> torch.Tensor:
    """(B, L², 3): the map's frequencies on each image's central section, Aᵀk for RELION rotations (B, 3, 3)."""
    return plane(box, rotations.device) @ rotations.to(torch.float32)


def decode_slices(decoder: HartleyDecoder, rotations: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
    """(B, L, L) centred Hartley transforms of the images at `rotations`, for latents z (B, zdim)."""
    L = decoder.box
    return decoder(slice_coordinates(rotations, L), z).reshape(len(rotations), L, L)


@torch.no_grad()
def decode_map(decoder: HartleyDecoder, z: torch.Tensor, scale: float = 1.0, chunk: int = 16384) -> torch.Tensor:
    """The real-space map (z, y, x) at latent z (zdim,): V on the whole 3-D grid, inverse Hartley."""
    L = decoder.box
    c = (torch.arange(L, dtype=torch.float32, device=z.device) - L // 2) / L
    zz, yy, xx = torch.meshgrid(c, c, c, indexing="ij")
    grid = torch.stack([xx, yy, zz], -1).reshape(1, -1, 3)
    values = torch.cat([decoder(grid[:, i : i + chunk], z[None]) for i in range(0, grid.shape[1], chunk)], 1)
    return inverse_hartley(values.reshape(L, L, L) * scale, 3)
