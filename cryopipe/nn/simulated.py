"""Training images made on the fly by the pipeline's own forward model (simulation-based training).

The network need not wait for labels: the reference atoms, the modes, the CTF and a noise model are
all the pipeline needs to draw exactly-labelled images, each one new. Everything the draws use comes
from the dataset being analysed, never from the ground truth of the images to be predicted:

- optics from the STAR's optics table; defocus (U, V, angle) resampled from the STAR's particle rows;
- amplitudes resampled from the set-1 alignment's estimates with Gaussian jitter of `broadening` × each
  mode's spread (or uniform in a box from the config); poses uniform on SO(3); origins uniform in the disc
  the set-1 estimates span (their 99th percentile of |origin|);
- the noise from the set-1 fits (`NoiseModel.from_fits`): the signal is the alignment's fitted, scaled
  projection, the noise is the residual. Its level (the stack SNR and each image's share of it) and its
  spectrum (radially averaged power: CTF-filtered structural noise is not white) are both kept.

An image is rendered exactly as `simulate` renders one (`Simulator`, at `oversample` × the network size),
then phase-flipped and Fourier-cropped as `preprocess` treats real images; the noise is added at the network
size, where it was measured, and the image normalised as `preprocess` does. Draws are a function of
(seed, step) only: a batch does not depend on what was generated before it, and no image repeats.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from cryopipe.geometry import euler_to_quaternion, matrix_to_euler, random_rotations
from cryopipe.imaging.fourier import fourier_crop, radial_mask
from cryopipe.imaging.noise import disc_variance, fitted_signal, signal_and_noise_variance
from cryopipe.imaging.preprocess import normalise, phase_flip
from cryopipe.imaging.simulate import Optics, Simulator, particle_radius
from cryopipe.io.star import DEFOCUS, EULER, ORIGIN


def shell_index(size: int, device=None) -> torch.Tensor:
    """Fourier shell (rounded radius in pixels of frequency, clamped to size//2) of every rfft2 coefficient."""
    fy = torch.fft.fftfreq(size, device=device) * size
    fx = torch.fft.rfftfreq(size, device=device) * size
    r = torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2)
    return torch.round(r).long().clamp_max(size // 2)


def _rfft_weights(size: int, device=None) -> torch.Tensor:
    """How many coefficients of the full spectrum each rfft2 column stands for (1 or 2)."""
    w = torch.full((size // 2 + 1,), 2.0, device=device)
    w[0] = 1.0
    if size % 2 == 0:
        w[-1] = 1.0
    return w


@dataclass
class NoiseModel:
    """Noise of a stack of preprocessed images, as measured against a fit to them.

    snr: mean var(signal in the particle's disc) / mean var(noise) (README, "Conventions");
    relative_level: each measured image's noise variance over the mean (the spread across micrographs);
    spectrum: mean noise power per Fourier shell (size//2 + 1 shells), any scale.
    """

    snr: float
    relative_level: np.ndarray
    spectrum: np.ndarray

    @classmethod
    def from_fits(cls, images: torch.Tensor, fitted: torch.Tensor, discs: torch.Tensor) -> NoiseModel:
        """From images (B, L, L), the fit's noiseless projections (B, L, L, any scale) and particle discs."""
        var_signal, var_noise = signal_and_noise_variance(images, fitted, discs)
        power = torch.fft.rfft2(fitted_signal(images, fitted)[1]).abs().pow(2).mean(0)
        L = images.shape[-1]
        shells = shell_index(L)
        spectrum = torch.zeros(L // 2 + 1, dtype=torch.float64).index_add_(0, shells.flatten(), power.flatten())
        counts = torch.bincount(shells.flatten(), minlength=L // 2 + 1).double()
        return cls(
            snr=float(var_signal.mean() / var_noise.mean()),
            relative_level=var_noise / var_noise.mean(),
            spectrum=(spectrum / counts.clamp_min(1)).numpy(),
        )

    def filter(self, size: int, device=None) -> torch.Tensor:
        """Amplitude filter (size, size//2+1) on the rfft2 grid: white noise of variance 1 multiplied by it
        has this spectrum and (in expectation) variance 1."""
        h = torch.as_tensor(np.sqrt(np.maximum(self.spectrum, 0.0)), dtype=torch.float32, device=device)[
            shell_index(size, device)
        ]
        mean_square = (h**2 * _rfft_weights(size, device)).sum() / size**2
        return h / mean_square.sqrt().clamp_min(1e-20)

    def state(self) -> dict:
        return {"snr": self.snr, "relative_level": self.relative_level.tolist(), "spectrum": self.spectrum.tolist()}


@dataclass
class TrainingPrior:
    """Where the training draws come from (all from the dataset, see the module docstring)."""

    amplitudes: np.ndarray  # (n, M) set-1 estimates, Å RMSD, resampled
    broadening: float  # Gaussian jitter sd, × each mode's std of the estimates
    max_shift: float  # Å: origins uniform in the disc of this radius
    defocus: np.ndarray  # (n, 3) DefocusU, DefocusV (Å), DefocusAngle (degrees), resampled
    noise: NoiseModel
    box: np.ndarray | None = None  # (M, 2) Å: amplitudes uniform in [lo, hi] instead

    def draw(self, n: int, rng: np.random.Generator, generator: torch.Generator, columns: list[str]) -> pd.DataFrame:
        """Parameters of n images: amplitude columns, RELION Euler angles, origins (Å), defocus, noise level."""
        M = len(columns)
        if self.box is not None:
            amps = rng.uniform(self.box[:, 0], self.box[:, 1], (n, M))
        else:
            spread = self.amplitudes.std(0) if len(self.amplitudes) > 1 else np.ones(M)
            amps = self.amplitudes[rng.integers(0, len(self.amplitudes), n)]
            amps = amps + rng.normal(0.0, 1.0, (n, M)) * self.broadening * spread
        radius = self.max_shift * np.sqrt(rng.uniform(0, 1, n))
        phi = rng.uniform(0, 2 * np.pi, n)
        euler = matrix_to_euler(random_rotations(n, generator)).numpy()
        out = pd.DataFrame(amps, columns=columns)
        out[EULER] = euler
        out[ORIGIN] = np.stack([radius * np.cos(phi), radius * np.sin(phi)], 1)
        out[DEFOCUS] = self.defocus[rng.integers(0, len(self.defocus), n)]
        out["noise_level"] = self.noise.relative_level[rng.integers(0, len(self.noise.relative_level), n)]
        out["particle"] = np.arange(n)
        return out


class TrainingSimulator:
    """Batches of training images drawn from a `TrainingPrior`, rendered by the project's simulator.

    `optics`: the preprocessed STAR's optics row (network size and pixel size, phase flipped or not);
    `standardise`: raw targets → the network's targets (`Standardiser.forward`). Runs on `device`
    (images rendered on the GPU when training runs there).
    """

    def __init__(
        self,
        coords: np.ndarray,
        weights: np.ndarray,
        modes: np.ndarray,
        sigma: float,
        prior: TrainingPrior,
        optics: dict,
        columns: list[str],
        *,
        kinds: tuple[str, ...],
        standardise,
        seed: int,
        batch_size: int,
        images_per_epoch: int,
        oversample: int = 2,
        background_radius: float = 0.8,
        ctf: bool = True,
        device: str = "cpu",
    ):
        self.prior, self.columns, self.kinds = prior, list(columns), tuple(kinds)
        self.standardise = standardise
        self.seed, self.batch_size = seed, batch_size
        self.batches_per_epoch = max(images_per_epoch // batch_size, 1)
        self.size = int(optics["rlnImageSize"])
        self.pixel_size = float(optics["rlnImagePixelSize"])
        self.phase_flipped = bool(int(optics.get("rlnCtfDataArePhaseFlipped", 0)))
        self.background_radius = background_radius
        self.device = torch.device(device)
        self.render_optics = {**optics, "rlnImagePixelSize": self.pixel_size / oversample}
        self.simulator = Simulator(
            coords,
            weights,
            modes,
            Optics(
                self.pixel_size / oversample,
                self.size * oversample,
                voltage=float(optics["rlnVoltage"]),
                spherical_aberration=float(optics["rlnSphericalAberration"]),
                amplitude_contrast=float(optics["rlnAmplitudeContrast"]),
            ),
            sigma=sigma,
            ctf=ctf,
            device=device,
        )
        self.disc_radius = particle_radius(coords, sigma) / self.pixel_size  # px of the network images
        self.noise_filter = prior.noise.filter(self.size, self.device)
        # One noise level for the whole stream, as for a stack (simulate's convention): the mean signal
        # variance of a calibration draw over the data's SNR.
        calibration = self.parameters(-1, 256)
        clean = self.clean(calibration)
        self.noise_variance = float(self.signal_variance(clean, calibration).mean()) / prior.noise.snr
        sample = prior.draw(4096, *self._streams(-2)[:2], self.columns)
        # standardised targets of a prior sample: what the best constant prediction is measured on
        targets = standardise(self.raw_targets(sample))
        self.targets = {k: torch.tensor(np.asarray(v), dtype=torch.float32) for k, v in targets.items()}

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def _streams(self, step: int) -> tuple[np.random.Generator, torch.Generator, torch.Generator]:
        """Independent streams of batch `step`: parameters (numpy, torch) and noise (torch, on the device)."""
        ss = np.random.SeedSequence([self.seed, 14, step + 2])  # steps −2, −1: target sample, calibration
        params, rotations, noise = ss.spawn(3)
        seed = lambda s: int(s.generate_state(1)[0])
        return (
            np.random.default_rng(params),
            torch.Generator().manual_seed(seed(rotations)),
            torch.Generator(device=self.device).manual_seed(seed(noise)),
        )

    def parameters(self, step: int, n: int | None = None) -> pd.DataFrame:
        """The drawn parameters of batch `step` (a function of (seed, step) only)."""
        return self.prior.draw(n or self.batch_size, *self._streams(step)[:2], self.columns)

    def raw_targets(self, params: pd.DataFrame) -> dict[str, np.ndarray]:
        out = {
            "amplitudes": params[self.columns].to_numpy(dtype=np.float64),
            "orientation": euler_to_quaternion(torch.tensor(params[EULER].to_numpy(dtype=np.float64))).numpy(),
            "shifts": params[ORIGIN].to_numpy(dtype=np.float64),
        }
        return {k: v for k, v in out.items() if k in self.kinds}

    def clean(self, params: pd.DataFrame) -> torch.Tensor:
        """Noiseless images (B, L, L) as `preprocess` leaves them before normalisation: rendered at the
        oversampled size by `Simulator.signal`, phase-flipped (if the data are), Fourier-cropped."""
        signal = self.simulator.signal(params, self.columns)
        if self.phase_flipped:
            signal = phase_flip(signal, params, self.render_optics)
        return fourier_crop(signal, self.size)

    def signal_variance(self, clean: torch.Tensor, params: pd.DataFrame) -> torch.Tensor:
        """var(signal) (B,) in each particle's disc, as the noise model measured it."""
        discs = particle_discs(params, self.disc_radius, self.size, self.pixel_size).to(self.device)
        return disc_variance(clean, discs)

    def images(self, step: int, noise: bool = True) -> tuple[torch.Tensor, pd.DataFrame]:
        """(normalised images (B, L, L) on the device, their parameters) of batch `step`."""
        params = self.parameters(step)
        clean = self.clean(params)
        if noise:
            white = torch.randn(clean.shape, generator=self._streams(step)[2], device=self.device)
            coloured = torch.fft.irfft2(torch.fft.rfft2(white) * self.noise_filter, s=clean.shape[-2:])
            level = torch.tensor(params["noise_level"].to_numpy(), dtype=clean.dtype, device=self.device)
            clean = clean + (self.noise_variance * level).sqrt()[:, None, None] * coloured
        return normalise(clean, self.background_radius), params

    def epoch_batches(self, epoch: int, rank: int = 0, world: int = 1) -> Iterator:
        """(images (B, 1, L, L), standardised targets, indices) for one epoch of this rank's batches."""
        for b in range(self.batches_per_epoch):
            step = ((epoch - 1) * self.batches_per_epoch + b) * world + rank
            imgs, params = self.images(step)
            targets = self.standardise(self.raw_targets(params))
            yield (
                imgs[:, None].float(),
                {k: torch.tensor(np.asarray(v), dtype=torch.float32, device=self.device) for k, v in targets.items()},
                torch.arange(len(imgs)) + step * self.batch_size,
            )


def fitted_projections(
    reference,
    particles: pd.DataFrame,
    amplitudes: np.ndarray,
    optics: dict,
    *,
    ctf: bool = True,
    batch_size: int = 128,
) -> torch.Tensor:
    """The alignment's noiseless projections (n, L, L) of its fits: the reference (`DeformableReference`)
    deformed by each image's amplitudes, at its pose and origin, times the model CTF the alignment
    compared it with (|CTF| on phase-flipped images). `optics`: the STAR's optics row."""
    from cryopipe.align.refine import ImageBatch
    from cryopipe.commands.align import phase_flipped, star_optics
    from cryopipe.geometry import euler_to_matrix

    L, o = int(optics["rlnImageSize"]), star_optics(optics)
    reference = reference.to("cpu")  # float32, as the alignment renders
    out = []
    for lo in range(0, len(particles), batch_size):
        rows = particles.iloc[lo : lo + batch_size]
        d = torch.tensor(rows[DEFOCUS].to_numpy(dtype=np.float64))
        batch = ImageBatch(torch.zeros(len(rows), L, L), d[:, 0], d[:, 1], d[:, 2], o, ctf, phase_flipped(optics))
        _, model_ctf, px = batch.at(L)
        A = euler_to_matrix(torch.tensor(rows[EULER].to_numpy(dtype=np.float64))).float()
        a = torch.tensor(amplitudes[lo : lo + batch_size], dtype=torch.float32)
        origins = torch.tensor(rows[ORIGIN].to_numpy(dtype=np.float64), dtype=torch.float32)
        with torch.no_grad():
            img = reference.render(a, A, origins, size=L, pixel_size=px)
            out.append(torch.fft.irfft2(torch.fft.rfft2(img) * model_ctf, s=(L, L)))
    return torch.cat(out)


def particle_discs(particles: pd.DataFrame, radius_px: float, size: int, pixel_size: float) -> torch.Tensor:
    """Boolean discs (n, L, L) of `radius_px` around each particle's centre (−origin)."""
    centre = -torch.tensor(particles[ORIGIN].to_numpy(dtype=np.float64)) / pixel_size
    return radial_mask(size, radius_px, centre)
