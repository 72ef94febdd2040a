"""Fourier-space helpers on image stacks (B, H, W): filtering, padding, cropping, shifting."""

from __future__ import annotations

import torch


def pad_centered(images: torch.Tensor, size: int) -> torch.Tensor:
    """Zero-pad (B, L, L) to (B, size, size) keeping pixel L//2 at size//2."""
    L = images.shape[-1]
    lo = size // 2 - L // 2
    out = images.new_zeros(*images.shape[:-2], size, size)
    out[..., lo : lo + L, lo : lo + L] = images
    return out


def crop_centered(images: torch.Tensor, size: int) -> torch.Tensor:
    """Crop (B, L, L) to (B, size, size) around pixel L//2."""
    L = images.shape[-1]
    lo = L // 2 - size // 2
    return images[..., lo : lo + size, lo : lo + size]


def fourier_crop(images: torch.Tensor, size: int) -> torch.Tensor:
    """Downsample (B, L, L) to (B, size, size) by keeping the central size×size Fourier block.

    This is an ideal low-pass at the new Nyquist frequency, so nothing aliases. The ambiguous
    Nyquist row/column of an even output is dropped so the result stays exactly real. Pixel
    values keep their scale (the image mean is preserved).
    """
    L = images.shape[-1]
    if size == L:
        return images.clone()
    if size > L:
        raise ValueError(f"fourier_crop: output size {size} larger than input {L}")
    F = torch.fft.fftshift(torch.fft.fft2(images), dim=(-2, -1))
    F = crop_centered(F, size).clone()
    if size % 2 == 0:
        F[..., 0, :] = 0
        F[..., :, 0] = 0
    out = torch.fft.ifft2(torch.fft.ifftshift(F, dim=(-2, -1))).real
    return out * (size * size) / (L * L)


def shift_images(images: torch.Tensor, shifts_px: torch.Tensor) -> torch.Tensor:
    """Move image content by (dx, dy) pixels (B, 2) with a Fourier phase ramp (periodic)."""
    H, W = images.shape[-2:]
    fy = torch.fft.fftfreq(H, device=images.device, dtype=images.dtype)
    fx = torch.fft.rfftfreq(W, device=images.device, dtype=images.dtype)
    dx = shifts_px[..., 0, None, None]
    dy = shifts_px[..., 1, None, None]
    phase = torch.exp(-2j * torch.pi * (fx[None, None, :] * dx + fy[None, :, None] * dy))
    return torch.fft.irfft2(torch.fft.rfft2(images) * phase, s=(H, W))


def radial_mask(size: int, radius_px: float, center: torch.Tensor | None = None, device=None) -> torch.Tensor:
    """Boolean disc(s) of `radius_px` around pixel size//2 (+ optional per-image centre offsets (B, 2))."""
    c = torch.arange(size, device=device, dtype=torch.float32) - size // 2
    y, x = torch.meshgrid(c, c, indexing="ij")
    if center is None:
        return x**2 + y**2 <= radius_px**2
    cx = center[:, 0, None, None].float()
    cy = center[:, 1, None, None].float()
    return (x - cx) ** 2 + (y - cy) ** 2 <= radius_px**2
