"""Preprocessing: Fourier cropping, phase flipping, normalisation and the set 1 / set 2 split."""

import numpy as np
import pandas as pd
import torch

from cryopipe.imaging.ctf import ctf_2d
from cryopipe.imaging.fourier import fourier_crop, radial_mask
from cryopipe.imaging.preprocess import normalise, phase_flip, split_sets
from helpers import corr


def gaussian_image(L, sigma_px, centre=(0.0, 0.0)):
    c = np.arange(L) - L // 2
    y, x = np.meshgrid(c, c, indexing="ij")
    return np.exp(-((x - centre[0]) ** 2 + (y - centre[1]) ** 2) / (2 * sigma_px**2))


def test_fourier_crop_equals_sampling_at_coarser_pixels():
    # A band-limited blob sampled at L px and cropped to L/2 equals the blob sampled at twice the pixel size.
    fine = torch.tensor(gaussian_image(64, 6.0, (3.0, -5.0)))[None]
    coarse = fourier_crop(fine, 32)[0].numpy()
    expected = gaussian_image(32, 3.0, (1.5, -2.5))
    np.testing.assert_allclose(coarse, expected, atol=2e-3)
    # Nothing aliases: a pattern above the new Nyquist frequency vanishes.
    c = np.arange(64)
    stripes = torch.tensor(np.cos(2 * np.pi * 24 / 64 * c)[None, :].repeat(64, 0))[None]
    assert fourier_crop(stripes, 32).abs().max() < 1e-9


def test_phase_flip_restores_positive_contrast():
    L, apix = 64, 1.5
    clean = torch.tensor(gaussian_image(L, 2.0))[None]
    parts = pd.DataFrame({"rlnDefocusU": [15000.0], "rlnDefocusV": [14500.0], "rlnDefocusAngle": [30.0]})
    optics = {
        "rlnVoltage": 300.0,
        "rlnSphericalAberration": 2.7,
        "rlnAmplitudeContrast": 0.1,
        "rlnImagePixelSize": apix,
    }
    ctf = ctf_2d(
        parts["rlnDefocusU"].to_numpy(),
        parts["rlnDefocusV"].to_numpy(),
        parts["rlnDefocusAngle"].to_numpy(),
        voltage=300.0,
        spherical_aberration=2.7,
        amplitude_contrast=0.1,
        pixel_size=apix,
        shape=(L, L),
    ).double()
    observed = torch.fft.irfft2(torch.fft.rfft2(clean) * ctf, s=(L, L))
    flipped = phase_flip(observed, parts, optics)
    # After flipping, the image is the clean one filtered by |CTF| ≥ 0.
    expected = torch.fft.irfft2(torch.fft.rfft2(clean) * ctf.abs(), s=(L, L))
    np.testing.assert_allclose(flipped.numpy(), expected.numpy(), atol=1e-10)
    assert corr(flipped, clean) > corr(observed, clean)


def test_normalise_background():
    g = torch.Generator().manual_seed(0)
    imgs = 3.0 + 5.0 * torch.randn(4, 48, 48, generator=g, dtype=torch.float64)
    out = normalise(imgs, 0.8)
    bg = ~radial_mask(48, 0.8 * 24)
    np.testing.assert_allclose(out[:, bg].mean(1).numpy(), 0, atol=1e-12)
    np.testing.assert_allclose(out[:, bg].std(1).numpy(), 1, atol=1e-12)


def test_split_is_disjoint_and_sized():
    s = split_sets(1000, 1, set1_fraction=0.4, validation_fraction=0.1, test_fraction=0.1)
    counts = s["subset"].value_counts()
    assert counts["set2"] == 600 and counts["validation"] == 40 and counts["test"] == 40 and counts["train"] == 320
    assert (s["image_set"] == 1).sum() == 400
    assert s["particle"].is_unique
    assert split_sets(1000, 1, 0.4, 0.1, 0.1).equals(s)
    assert not split_sets(1000, 2, 0.4, 0.1, 0.1).equals(s)
