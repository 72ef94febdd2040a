"""Fourier shell correlation between two maps, and the resolution where it crosses a threshold."""

from __future__ import annotations

import numpy as np
import torch


def fsc(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(shell index 0..L/2-1, FSC per shell) of two (L, L, L) maps; shells of one Fourier voxel."""
    a, b = torch.as_tensor(a, dtype=torch.float64), torch.as_tensor(b, dtype=torch.float64)
    L = a.shape[-1]
    Fa, Fb = torch.fft.fftn(a), torch.fft.fftn(b)
    k = torch.fft.fftfreq(L, dtype=torch.float64) * L
    kz, ky, kx = torch.meshgrid(k, k, k, indexing="ij")
    shell = torch.round(torch.sqrt(kx**2 + ky**2 + kz**2)).long().ravel()
    keep = shell < L // 2
    shell = shell[keep]
    cross = torch.zeros(L // 2, dtype=torch.float64).index_add_(0, shell, (Fa * Fb.conj()).real.ravel()[keep])
    pa = torch.zeros(L // 2, dtype=torch.float64).index_add_(0, shell, (Fa.abs() ** 2).ravel()[keep])
    pb = torch.zeros(L // 2, dtype=torch.float64).index_add_(0, shell, (Fb.abs() ** 2).ravel()[keep])
    return np.arange(L // 2), (cross / torch.sqrt(pa * pb).clamp_min(1e-30)).numpy()


def resolution_at(curve: np.ndarray, size: int, pixel_size: float, threshold: float) -> float:
    """Resolution (Å) of the first shell where the FSC drops below `threshold` (Nyquist if never)."""
    below = np.nonzero(curve[1:] < threshold)[0]
    shell = (below[0] + 1) if len(below) else len(curve)
    return size * pixel_size / max(shell, 1)


def soft_sphere(size: int, radius_px: float, edge_px: float = 3.0) -> torch.Tensor:
    """A (size³) mask: 1 inside radius, raised-cosine edge of width edge_px, 0 beyond."""
    c = torch.arange(size, dtype=torch.float64) - size // 2
    r = torch.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    t = ((r - radius_px) / max(edge_px, 1e-6)).clamp(0, 1)
    return 0.5 * (1 + torch.cos(torch.pi * t))
