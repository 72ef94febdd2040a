"""Simulated particle stacks: deformed atoms → projection → CTF → noise at a target SNR.

SNR definition (used everywhere): SNR = var(signal) / var(noise), where the signal is the
noiseless CTF-modulated image, its variance is taken inside a disc around the particle (radius =
the reference's largest atom distance from its centre + 2σ) and averaged over the stack, and the
noise variance is that of the total added noise in the final image. One noise level per stack,
as on a real micrograph. A fraction `noise_before_ctf` of that variance is added before the CTF
(structural noise, CTF-modulated, Sorzano et al. 2007), the rest after it.

Every random draw comes from (seed, dataset name, particle index), so a stack does not depend on
the batch size, and changing one grid point does not change the others.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cryopipe.errors import CryopipeError
from cryopipe.geometry import euler_to_matrix
from cryopipe.imaging.ctf import ctf_2d
from cryopipe.imaging.fourier import crop_centered, pad_centered, radial_mask
from cryopipe.imaging.project import project_atoms


@dataclass
class Optics:
    pixel_size: float
    size: int
    voltage: float = 300.0
    spherical_aberration: float = 2.7
    amplitude_contrast: float = 0.1
    b_factor: float = 0.0
    phase_shift: float = 0.0


def dataset_seed(seed: int, name: str) -> int:
    """A stable 32-bit stream id per dataset name (independent of Python's hash randomisation)."""
    return int(np.random.SeedSequence([seed, zlib.crc32(name.encode())]).generate_state(1)[0])


def draw_defocus(n: int, defocus_range_um: tuple[float, float], astigmatism: float, seed: int, name: str):
    """Per-particle (DefocusU, DefocusV, DefocusAngle) in Å, Å, degrees."""
    lo, hi = defocus_range_um
    rng = np.random.default_rng(np.random.SeedSequence([dataset_seed(seed, name), 2]))
    mean = rng.uniform(lo, hi, n) * 1e4
    angle = rng.uniform(0, 180, n)
    return mean + astigmatism / 2, mean - astigmatism / 2, angle


def particle_noise(seed: int, name: str, index: int, shape: tuple[int, int]) -> torch.Tensor:
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([dataset_seed(seed, name), 3, index]).generate_state(1)[0]))
    return torch.randn(shape, generator=g, dtype=torch.float64)


class Simulator:
    """Renders batches of particles of one dataset (one SNR × defocus grid point)."""

    def __init__(self, coords: np.ndarray, weights: np.ndarray, modes: np.ndarray, optics: Optics, *, sigma: float,
                 ctf: bool = True, pad_factor: float = 2.0, device: str = "cpu"):
        self.device = torch.device(device)
        self.coords = torch.as_tensor(coords, dtype=torch.float64, device=self.device)
        self.weights = torch.as_tensor(weights, dtype=torch.float64, device=self.device)
        self.modes = torch.as_tensor(modes, dtype=torch.float64, device=self.device)
        self.optics = optics
        self.sigma = sigma
        self.ctf = ctf
        self.padded = int(2 * round(optics.size * pad_factor / 2))
        radius = float(np.linalg.norm(coords, axis=1).max() + 2 * sigma)
        self.mask_radius_px = radius / optics.pixel_size

    def clean(self, amplitudes, euler, origins) -> torch.Tensor:
        """Noiseless, CTF-free projections (B, L, L)."""
        amps = torch.tensor(np.array(amplitudes, dtype=np.float64), device=self.device)
        xyz = self.coords + torch.einsum("bk,knd->bnd", amps, self.modes)
        A = euler_to_matrix(torch.tensor(np.array(euler, dtype=np.float64), device=self.device))
        o = torch.tensor(np.array(origins, dtype=np.float64), device=self.device)
        return project_atoms(xyz, self.weights, A, o, pixel_size=self.optics.pixel_size, size=self.optics.size, sigma=self.sigma)

    def ctf_images(self, defocus_u, defocus_v, defocus_angle) -> torch.Tensor:
        o = self.optics
        return ctf_2d(torch.tensor(np.array(defocus_u, dtype=np.float64), device=self.device), defocus_v, defocus_angle,
                      voltage=o.voltage, spherical_aberration=o.spherical_aberration, amplitude_contrast=o.amplitude_contrast,
                      pixel_size=o.pixel_size, shape=(self.padded, self.padded), b_factor=o.b_factor,
                      phase_shift=o.phase_shift).to(torch.float64)

    def _filter(self, padded_images: torch.Tensor, ctf: torch.Tensor | None) -> torch.Tensor:
        if ctf is None:
            return padded_images
        return torch.fft.irfft2(torch.fft.rfft2(padded_images) * ctf, s=padded_images.shape[-2:])

    def signal(self, batch: pd.DataFrame, amp_cols: list[str]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """CTF-modulated noiseless images (B, L, L) and the padded CTFs used (or None)."""
        clean = self.clean(batch[amp_cols].to_numpy(), batch[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(),
                           batch[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy())
        ctf = self.ctf_images(batch["rlnDefocusU"].to_numpy(), batch["rlnDefocusV"].to_numpy(),
                              batch["rlnDefocusAngle"].to_numpy()) if self.ctf else None
        return crop_centered(self._filter(pad_centered(clean, self.padded), ctf), self.optics.size), ctf

    def signal_variance(self, batch: pd.DataFrame, amp_cols: list[str]) -> np.ndarray:
        sig, _ = self.signal(batch, amp_cols)
        mask = self.particle_mask(batch)
        return np.array([s[m].var().item() for s, m in zip(sig, mask)])

    def particle_mask(self, batch: pd.DataFrame) -> torch.Tensor:
        centre = -torch.tensor(batch[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(dtype=np.float64)) / self.optics.pixel_size
        return radial_mask(self.optics.size, self.mask_radius_px, centre, device=self.device)

    def noisy(self, batch: pd.DataFrame, amp_cols: list[str], noise_var: float, before_fraction: float, seed: int,
              name: str) -> torch.Tensor:
        """Final images (B, L, L): signal + noise of total variance `noise_var` split around the CTF."""
        clean = self.clean(batch[amp_cols].to_numpy(), batch[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(),
                           batch[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy())
        P, L = self.padded, self.optics.size
        padded = pad_centered(clean, P)
        noise = torch.stack([particle_noise(seed, name, int(i), (2, P, P)) for i in batch["particle"]]).to(self.device)
        if self.ctf:
            ctf = self.ctf_images(batch["rlnDefocusU"].to_numpy(), batch["rlnDefocusV"].to_numpy(), batch["rlnDefocusAngle"].to_numpy())
            # Variance of white noise after the CTF = σ² · mean |CTF|² over the full spectrum.
            w = torch.full((P // 2 + 1,), 2.0, dtype=torch.float64, device=self.device)
            w[0] = 1.0
            if P % 2 == 0:
                w[-1] = 1.0
            ctf_power = (ctf**2 * w).sum(dim=(-2, -1)) / (P * P)
            sd_before = torch.sqrt(before_fraction * noise_var / ctf_power)[:, None, None]
            image = self._filter(padded + sd_before * noise[:, 0], ctf)
            sd_after = (1 - before_fraction) ** 0.5 * noise_var**0.5
        else:
            image = padded
            sd_after = noise_var**0.5
        return crop_centered(image, L) + sd_after * crop_centered(noise[:, 1], L)


def noise_variance_for_snr(signal_variances: np.ndarray, snr: float) -> float:
    if not snr > 0:
        raise CryopipeError(f"SNR must be positive, got {snr}")
    return float(np.mean(signal_variances) / snr)
