"""Direct Fourier reconstruction: CTF-weighted insertion of central slices with a Wiener filter.

Each image is Fourier transformed in a box padded `pad`× (rfft: the half plane kx ≥ 0), re-centred by its
origin with a phase ramp, and its samples are added to the 3D transform at k₃ = Aᵀ(kx, ky, 0) (central-slice
theorem, RELION's A) with trilinear weights: numerator Σ CTF·F, weight Σ CTF². The map is
F = num / (weight + reg) (Wiener-style; reg → 0 gives plain inversion where sampled), inverse transformed,
corrected for the trilinear kernel (÷ sinc²) and cropped back.

Memory: the 3D transform is kept as its non-redundant half (x ≥ 0, the rfftn layout): a sample that lands at
k₃ with k₃ₓ < 0 is stored as its Friedel mate (−k₃, F*), and the plane x = 0, which holds both, is made
Hermitian when the map is made. In float32 that is 12 bytes per voxel of (pad·L)²·(pad·L/2 + 1): 101 MB for
a 128-px box at pad 2, 0.81 GB at 256 px, 3.1 GB at 400 px.
"""

from __future__ import annotations

import torch

from cryopipe.analysis.fsc import rfft_multiplicity
from cryopipe.imaging.fourier import pad_centered

POINTS_PER_CHUNK = 2_000_000  # sample points inserted at a time: bounds the temporaries for large boxes


class Backprojector:
    """Accumulates Σ CTF·F (complex) and Σ CTF² on the non-redundant half of a padded 3D Fourier grid."""

    def __init__(self, size: int, pad: int = 2, device="cpu", dtype: torch.dtype = torch.float32):
        self.size, self.pad = size, pad
        self.n = n = size * pad
        self.nx = n // 2 + 1
        self.device = torch.device(device)
        self.dtype = dtype
        # Three flat real arrays [Re Σ CTF·F, Im Σ CTF·F, Σ CTF²]: each trilinear corner is three 1D index_add_
        # calls of real values, the fast path (2D rows, or complex values times real weights, are ~2× slower).
        self.acc = torch.zeros(3, n * n * self.nx, dtype=dtype, device=self.device)
        ky = torch.fft.fftfreq(n, device=self.device, dtype=torch.float64) * n
        kx = torch.fft.rfftfreq(n, device=self.device, dtype=torch.float64) * n
        gy, gx = torch.meshgrid(ky, kx, indexing="ij")
        k2 = torch.stack([gx.ravel(), gy.ravel()], -1)  # (n·(n/2+1), 2) integer frequencies of the padded rfft2
        self.sel = torch.nonzero((k2**2).sum(-1) < (n / 2 - 1) ** 2).squeeze(1)
        self.k2 = k2[self.sel].to(dtype)
        # kx = 0 holds each image's Friedel pairs (0, ±ky) both: half weight each, so every pair counts once.
        self.half = torch.where(self.k2[:, 0] == 0, 0.5, 1.0).to(dtype)

    @property
    def nbytes(self) -> int:
        return self.acc.numel() * self.acc.element_size()

    def insert(
        self,
        images: torch.Tensor,
        rotations: torch.Tensor,
        origins_px: torch.Tensor | None = None,
        ctf: torch.Tensor | None = None,
    ) -> None:
        """images (B, L, L); rotations RELION A (B, 3, 3); origins in px (B, 2) (content moved by +origin, which
        re-centres it); ctf (B, n, n//2 + 1): the rfft-layout CTF of the padded box (`ctf_2d(..., rfft=True)`)."""
        per = max(1, POINTS_PER_CHUNK // len(self.sel))
        for lo in range(0, len(images), per):
            sl = slice(lo, lo + per)
            self._insert(
                images[sl],
                rotations[sl],
                None if origins_px is None else origins_px[sl],
                None if ctf is None else ctf[sl],
            )

    def _insert(self, images, rotations, origins_px, ctf) -> None:
        n, nx = self.n, self.nx
        imgs = images.to(self.device, self.dtype)
        F = torch.fft.rfft2(torch.fft.ifftshift(pad_centered(imgs, n), dim=(-2, -1))).reshape(len(imgs), -1)
        F = F[:, self.sel]
        if origins_px is not None:
            o = origins_px.to(self.device, self.dtype)
            F = F * torch.exp((-2j * torch.pi / n) * (self.k2 @ o.T).T)
        c = self.half.expand(len(imgs), -1)
        if ctf is not None:
            c = ctf.to(self.device, self.dtype).reshape(len(imgs), -1)[:, self.sel] * self.half
        k3 = torch.einsum("bji,pj->bpi", rotations.to(self.device, self.dtype)[:, :2, :], self.k2)  # Aᵀ (kx, ky, 0)
        mate = k3[..., 0] < 0  # stored as the Friedel mate: (−k₃, F*) lies in x ≥ 0
        k3 = torch.where(mate[..., None], -k3, k3).reshape(-1, 3)
        # [Re, Im] of CTF·F·half (conjugated for the mates) and CTF²·half; c carries the half weight once.
        vals = [
            (F.real * c).reshape(-1),
            torch.where(mate, -F.imag, F.imag).mul_(c).reshape(-1),
            (c * c / self.half).reshape(-1) if ctf is not None else c.reshape(-1),
        ]
        base = torch.floor(k3)
        frac = k3 - base
        base = base.long()
        # Per axis: the two corners' flat-index parts and trilinear weights (x needs no wrap: 0 .. n/2).
        strides = (1, nx, n * nx)
        parts = [[((base[:, a] + d) % n if a else base[:, a] + d) * strides[a] for d in (0, 1)] for a in range(3)]
        weights = [[1 - frac[:, a], frac[:, a]] for a in range(3)]
        for dz in (0, 1):
            for dy in (0, 1):
                izy = parts[2][dz] + parts[1][dy]
                wzy = weights[2][dz] * weights[1][dy]
                for dx in (0, 1):
                    wt = wzy * weights[0][dx]
                    flat = izy + parts[0][dx]
                    for acc, v in zip(self.acc, vals):
                        acc.index_add_(0, flat, v * wt)

    def add_(self, other: Backprojector) -> Backprojector:
        """Add another accumulation into this one (the full map from its two half maps), in place."""
        self.acc += other.acc
        return self

    def _hermitian_plane(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(numerator, weight) (n, n) of the plane x = 0, which holds samples and mates both, made Hermitian."""
        n, nx = self.n, self.nx
        re, im, w = (a.reshape(n, n, nx)[:, :, 0] for a in self.acc)
        mate = lambda v: torch.roll(torch.flip(v, dims=(0, 1)), shifts=(1, 1), dims=(0, 1))  # value at (−z, −y, 0)
        return torch.complex(re + mate(re), im - mate(im)), w + mate(w)

    def _slabs(self, planes: int = 16):
        """(z0, z1, numerator, weight, shell on the original grid) for slabs of z planes of the rfftn grid; the
        plane x = 0 completed. Slab by slab, so that nothing of the grid's size is held twice."""
        n, nx = self.n, self.nx
        re, im, w = (a.reshape(n, n, nx) for a in self.acc)
        num0, w0 = self._hermitian_plane()
        k = torch.fft.fftfreq(n, device=self.device, dtype=torch.float64) * n
        kx = torch.fft.rfftfreq(n, device=self.device, dtype=torch.float64) * n
        kyx = k[:, None] ** 2 + kx[None, :] ** 2
        for z0 in range(0, n, planes):
            z1 = min(z0 + planes, n)
            num = torch.complex(re[z0:z1], im[z0:z1])
            weight = w[z0:z1].clone()
            num[:, :, 0], weight[:, :, 0] = num0[z0:z1], w0[z0:z1]
            shell = torch.round(torch.sqrt(k[z0:z1, None, None] ** 2 + kyx) / self.pad).long()
            yield z0, z1, num, weight, shell

    def shell_mean_weight(self) -> torch.Tensor:
        """Mean inserted weight Σ CTF² per shell of the original grid (0 .. size/2 − 1), over the full spectrum."""
        ns = self.size // 2
        m = rfft_multiplicity(self.n, self.device)
        total = torch.zeros(ns, dtype=torch.float64, device=self.device)
        count = torch.zeros(ns, dtype=torch.float64, device=self.device)
        for _, _, _, weight, shell in self._slabs():
            keep = shell < ns
            mult = m.expand(shell.shape)[keep]
            total.index_add_(0, shell[keep], weight[keep].double() * mult)
            count.index_add_(0, shell[keep], mult)
        return total / count.clamp_min(1)

    def reconstruct(self, wiener: float | torch.Tensor = 1e-3) -> torch.Tensor:
        """Map (L, L, L) (z, y, x) on the original box.

        `wiener` is the regulariser added to the weights: a constant, or one value per shell of the
        original grid (size/2 values; e.g. from the half-map FSC, see `fsc_regulariser`). Beyond the
        last shell nothing is kept.
        """
        n = self.n
        complex_dtype = torch.complex64 if self.dtype == torch.float32 else torch.complex128
        F = torch.empty(n, n, self.nx, dtype=complex_dtype, device=self.device)
        per_shell = isinstance(wiener, torch.Tensor) and wiener.ndim == 1
        if per_shell:
            assert isinstance(wiener, torch.Tensor)
            big = torch.full((1,), float("inf"), dtype=self.dtype, device=self.device)
            table = torch.cat([wiener.to(self.device, self.dtype), big])
        for z0, z1, num, weight, shell in self._slabs():
            reg = table[shell.clamp_max(len(table) - 1)] if per_shell else float(wiener)
            F[z0:z1] = num / (weight + reg)
        vol = torch.fft.irfftn(F, s=(n, n, n))
        del F
        lo = n // 2 - self.size // 2
        keep = (torch.arange(lo, lo + self.size, device=self.device) - n // 2) % n  # fftshift, then the crop
        vol = vol[keep][:, keep][:, :, keep]
        r = (torch.arange(lo, lo + self.size, device=self.device, dtype=torch.float64) - n // 2) / n
        s = (torch.sinc(r) ** 2).clamp_min(1e-3).to(vol.dtype)  # trilinear interpolation kernel in real space
        return vol / (s[:, None, None] * s[None, :, None] * s[None, None, :])


def fsc_regulariser(half_fsc, half_mean_weight: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """Per-shell Wiener term σ²/τ² from a half-map FSC (RELION-style).

    A half map's SNR per shell is FSC/(1 − FSC) = τ²·W̄/σ² (W̄ the mean Σ CTF² of one half), so
    the regulariser that makes num/(weight + reg) the Wiener estimate is W̄·(1 − FSC)/FSC. The
    same term serves the full map (its weight doubles, the signal-to-noise of a voxel does too).
    """
    f = torch.as_tensor(half_fsc, dtype=torch.float64).clamp(floor, 1 - floor)
    return half_mean_weight.cpu().double() * (1 - f) / f
