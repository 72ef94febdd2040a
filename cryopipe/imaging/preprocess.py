"""Preprocessing of a particle stack: phase flip, Fourier-crop downsampling, normalisation, split.

Phase flip multiplies each image's spectrum by sign(CTF) at the original size (with the
particle's own defocus); downsampling keeps the central Fourier block (an ideal anti-aliasing
low-pass at the new Nyquist); normalisation gives zero mean and unit standard deviation in the
background (outside a disc of `background_radius` × half the box), as RELION does.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cryopipe.imaging.ctf import ctf_2d
from cryopipe.imaging.fourier import fourier_crop, radial_mask


def phase_flip(images: torch.Tensor, particles: pd.DataFrame, optics: dict) -> torch.Tensor:
    ctf = ctf_2d(
        particles["rlnDefocusU"].to_numpy(),
        particles["rlnDefocusV"].to_numpy(),
        particles["rlnDefocusAngle"].to_numpy(),
        voltage=optics["rlnVoltage"],
        spherical_aberration=optics["rlnSphericalAberration"],
        amplitude_contrast=optics["rlnAmplitudeContrast"],
        pixel_size=optics["rlnImagePixelSize"],
        shape=(images.shape[-2], images.shape[-1]),
    )
    sign = torch.sign(ctf).to(images.device)
    sign[sign == 0] = 1
    return torch.fft.irfft2(torch.fft.rfft2(images) * sign, s=images.shape[-2:])


def normalise(images: torch.Tensor, background_radius: float) -> torch.Tensor:
    """Zero mean, unit std over the pixels outside the disc of radius background_radius·L/2."""
    L = images.shape[-1]
    bg = ~radial_mask(L, background_radius * L / 2, device=images.device)
    vals = images[:, bg]
    mean = vals.mean(1)[:, None, None]
    std = vals.std(1).clamp_min(1e-12)[:, None, None]
    return (images - mean) / std


def preprocess_batch(
    images: torch.Tensor,
    particles: pd.DataFrame,
    optics: dict,
    *,
    size: int,
    do_phase_flip: bool,
    background_radius: float,
) -> torch.Tensor:
    if do_phase_flip:
        images = phase_flip(images, particles, optics)
    images = fourier_crop(images, size)
    return normalise(images, background_radius)


def split_sets(
    n: int, seed: int, set1_fraction: float, validation_fraction: float, test_fraction: float
) -> pd.DataFrame:
    """Random split: image set 1 (train / validation / small test) and image set 2 (large test).

    validation and test fractions are fractions of set 1 (DeepHEMNMA: 20k set 1 of which 2k
    validation and 2k small test; 50k set 2).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 4]))
    order = rng.permutation(n)
    n1 = int(round(set1_fraction * n))
    n_val = int(round(validation_fraction * n1))
    n_test = int(round(test_fraction * n1))
    subset = np.empty(n, dtype=object)
    subset[order[:n_val]] = "validation"
    subset[order[n_val : n_val + n_test]] = "test"
    subset[order[n_val + n_test : n1]] = "train"
    subset[order[n1:]] = "set2"
    return pd.DataFrame({"particle": np.arange(n), "image_set": np.where(subset == "set2", 2, 1), "subset": subset})
