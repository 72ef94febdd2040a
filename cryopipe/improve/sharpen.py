"""Classical improvement of a map from its two half maps, as `relion_postprocess` does: the FSC-weighted map
(each shell × √(2 FSC / (1 + FSC)), Rosenthal & Henderson's C_ref, from the mask-corrected half-map FSC) and that
map sharpened by the B-factor of a Guinier fit (ln |F| against 1/d² from 10 Å to the resolution), low-passed at
the resolution."""

from __future__ import annotations

import numpy as np
import torch

from cryopipe.analysis.fsc import HalfMapFSC, shell_index, shell_sums

GUINIER_LOW = 10.0  # Å: the fit starts here (below, the solvent and molecule shape dominate |F|)


def shell_weights(curve: np.ndarray) -> np.ndarray:
    """C_ref = √(2 FSC / (1 + FSC)) per shell (negative FSC → 0)."""
    f = np.clip(np.nan_to_num(curve, nan=0.0), 0.0, 1.0)
    return np.sqrt(2 * f / (1 + f))


def radial_filter(vol: torch.Tensor, per_shell: np.ndarray) -> torch.Tensor:
    """vol with every Fourier shell s multiplied by per_shell[s] (shells beyond the last: × 0)."""
    L = vol.shape[-1]
    idx = shell_index(L, rfft=True)
    w = torch.zeros(int(idx.max()) + 1, dtype=torch.float64)
    n = min(len(per_shell), len(w))
    w[:n] = torch.as_tensor(per_shell[:n], dtype=torch.float64)
    return torch.fft.irfftn(torch.fft.rfftn(vol.double()) * w[idx], s=vol.shape).to(vol.dtype)


def guinier_bfactor(vol: torch.Tensor, voxel_size: float, resolution: float, low: float = GUINIER_LOW) -> float:
    """B (Å²) of the straight-line fit of ln(mean |F| per shell) = c − B s²/4 over shells from `low` Å to
    `resolution` Å (s = 1/d); nan when fewer than 3 shells lie there."""
    L = vol.shape[-1]
    F = torch.fft.rfftn(vol.double()).abs()
    amp = (shell_sums(F, L) / shell_sums(torch.ones_like(F), L).clamp(min=1)).numpy()[: L // 2]
    s = np.arange(L // 2) / (L * voxel_size)
    band = (s >= 1 / low) & (s <= 1 / resolution) & (amp > 0)
    if band.sum() < 3:
        return float("nan")
    slope = np.polyfit(s[band] ** 2, np.log(amp[band]), 1)[0]
    return float(-4 * slope)


def classical_maps(half1: torch.Tensor, half2: torch.Tensor, half: HalfMapFSC, voxel_size: float) -> dict:
    """{'fsc_weighted', 'sharpened': maps (L, L, L); 'bfactor' (Å², the fit's), 'resolution' (Å)} from the unfiltered
    half maps and their corrected FSC (`analysis.fsc.corrected_fsc`)."""
    L = half1.shape[-1]
    average = 0.5 * (half1.double() + half2.double())
    resolution = half.resolution(L, voxel_size)
    curve = np.where(np.arange(len(half.corrected)) < 1, 1.0, half.corrected)
    weighted = radial_filter(average, shell_weights(curve))
    bfactor = guinier_bfactor(average, voxel_size, resolution)  # nan (no sharpening) for maps worse than ~10 Å
    s = np.arange(L // 2) / (L * voxel_size)
    boost = np.exp(max(bfactor, 0.0) * s**2 / 4) if np.isfinite(bfactor) else np.ones_like(s)
    lowpass = (s <= 1 / resolution).astype(float) if np.isfinite(resolution) else np.ones_like(s)
    sharpened = radial_filter(weighted, boost * lowpass)
    return {
        "fsc_weighted": weighted.float(),
        "sharpened": sharpened.float(),
        "bfactor": bfactor,
        "resolution": resolution,
    }
