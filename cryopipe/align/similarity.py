"""Similarity of model and image: CTF-aware correlation in Fourier space, in a frequency band.

The images are normalised (unknown contrast scale) and usually phase-flipped, so the model is the
projection filtered by C = |CTF| (or by the CTF itself for images that were not flipped) and the
score is the normalised cross-correlation

    cc = Σ_k w_k Re(conj(C_k P_k) I_k) / sqrt(Σ_k w_k |C_k P_k|² · Σ_k w_k |I_k|²),

over frequencies k in (0, 1/lowpass] (w_k also counts the two halves of the rfft). It is the
real-space correlation of the band-limited, CTF-weighted model with the band-limited image:
scale- and offset-invariant (like the least-squares fit with an optimal per-image scale) and it
puts weight where the CTF transfers signal. The low-pass is raised stage by stage (coarse to fine).
"""

from __future__ import annotations

import torch

from cryopipe.imaging.ctf import frequency_grid


def band_weights(size: int, pixel_size: float, lowpass: float, device=None) -> torch.Tensor:
    """(size, size//2+1) weights: rfft multiplicity inside the band, a cosine edge of 1 Fourier pixel, DC excluded."""
    fy, fx = frequency_grid((size, size), pixel_size, rfft=True, device=device, dtype=torch.float32)
    r = torch.sqrt(fx**2 + fy**2) * size * pixel_size  # radius in Fourier pixels
    cut = min(size * pixel_size / lowpass, size / 2)
    edge = torch.clamp(cut + 0.5 - r, 0.0, 1.0)
    edge = 0.5 - 0.5 * torch.cos(torch.pi * edge)
    mult = torch.full((size // 2 + 1,), 2.0, device=device)
    mult[0] = 1.0
    if size % 2 == 0:
        mult[-1] = 1.0
    w = edge * mult
    w[0, 0] = 0.0
    return w


def correlation(
    model_ft: torch.Tensor, image_ft: torch.Tensor, model_ctf: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """cc (B,) of rfft'd model projections (B, H, W) and images (B, H, W) with the model's CTF (B, H, W)."""
    m = model_ft * model_ctf
    num = (weights * (m.conj() * image_ft).real).sum((-2, -1))
    den_m = (weights * (m.real**2 + m.imag**2)).sum((-2, -1))
    den_i = (weights * (image_ft.real**2 + image_ft.imag**2)).sum((-2, -1))
    return num / torch.sqrt(den_m * den_i).clamp_min(1e-20)
