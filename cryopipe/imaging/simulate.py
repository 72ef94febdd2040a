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
from cryopipe.io.star import EULER, ORIGIN


@dataclass
class Optics:
    pixel_size: float
    size: int
    voltage: float = 300.0
    spherical_aberration: float = 2.7
    amplitude_contrast: float = 0.1
    b_factor: float = 0.0
    phase_shift: float = 0.0

    @classmethod
    def from_params(cls, params: dict) -> Optics:
        """From a stage's params holding `simulate`'s optics keys and its box and pixel size."""
        keys = ("voltage", "spherical_aberration", "amplitude_contrast", "b_factor", "phase_shift")
        return cls(params["pixel_size"], params["box"], *(params[k] for k in keys))


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


def consensus_poses(truth: pd.DataFrame, angle: float, shift: float, seed: int, name: str) -> pd.DataFrame:
    """The poses a consensus refinement might have found: each true rotation turned by exactly `angle` degrees
    about a random axis, each origin moved by exactly `shift` Å in a random direction (RELION columns)."""
    from cryopipe.geometry import matrix_to_euler, perturb_rotations

    out = truth[EULER + ORIGIN].copy()
    if angle == 0 and shift == 0:
        return out
    g = torch.Generator().manual_seed(int(np.random.SeedSequence([dataset_seed(seed, name), 4]).generate_state(1)[0]))
    R = euler_to_matrix(torch.tensor(truth[EULER].to_numpy(np.float64)))
    out[EULER] = matrix_to_euler(perturb_rotations(R, angle, g)).numpy()
    phi = torch.rand(len(truth), generator=g, dtype=torch.float64).numpy() * 2 * np.pi
    out[ORIGIN] = truth[ORIGIN].to_numpy(np.float64) + shift * np.stack([np.cos(phi), np.sin(phi)], 1)
    return out


def particle_noise(seed: int, name: str, index: int, shape: tuple[int, ...]) -> torch.Tensor:
    g = torch.Generator().manual_seed(
        int(np.random.SeedSequence([dataset_seed(seed, name), 3, index]).generate_state(1)[0])
    )
    return torch.randn(shape, generator=g, dtype=torch.float32)


class Simulator:
    """Renders batches of particles of one dataset (one SNR × defocus grid point).

    Images are computed in float32 (the stacks are float32); geometry in float64. `modes` (M, N, 3)
    are the displacement fields that the batch's amplitude columns weigh (normal modes, or a morph).
    density "gaussian": one Gaussian of width `sigma` and weight `weights` per atom (the alignment's
    model); "scattering": electron form factors blurred by `bfactors` (`cryopipe.imaging.density`).
    """

    def __init__(
        self,
        coords: np.ndarray,
        weights: np.ndarray,
        modes: np.ndarray,
        optics: Optics,
        *,
        sigma: float,
        ctf: bool = True,
        pad_factor: float = 2.0,
        device: str = "cpu",
        density: str = "gaussian",
        elements=None,
        bfactors=None,
    ):
        self.device = torch.device(device)
        if density == "scattering":
            from cryopipe.imaging.density import scattering_gaussians

            index, weights, sig = scattering_gaussians(list(elements), bfactors)
            coords, modes = np.asarray(coords)[index], np.asarray(modes)[:, index]
            self.sigma: float | torch.Tensor = torch.as_tensor(sig, dtype=torch.float32, device=self.device)
            sigma = float(sig.max())
        elif density == "gaussian":
            self.sigma = sigma
        else:
            raise CryopipeError(f"config key 'simulate.density': unknown density model '{density}'")
        self.coords = torch.as_tensor(coords, dtype=torch.float64, device=self.device)
        self.weights = torch.as_tensor(weights, dtype=torch.float32, device=self.device)
        self.modes = torch.as_tensor(modes, dtype=torch.float64, device=self.device)
        self.optics = optics
        self.ctf = ctf
        self.padded = int(2 * round(optics.size * pad_factor / 2))
        self.mask_radius_px = particle_radius(coords, sigma) / optics.pixel_size

    def _tensor(self, values) -> torch.Tensor:
        return torch.tensor(np.array(values, dtype=np.float64), device=self.device)

    def clean(self, batch: pd.DataFrame, amp_cols: list[str]) -> torch.Tensor:
        """Noiseless, CTF-free projections (B, L, L) of the deformed atoms at the batch's poses."""
        amps = self._tensor(batch[amp_cols].to_numpy())
        xyz = self.coords + torch.einsum("bk,knd->bnd", amps, self.modes)
        A = euler_to_matrix(self._tensor(batch[EULER].to_numpy()))
        # Rotate and shift in float64, render in float32.
        xyz = (xyz @ A.transpose(-1, -2)).float()
        origins = self._tensor(batch[ORIGIN].to_numpy()).float()
        eye = torch.eye(3, device=self.device).expand(len(batch), 3, 3)
        return project_atoms(
            xyz, self.weights, eye, origins, pixel_size=self.optics.pixel_size, size=self.optics.size, sigma=self.sigma
        )

    def ctf_images(self, batch: pd.DataFrame) -> torch.Tensor | None:
        """CTFs (B, P, P//2+1) on the padded grid, or None when the CTF is off."""
        if not self.ctf:
            return None
        o = self.optics
        return ctf_2d(
            self._tensor(batch["rlnDefocusU"].to_numpy()),
            batch["rlnDefocusV"].to_numpy(),
            batch["rlnDefocusAngle"].to_numpy(),
            voltage=o.voltage,
            spherical_aberration=o.spherical_aberration,
            amplitude_contrast=o.amplitude_contrast,
            pixel_size=o.pixel_size,
            shape=(self.padded, self.padded),
            b_factor=o.b_factor,
            phase_shift=o.phase_shift,
        )

    def _ctf_filter_crop(self, padded_images: torch.Tensor, ctf: torch.Tensor | None) -> torch.Tensor:
        if ctf is not None:
            padded_images = torch.fft.irfft2(torch.fft.rfft2(padded_images) * ctf, s=padded_images.shape[-2:])
        return crop_centered(padded_images, self.optics.size)

    def signal(self, batch: pd.DataFrame, amp_cols: list[str]) -> torch.Tensor:
        """CTF-modulated noiseless images (B, L, L); the CTF acts in the padded box (no wrap-around)."""
        return self._ctf_filter_crop(pad_centered(self.clean(batch, amp_cols), self.padded), self.ctf_images(batch))

    def particle_mask(self, batch: pd.DataFrame) -> torch.Tensor:
        centre = -self._tensor(batch[ORIGIN].to_numpy()) / self.optics.pixel_size
        return radial_mask(self.optics.size, self.mask_radius_px, centre, device=self.device)

    def signal_variance(self, signal: torch.Tensor, batch: pd.DataFrame) -> np.ndarray:
        """var(signal) inside each particle's disc (B,)."""
        from cryopipe.imaging.noise import disc_variance

        return disc_variance(signal, self.particle_mask(batch)).double().cpu().numpy()

    def noise(
        self, batch: pd.DataFrame, noise_var: float, before_fraction: float, seed: int, name: str
    ) -> torch.Tensor:
        """Noise images (B, L, L) of total variance `noise_var`, `before_fraction` of it CTF-filtered."""
        P, L = self.padded, self.optics.size
        white = torch.stack([particle_noise(seed, name, int(i), (2, P, P)) for i in batch["particle"]]).to(self.device)
        after = (1 - before_fraction) ** 0.5 * noise_var**0.5 * crop_centered(white[:, 1], L)
        ctf = self.ctf_images(batch)
        if ctf is None:
            return after + before_fraction**0.5 * noise_var**0.5 * crop_centered(white[:, 0], L)
        # White noise of variance σ² filtered by the CTF has variance σ² · mean |CTF|² over the full spectrum.
        w = torch.full((P // 2 + 1,), 2.0, device=self.device)
        w[0] = 1.0
        if P % 2 == 0:
            w[-1] = 1.0
        ctf_power = (ctf**2 * w).sum(dim=(-2, -1)) / (P * P)
        sd_before = torch.sqrt(before_fraction * noise_var / ctf_power)[:, None, None]
        return after + self._ctf_filter_crop(sd_before * white[:, 0], ctf)


def particle_radius(coords: np.ndarray, sigma: float) -> float:
    """Å: the radius of the disc the signal variance is measured in: the largest atom distance from the
    centre plus 2σ."""
    return float(np.linalg.norm(np.asarray(coords), axis=1).max() + 2 * sigma)


def noise_variance_for_snr(signal_variances: np.ndarray, snr: float) -> float:
    if not snr > 0:
        raise CryopipeError(f"SNR must be positive, got {snr}")
    return float(np.mean(signal_variances) / snr)
