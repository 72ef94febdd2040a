"""Projections of a density map by the Fourier-slice theorem: a 2D central section of the map's 3D spectrum.

The map (z, y, x), zero-padded `pad`× and corrected for the interpolation's apodisation (linear interpolation
in Fourier space multiplies real space by sinc² per axis; the map is divided by it first), is Fourier
transformed once. An image at rotation A (RELION: the map's point r appears at A·r, then projected along z)
has the spectrum V̂(Aᵀk) on its plane k = (kx, ky, 0): one trilinear lookup per Fourier pixel, no loop over
atoms or voxels. The images come on the padded grid (P = pad · L), the grid the simulator applies the CTF
on; `crop_centered` to L gives the box.
"""

from __future__ import annotations

import torch


class SliceProjector:
    """volumes (K, L, L, L) (z, y, x; K maps on one grid) → projections of any of them at any rotation."""

    def __init__(self, volumes: torch.Tensor, pad: int = 2, band: float | None = None):
        K, L = volumes.shape[0], volumes.shape[-1]
        P = pad * L
        c = (torch.arange(P, dtype=torch.float64) - P // 2) / P
        apod = torch.sinc(c) ** 2  # the real-space weight of linear interpolation in Fourier space, per axis
        lo = P // 2 - L // 2
        v = volumes.new_zeros(K, P, P, P, dtype=torch.float64)
        v[:, lo : lo + L, lo : lo + L, lo : lo + L] = volumes.double()
        v = v / (apod[:, None, None] * apod[None, :, None] * apod[None, None, :])
        spectrum = torch.fft.fftshift(
            torch.fft.fftn(torch.fft.ifftshift(v, dim=(1, 2, 3)), dim=(1, 2, 3)), dim=(1, 2, 3)
        )
        # real and imaginary parts as two channels, for grid_sample (N=K, C=2, D, H, W)
        self.spectrum = torch.stack([spectrum.real, spectrum.imag], 1).float()
        self.size, self.padded = L, P
        ky = torch.fft.fftfreq(P, d=1.0 / P)  # rfft2 row order, in Fourier pixels
        kx = torch.fft.rfftfreq(P, d=1.0 / P)
        gy, gx = torch.meshgrid(ky, kx, indexing="ij")
        plane = torch.stack([gx, gy, torch.zeros_like(gx)], -1).reshape(-1, 3)  # (P·(P/2+1), 3): x, y, z
        # `band` (cycles per box of L px): only frequencies within it are looked up, the rest stay 0 (a network
        # that low-passes its input to that band sees the same images, for a fraction of the lookups)
        self.inside = torch.arange(len(plane)) if band is None else torch.nonzero(plane.norm(dim=1) <= band * pad)[:, 0]
        self.plane = plane[self.inside]

    def to(self, device) -> SliceProjector:
        self.spectrum, self.plane, self.inside = self.spectrum.to(device), self.plane.to(device), self.inside.to(device)
        return self

    def padded_spectra(self, which: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
        """rfft2 spectra (B, P, P//2+1) of the padded images of maps `which` (B,) at RELION rotations (B, 3, 3)."""
        P = self.padded
        k = self.plane.to(rotations.dtype) @ rotations  # rows kᵀA = (Aᵀk)ᵀ: the map's frequencies
        grid = (k + P // 2) / (P - 1) * 2 - 1  # align_corners=True: index i ↔ −1 + 2i/(P−1); order x, y, z
        out = []
        for m in range(self.spectrum.shape[0]):  # one map at a time: grid_sample wants one volume per batch row
            sel = torch.nonzero(which == m).flatten()
            if len(sel) == 0:
                continue
            g = grid[sel].float().view(1, len(sel), -1, 1, 3)
            vals = torch.nn.functional.grid_sample(
                self.spectrum[m : m + 1], g, mode="bilinear", padding_mode="zeros", align_corners=True
            )
            out.append((sel, vals[0, :, :, :, 0]))  # (2, len(sel), P·(P/2+1))
        spectra = torch.zeros(len(which), P * (P // 2 + 1), dtype=torch.complex64, device=rotations.device)
        for sel, vals in out:
            spectra[sel[:, None], self.inside[None, :]] = torch.complex(vals[0], vals[1])
        # spectra about the box centre (the map was ifftshift-ed before its FFT): irfft2 puts the centre at pixel 0
        return spectra.view(len(which), P, P // 2 + 1)

    def padded_images(self, which: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
        """Projections (B, P, P) on the padded grid, the box's centre at pixel P//2."""
        img = torch.fft.irfft2(self.padded_spectra(which, rotations), s=(self.padded, self.padded))
        return torch.fft.fftshift(img, dim=(-2, -1))
