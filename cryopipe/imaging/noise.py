"""The noise level of images from a fit to them: signal = the fitted projection, noise = the residual.

A simulator that trains a network for real data needs the data's SNR, and real data have no ground
truth. Given the alignment's noiseless, CTF-modulated projection of each image (any scale and offset:
preprocessed images have their own normalisation), the projection is scaled to the image by least
squares; the scaled projection is the signal, the rest is the noise. The SNR is the simulator's
(README, "Conventions"): var(signal) inside the particle's disc over var(noise) in the whole image.

A wrong fit moves signal into the residual, so the estimate is biased low where the alignment fails;
the fit's own cc says where that is.
"""

from __future__ import annotations

import numpy as np
import torch


def fitted_signal(images: torch.Tensor, fitted: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(signal, residual), each (B, L, L) float64, of images (B, L, L) and the fit's noiseless projections
    (B, L, L, any scale and offset): the projection scaled to the image by least squares (means removed)."""
    x = images.double()
    f = fitted.double().to(x.device)
    x = x - x.mean((-2, -1), keepdim=True)
    f = f - f.mean((-2, -1), keepdim=True)
    scale = (x * f).sum((-2, -1)) / (f * f).sum((-2, -1)).clamp_min(1e-300)
    signal = scale[:, None, None] * f
    return signal, x - signal


def signal_and_noise_variance(
    images: torch.Tensor, fitted: torch.Tensor, disc: torch.Tensor
) -> tuple[np.ndarray, np.ndarray]:
    """(var(signal) in the disc, var(noise) over the image), each (B,), for images (B, L, L), the fit's
    noiseless projections (B, L, L) and boolean particle discs (B, L, L) or (L, L)."""
    signal, residual = fitted_signal(images, fitted)
    var_signal = disc_variance(signal, disc)
    var_noise = residual.var(dim=(-2, -1))
    return var_signal.cpu().numpy(), var_noise.cpu().numpy()


def disc_variance(images: torch.Tensor, disc: torch.Tensor) -> torch.Tensor:
    """Variance (B,) of each image (B, L, L) over the pixels of its disc (boolean (B, L, L) or (L, L)):
    the signal variance of the SNR definition."""
    mask = disc.to(images.device, images.dtype).expand_as(images)
    n = mask.sum((-2, -1))
    mean = (images * mask).sum((-2, -1)) / n
    return ((images - mean[:, None, None]) ** 2 * mask).sum((-2, -1)) / (n - 1)


def estimate_snr(images: torch.Tensor, fitted: torch.Tensor, disc: torch.Tensor) -> tuple[float, np.ndarray]:
    """(the stack's SNR, mean var(signal) / mean var(noise) as the simulator sets it; each image's own (B,))."""
    var_signal, var_noise = signal_and_noise_variance(images, fitted, disc)
    return float(var_signal.mean() / var_noise.mean()), var_signal / var_noise
