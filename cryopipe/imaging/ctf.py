"""Contrast transfer function with RELION's definitions (defocus in Å, positive = underfocus).

CTF(s) = [-sqrt(1-Q²)·sin(χ) + Q·cos(χ)] · exp(-B s²/4), with
χ(s) = -π λ Δf(θ) s² + (π/2) Cs λ³ s⁴ - φ, and Δf(θ) = (U+V)/2 + (U-V)/2 · cos 2(θ - θ_ast).
θ is the angle of the frequency from the +x axis and θ_ast is rlnDefocusAngle. This is RELION's
`CTF::getCTF` (-sin(χ - atan(Q/sqrt(1-Q²)))) written with positive defocus; it starts at +Q at
s = 0 and is positive at low frequency for underfocus (protein white, as in RELION).
"""

from __future__ import annotations

import math

import numpy as np
import torch


def electron_wavelength(voltage_kv: float) -> float:
    """Relativistic electron wavelength in Å for an acceleration voltage in kV."""
    v = voltage_kv * 1e3
    return 12.2643247 / math.sqrt(v * (1 + 0.978466e-6 * v))


def frequency_grid(shape: tuple[int, int], pixel_size: float, rfft: bool = True, device=None, dtype=torch.float64):
    """Spatial frequencies (fy, fx) in 1/Å on the FFT grid of an image of `shape` (y, x)."""
    fy = torch.fft.fftfreq(shape[0], d=pixel_size, device=device, dtype=dtype)
    fx = (torch.fft.rfftfreq if rfft else torch.fft.fftfreq)(shape[1], d=pixel_size, device=device, dtype=dtype)
    return torch.meshgrid(fy, fx, indexing="ij")


def _f64(x, device=None) -> torch.Tensor:
    if isinstance(x, torch.Tensor):
        return x.to(dtype=torch.float64, device=device or x.device)
    return torch.tensor(np.array(x, dtype=np.float64), device=device)


def ctf_2d(
    defocus_u: torch.Tensor | np.ndarray,
    defocus_v: torch.Tensor | np.ndarray,
    defocus_angle: torch.Tensor | np.ndarray,
    *,
    voltage: float,
    spherical_aberration: float,
    amplitude_contrast: float,
    pixel_size: float,
    shape: tuple[int, int],
    b_factor: float = 0.0,
    phase_shift: float | torch.Tensor | np.ndarray = 0.0,
    rfft: bool = True,
) -> torch.Tensor:
    """CTF images (B, H, W//2+1 or W) for B particles.

    defocus_u/v in Å (B,), defocus_angle in degrees (B,), voltage in kV, Cs in mm,
    phase_shift in degrees (one, or one per particle (B,)), B-factor in Å².
    """
    du = _f64(defocus_u).reshape(-1, 1, 1)
    dv = _f64(defocus_v, du.device).reshape(-1, 1, 1)
    ang = torch.deg2rad(_f64(defocus_angle, du.device)).reshape(-1, 1, 1)
    fy, fx = frequency_grid(shape, pixel_size, rfft=rfft, device=du.device)
    s2 = fx**2 + fy**2
    theta = torch.atan2(fy, fx)
    lam = electron_wavelength(voltage)
    cs = spherical_aberration * 1e7  # mm -> Å
    defocus = 0.5 * (du + dv) + 0.5 * (du - dv) * torch.cos(2 * (theta - ang))
    if isinstance(phase_shift, (int, float)):
        shift: float | torch.Tensor = math.radians(phase_shift)
    else:  # one per particle (rlnPhaseShift)
        shift = torch.deg2rad(_f64(phase_shift, du.device)).reshape(-1, 1, 1)
    chi = -math.pi * lam * defocus * s2 + 0.5 * math.pi * cs * lam**3 * s2**2 - shift
    q = amplitude_contrast
    ctf = -math.sqrt(1 - q * q) * torch.sin(chi) + q * torch.cos(chi)
    if b_factor:
        ctf = ctf * torch.exp(-b_factor * s2 / 4)
    return ctf.float()
