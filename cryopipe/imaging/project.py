"""Projection of atoms modelled as 3D Gaussians: exact line integrals, integrated over pixels.

The model density of an atom i is w_i · N(r; r_i, σ² I). Its line integral along z is a 2D
Gaussian with the same σ, and a separable Gaussian integrated over a pixel is a product of two
erf differences. So an image is Σ_i gy_i ⊗ gx_i — one batched matrix product — and the 3D map is
Σ_i gz_i ⊗ gy_i ⊗ gx_i with the same 1D profiles: the map and the projections agree exactly.

Pixel index k (0-based) sits at coordinate (k - L//2)·pixel_size, RELION's centre convention.
An atom at r in the volume frame lands at image position (A r)[:2] - origin (RELION origin
rlnOriginX/YAngst: relion_project shifts the projection by -origin).
"""

from __future__ import annotations

import math

import torch


def gaussian_profiles(
    centres_px: torch.Tensor, size: int, sigma_px: float | torch.Tensor, point: bool = False
) -> torch.Tensor:
    """Pixel-integrated 1D unit Gaussians: (..., N) centres in px from the box centre -> (..., N, size).

    sigma_px is one width for all, or one per atom (N,) (coarse-grained beads). `point`: the Gaussian's value
    at each pixel centre (per px) instead of its integral over the pixel (what EMReady's target maps sample).
    Only a window of ±(5σ + 1) pixels around each centre is evaluated (the mass beyond is < 1e-6)
    and scattered into the dense profile; erf over the whole line was the simulator's bottleneck.
    """
    scale: float | torch.Tensor
    if isinstance(sigma_px, torch.Tensor):
        half = int(math.ceil(5 * float(sigma_px.max()))) + 1
        scale = (sigma_px * math.sqrt(2.0))[..., None].to(centres_px.dtype)
    else:
        half = int(math.ceil(5 * sigma_px)) + 1
        scale = sigma_px * math.sqrt(2.0)
    window = 2 * half

    def values(edges: torch.Tensor) -> torch.Tensor:  # per pixel, from its n + 1 edges (..., n + 1)
        if point:
            t = (edges[..., :-1] + 0.5 - centres_px[..., None]) / scale
            return torch.exp(-t * t) / (scale * math.sqrt(math.pi))
        cdf = 0.5 * torch.erf((edges - centres_px[..., None]) / scale)
        return cdf[..., 1:] - cdf[..., :-1]

    if window >= size:
        return values(torch.arange(size + 1, device=centres_px.device, dtype=centres_px.dtype) - size // 2 - 0.5)
    start = torch.floor(centres_px.detach()).long() - half + 1  # first window pixel (centred coordinate)
    steps = torch.arange(window + 1, device=centres_px.device)
    vals = values((start[..., None] + steps).to(centres_px.dtype) - 0.5)
    idx = start[..., None] + steps[:-1] + size // 2 + window  # index into a line padded by `window` each side
    width = size + 2 * window
    outside = (idx < 0) | (idx >= width)
    vals = vals.masked_fill(outside, 0.0)
    idx = idx.clamp(0, width - 1)
    line = vals.new_zeros(*vals.shape[:-1], width).scatter_add(-1, idx, vals)
    return line[..., window : window + size]


def project_atoms(
    coords: torch.Tensor,
    weights: torch.Tensor,
    rotations: torch.Tensor,
    origins: torch.Tensor | None,
    *,
    pixel_size: float,
    size: int,
    sigma: float | torch.Tensor,
) -> torch.Tensor:
    """Projection images (B, size, size) of atoms (B or 1, N, 3) [Å, volume frame].

    rotations: RELION matrices (B, 3, 3); origins: rlnOriginX/YAngst (B, 2) or None; weights (N,);
    sigma: Gaussian width in Å, one for all atoms or one per atom (N,).
    Differentiable in coords, rotations and origins.
    """
    xyz = coords @ rotations.transpose(-1, -2)  # rows: (A r)^T
    pos = xyz[..., :2] / pixel_size
    if origins is not None:
        pos = pos - origins[:, None, :] / pixel_size
    sig = sigma / pixel_size
    gx = gaussian_profiles(pos[..., 0], size, sig)  # (B, N, L)
    gy = gaussian_profiles(pos[..., 1], size, sig) * weights[:, None]
    return gy.transpose(-1, -2) @ gx  # (B, Ly, Lx)


def atoms_to_map(
    coords: torch.Tensor,
    weights: torch.Tensor,
    *,
    pixel_size: float,
    size: int,
    sigma: float,
    chunk: int = 4096,
    point: bool = False,
) -> torch.Tensor:
    """Density map (z, y, x) of atoms (N, 3) [Å] on a size³ grid, same Gaussians as `project_atoms`: each voxel
    holds Σ weight × the Gaussian's integral over the voxel, or (`point`) its value at the voxel centre × voxel
    volume (both sum to Σ weights)."""
    sig = sigma / pixel_size
    p = coords / pixel_size
    vol = coords.new_zeros(size * size, size)
    for lo in range(0, coords.shape[0], chunk):
        sl = slice(lo, lo + chunk)
        gx = gaussian_profiles(p[sl, 0], size, sig, point)
        gy = gaussian_profiles(p[sl, 1], size, sig, point)
        gz = gaussian_profiles(p[sl, 2], size, sig, point) * weights[sl, None]
        gzy = (gz[:, :, None] * gy[:, None, :]).reshape(gx.shape[0], size * size)
        vol += gzy.T @ gx
    return vol.reshape(size, size, size)


def sigma_for_resolution(resolution: float) -> float:
    """Gaussian σ (Å) for a map 'at' `resolution` Å: σ = 0.225·d (Chimera molmap's σ factor 1/(π√2))."""
    return resolution / (math.pi * math.sqrt(2.0))
