"""Fourier shell correlation between two maps, masks, and the mask-corrected FSC of two half maps.

Shells are one Fourier voxel wide (shell s holds the coefficients with round(|k|) = s, k in cycles per
box); shell s of an L-px box at pixel size p is the resolution L·p/s Å.

The masked FSC of two half maps is optimistic: multiplying both by the same mask convolves both spectra
with the mask's transform, so correlated low-resolution signal leaks into every shell. `corrected_fsc`
removes that by phase randomisation (Chen et al. 2013, as `relion_postprocess` does): the phases of both
half maps are replaced by random ones beyond the shell where the unmasked FSC first drops below 0.8,
the randomised maps are masked the same way, and their FSC (what the mask alone makes of two maps with no
correlation there) is taken out: FSC_true = (FSC_masked − FSC_random) / (1 − FSC_random).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


def shell_index(size: int, rfft: bool = False, device=None) -> torch.Tensor:
    """round(|k|) of every coefficient of an fftn (size³) or rfftn (size, size, size//2 + 1) of a (z, y, x) map."""
    k = torch.fft.fftfreq(size, device=device, dtype=torch.float64) * size
    kx = torch.fft.rfftfreq(size, device=device, dtype=torch.float64) * size if rfft else k
    r = torch.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + kx[None, None, :] ** 2)
    return torch.round(r).long()


def rfft_multiplicity(size: int, device=None) -> torch.Tensor:
    """(size//2 + 1,): how many coefficients of the full spectrum each rfftn column stands for (1 or 2)."""
    m = torch.full((size // 2 + 1,), 2.0, dtype=torch.float64, device=device)
    m[0] = 1.0
    if size % 2 == 0:
        m[-1] = 1.0
    return m


def shell_sums(values: torch.Tensor, size: int) -> torch.Tensor:
    """Σ over each shell 0..size/2−1 of a real rfftn-layout array, counted as over the full spectrum."""
    shell = shell_index(size, rfft=True, device=values.device)
    keep = shell < size // 2
    v = (values * rfft_multiplicity(size, values.device))[keep]
    return torch.zeros(size // 2, dtype=torch.float64, device=values.device).index_add_(0, shell[keep], v.double())


def shell_voxels(size: int) -> np.ndarray:
    """Fourier voxels in each shell 0..size/2−1 (of the full spectrum)."""
    return shell_sums(torch.ones(size, size, size // 2 + 1, dtype=torch.float64), size).numpy()


def fsc(a: torch.Tensor, b: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """(shell index 0..L/2-1, FSC per shell) of two (L, L, L) maps; in float32 when both are (sums in float64)."""
    a, b = torch.as_tensor(a), torch.as_tensor(b)
    dtype = torch.float32 if a.dtype == b.dtype == torch.float32 else torch.float64
    a, b = a.to(dtype), b.to(dtype)
    L = a.shape[-1]
    Fa, Fb = torch.fft.rfftn(a), torch.fft.rfftn(b)
    cross = shell_sums((Fa * Fb.conj()).real, L)
    pa, pb = shell_sums(Fa.abs() ** 2, L), shell_sums(Fb.abs() ** 2, L)
    return np.arange(L // 2), (cross / torch.sqrt(pa * pb).clamp_min(1e-30)).numpy()


def noise_fsc_line(size: int, sigmas: float = 3.0, mask: torch.Tensor | None = None) -> np.ndarray:
    """`sigmas` standard deviations of the FSC of two maps of independent noise, per shell 0..size/2−1.

    A shell of n_s voxels holds n_s/2 independent Friedel pairs, so the FSC of uncorrelated maps has σ ≈
    1/√(n_s/2). A mask m leaves fewer independent voxels: the fraction (Σm²)²/(N·Σm⁴) of the box's N.
    """
    n = shell_voxels(size) / 2
    if mask is not None:
        m2 = torch.as_tensor(mask, dtype=torch.float64) ** 2
        n = n * float(m2.sum() ** 2 / (m2.numel() * (m2**2).sum()))
    return sigmas / np.sqrt(np.maximum(n, 1))


def resolution_at(curve: np.ndarray, size: int, pixel_size: float, threshold: float) -> float:
    """Resolution (Å) of the first shell where the FSC drops below `threshold` (Nyquist if never)."""
    return size * pixel_size / max(crossing_shell(curve, threshold), 1)


def crossing_shell(curve: np.ndarray, threshold: float) -> int:
    """First shell ≥ 1 where the FSC is below `threshold` (len(curve) if it never is)."""
    below = np.nonzero(np.asarray(curve)[1:] < threshold)[0]
    return int(below[0] + 1) if len(below) else len(curve)


def soft_sphere(size: int, radius_px: float, edge_px: float = 3.0) -> torch.Tensor:
    """A (size³) mask: 1 inside radius, raised-cosine edge of width edge_px, 0 beyond."""
    c = torch.arange(size, dtype=torch.float64) - size // 2
    r = torch.sqrt(c[:, None, None] ** 2 + c[None, :, None] ** 2 + c[None, None, :] ** 2)
    return _raised_cosine((r - radius_px) / max(edge_px, 1e-6))


def molecule_mask(coords: np.ndarray, size: int, pixel_size: float, margin: float, edge: float) -> torch.Tensor:
    """A (size³) mask around atoms (N, 3) [Å, from the box centre]: 1 within `margin` Å of an atom, a raised-cosine
    edge `edge` Å wide beyond, 0 further out (the shape of RELION's mask: binary, extended, soft edge)."""
    from scipy.spatial import cKDTree

    c = (np.arange(size) - size // 2) * pixel_size
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    grid = np.stack([x.ravel(), y.ravel(), z.ravel()], 1)
    dist, _ = cKDTree(np.asarray(coords, dtype=np.float64)).query(grid, distance_upper_bound=margin + edge + pixel_size)
    t = torch.as_tensor(np.minimum((dist - margin) / max(edge, 1e-6), 1.0)).reshape(size, size, size)
    return _raised_cosine(t)


def _raised_cosine(t: torch.Tensor) -> torch.Tensor:
    t = t.clamp(0, 1)
    return 0.5 * (1 + torch.cos(torch.pi * t))


def randomise_phases(vol: torch.Tensor, from_shell: int, generator: torch.Generator) -> torch.Tensor:
    """The map with the phase of every coefficient in shells ≥ from_shell replaced by a uniform random one
    (amplitudes kept; the rfftn layout keeps the result real)."""
    vol = torch.as_tensor(vol)
    L = vol.shape[-1]
    F = torch.fft.rfftn(vol)
    phase = torch.rand(F.shape, generator=generator, dtype=vol.dtype) * (2 * torch.pi)
    beyond = shell_index(L, rfft=True) >= from_shell
    F = torch.where(beyond, F.abs() * torch.exp(1j * phase), F)
    return torch.fft.irfftn(F, s=vol.shape)


@dataclass
class HalfMapFSC:
    """The FSC curves of two half maps (shells 0..L/2−1) and where the phases were randomised."""

    unmasked: np.ndarray
    masked: np.ndarray
    randomised: np.ndarray  # masked FSC of the phase-randomised half maps
    corrected: np.ndarray  # masked, with the mask's own correlation removed
    randomise_from: int  # first randomised shell

    def resolution(self, size: int, pixel_size: float, threshold: float = 0.143) -> float:
        return resolution_at(self.corrected, size, pixel_size, threshold)


def corrected_fsc(
    half1: torch.Tensor, half2: torch.Tensor, mask: torch.Tensor, randomise_below: float = 0.8, seed: int = 0
) -> HalfMapFSC:
    """Unmasked, masked, phase-randomised and corrected FSC of two half maps under `mask` (Chen et al. 2013).

    The phases are randomised from the first shell where the unmasked FSC drops below `randomise_below`; the
    correction starts two shells further out (RELION's margin against artefacts at the randomisation edge).
    """
    h1, h2 = torch.as_tensor(half1), torch.as_tensor(half2)
    dtype = torch.float32 if h1.dtype == h2.dtype == torch.float32 else torch.float64
    h1, h2 = h1.to(dtype), h2.to(dtype)
    m = torch.as_tensor(mask).to(dtype)
    _, unmasked = fsc(h1, h2)
    _, masked = fsc(h1 * m, h2 * m)
    start = crossing_shell(unmasked, randomise_below)
    g = torch.Generator().manual_seed(seed)
    _, randomised = fsc(randomise_phases(h1, start, g) * m, randomise_phases(h2, start, g) * m)
    corrected = masked.copy()
    out = np.arange(len(masked)) >= start + 2
    denom = np.where(np.abs(1 - randomised) > 1e-6, 1 - randomised, 1e-6)
    corrected[out] = ((masked - randomised) / denom)[out]
    return HalfMapFSC(unmasked, masked, randomised, corrected, start)
