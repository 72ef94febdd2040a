"""Direct Fourier reconstruction: CTF-weighted insertion of central slices with a Wiener filter.

Each image (re-centred by its origin) is Fourier transformed in a box padded `pad`×, and its
samples are added to the 3D transform at k₃ = Aᵀ(kx, ky, 0) (central-slice theorem, RELION's
A) with trilinear weights: numerator Σ CTF·F, weight Σ CTF². The map is
F = num / (weight + 1/snr) (Wiener-style; 1/snr → 0 gives plain inversion where sampled), then
inverse transformed, corrected for the trilinear kernel (÷ sinc²) and cropped back.
"""

from __future__ import annotations

import torch

from cryopipe.imaging.fourier import pad_centered, shift_images


class Backprojector:
    """Accumulates Σ CTF·F (complex) and Σ CTF² on a padded 3D Fourier grid.

    Only the half plane kx ≥ 0 of each image is inserted (kx = 0 at half weight); Friedel
    symmetry F(−k) = F(k)* completes the other half when the map is made, which halves the work.
    """

    def __init__(self, size: int, pad: int = 2, device="cpu"):
        self.size, self.pad = size, pad
        self.n = size * pad
        self.device = torch.device(device)
        # One real array [Re Σ CTF·F, Im Σ CTF·F, Σ CTF²]: a single index_add per trilinear corner.
        self.acc = torch.zeros(self.n**3, 3, dtype=torch.float64, device=self.device)
        k = torch.fft.fftfreq(self.n, device=self.device, dtype=torch.float64) * self.n
        ky, kx = torch.meshgrid(k, k, indexing="ij")
        k2 = torch.stack([kx.ravel(), ky.ravel()], -1)  # (n², 2) integer frequencies of the padded image
        self.sel = torch.nonzero(((k2**2).sum(-1) < (self.n / 2 - 1) ** 2) & (k2[:, 0] >= 0)).squeeze(1)
        self.k2 = k2[self.sel]
        self.half = torch.where(self.k2[:, 0] == 0, 0.5, 1.0).to(torch.float64)

    @property
    def num(self) -> torch.Tensor:
        return torch.complex(self.acc[:, 0], self.acc[:, 1])

    @property
    def weight(self) -> torch.Tensor:
        return self.acc[:, 2]

    def insert(
        self,
        images: torch.Tensor,
        rotations: torch.Tensor,
        origins_px: torch.Tensor | None = None,
        ctf: torch.Tensor | None = None,
    ) -> None:
        """images (B, L, L); rotations RELION A (B, 3, 3); origins in px (B, 2); ctf (B, n, n) full-grid on
        the padded box."""
        imgs = images.to(self.device, torch.float64)
        if origins_px is not None:
            imgs = shift_images(imgs, origins_px.to(self.device, torch.float64))  # shift by +origin re-centres
        padded = pad_centered(imgs, self.n)
        B = len(imgs)
        F = torch.fft.fft2(torch.fft.ifftshift(padded, dim=(-2, -1))).reshape(B, -1)[:, self.sel]
        c = torch.ones_like(F.real) if ctf is None else ctf.to(self.device, torch.float64).reshape(B, -1)[:, self.sel]
        F = F * c
        vals = torch.stack([F.real * self.half, F.imag * self.half, c**2 * self.half], -1).reshape(-1, 3)
        k3 = torch.einsum("bji,pj->bpi", rotations.to(self.device, torch.float64)[:, :2, :], self.k2)  # Aᵀ (kx, ky, 0)
        k3 = k3.reshape(-1, 3)
        base = torch.floor(k3)
        frac = k3 - base
        base = base.long()
        n = self.n
        for dx in (0, 1):
            wx = frac[:, 0] if dx else 1 - frac[:, 0]
            ix = (base[:, 0] + dx) % n
            for dy in (0, 1):
                wxy = wx * (frac[:, 1] if dy else 1 - frac[:, 1])
                ixy = ((base[:, 1] + dy) % n) * n + ix
                for dz in (0, 1):
                    wt = wxy * (frac[:, 2] if dz else 1 - frac[:, 2])
                    flat = ((base[:, 2] + dz) % n) * n * n + ixy
                    self.acc.index_add_(0, flat, vals * wt[:, None])

    def merged(self, other: Backprojector) -> Backprojector:
        """The sum of two accumulations (e.g. the full map from its two half maps)."""
        out = Backprojector.__new__(Backprojector)
        out.__dict__.update(self.__dict__)
        out.acc = self.acc + other.acc
        return out

    def _friedel(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(numerator, weight) on the whole grid: the inserted half plus its Friedel mates."""
        n = self.n
        grid = self.acc.reshape(n, n, n, 3)
        mate = torch.roll(torch.flip(grid, dims=(0, 1, 2)), shifts=(1, 1, 1), dims=(0, 1, 2))  # value at −k
        num = torch.complex(grid[..., 0] + mate[..., 0], grid[..., 1] - mate[..., 1])
        return num.reshape(-1), (grid[..., 2] + mate[..., 2]).reshape(-1)

    def _shell_of_voxel(self) -> torch.Tensor:
        """Shell index on the original (unpadded) grid of every padded-grid Fourier voxel."""
        k = torch.fft.fftfreq(self.n, device=self.device, dtype=torch.float64) * self.n
        r = torch.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2).ravel()
        return torch.round(r / self.pad).long()

    def shell_mean_weight(self) -> torch.Tensor:
        """Mean inserted weight Σ CTF² per shell of the original grid (0 .. size/2 − 1)."""
        shell = self._shell_of_voxel()
        ns = self.size // 2
        keep = shell < ns
        weight = self._friedel()[1]
        total = torch.zeros(ns, dtype=torch.float64, device=self.device).index_add_(0, shell[keep], weight[keep])
        count = torch.zeros(ns, dtype=torch.float64, device=self.device).index_add_(
            0, shell[keep], torch.ones_like(weight[keep])
        )
        return total / count.clamp_min(1)

    def reconstruct(self, wiener: float | torch.Tensor = 1e-3) -> torch.Tensor:
        """Map (L, L, L) (z, y, x) on the original box.

        `wiener` is the regulariser added to the weights: a constant, or one value per shell of the
        original grid (size/2 values; from the half-map FSC, see `fsc_regulariser`). Beyond the
        last shell nothing is kept.
        """
        n = self.n
        reg: float | torch.Tensor
        if isinstance(wiener, torch.Tensor) and wiener.ndim == 1:
            shell = self._shell_of_voxel()
            big = torch.full((1,), float("inf"), dtype=torch.float64, device=self.device)
            reg = torch.cat([wiener.to(self.device, torch.float64), big])[shell.clamp_max(len(wiener))]
        else:
            reg = float(wiener)
        num, weight = self._friedel()
        F = (num / (weight + reg)).reshape(n, n, n)
        vol = torch.fft.fftshift(torch.fft.ifftn(F).real, dim=(0, 1, 2))
        r = (torch.arange(n, device=self.device, dtype=torch.float64) - n // 2) / n
        s = torch.sinc(r) ** 2  # trilinear interpolation kernel in real space
        vol = vol / (s[:, None, None] * s[None, :, None] * s[None, None, :]).clamp_min(1e-3)
        lo = n // 2 - self.size // 2
        return vol[lo : lo + self.size, lo : lo + self.size, lo : lo + self.size]


def fsc_regulariser(half_fsc, half_mean_weight: torch.Tensor, floor: float = 1e-3) -> torch.Tensor:
    """Per-shell Wiener term σ²/τ² from a half-map FSC (RELION-style).

    A half map's SNR per shell is FSC/(1 − FSC) = τ²·W̄/σ² (W̄ the mean Σ CTF² of one half), so
    the regulariser that makes num/(weight + reg) the Wiener estimate is W̄·(1 − FSC)/FSC. The
    same term serves the full map (its weight doubles, the signal-to-noise of a voxel does too).
    """
    f = torch.as_tensor(half_fsc, dtype=torch.float64).clamp(floor, 1 - floor)
    return half_mean_weight.cpu().double() * (1 - f) / f
