"""The cryoDRGN-style VAE: an image encoder → latent z (reparameterised) → the decoder V(k, z) on each image's
central section (`cryopipe.vae.decoder`), × the image's CTF, against the image's Hartley transform.

Loss per batch, as cryoDRGN's `train_vae`: the mean squared error over the frequencies inside the inscribed
circle (|k| < L/2), plus β × KL(q(z | image) ‖ N(0, I)) / (number of those frequencies). β = 0 is a plain
auto-encoder with a noisy bottleneck; β = 1/zdim is cryoDRGN's default.

Poses are given (a consensus refinement, the pipeline's alignment, or the truth): the image is moved by its
origin to the box centre before its transform, so the decoder sees centred particles; the encoder sees the
centred image phase-flipped by its own CTF.
"""

from __future__ import annotations

import torch
from torch import nn

from cryopipe.imaging.ctf import ctf_2d
from cryopipe.imaging.fourier import fourier_crop, radial_mask, shift_images
from cryopipe.imaging.hartley import hartley
from cryopipe.nn.resnet import ResNet
from cryopipe.vae.decoder import HartleyDecoder, plane

ENCODERS = ("mlp", "cnn")


class MLPEncoder(nn.Module):
    """cryoDRGN's encoder: the pixels inside the inscribed circle, `layers` ReLU layers → (μ, log σ²)."""

    mask: torch.Tensor

    def __init__(self, box: int, zdim: int, *, hidden: int = 256, layers: int = 3):
        super().__init__()
        self.zdim = zdim
        self.register_buffer("mask", radial_mask(box, box / 2).flatten())
        mods: list[nn.Module] = []
        cin = int(self.mask.sum())
        for _ in range(layers):
            mods += [nn.Linear(cin, hidden), nn.ReLU(inplace=True)]
            cin = hidden
        self.mlp = nn.Sequential(*mods, nn.Linear(cin, 2 * zdim))

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.mlp(images.flatten(1)[:, self.mask])
        return out[:, : self.zdim], out[:, self.zdim :]


class CNNEncoder(nn.Module):
    """Our ResNet (`cryopipe.nn.resnet`) on the image, a linear layer → (μ, log σ²)."""

    def __init__(self, box: int, zdim: int, *, depth: int = 18, width: int = 16):
        super().__init__()
        self.zdim = zdim
        self.trunk = ResNet(depth, 1, box, width)
        self.head = nn.Linear(self.trunk.out_features, 2 * zdim)

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        out = self.head(self.trunk(images))
        return out[:, : self.zdim], out[:, self.zdim :]


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(μ, σ²) ‖ N(0, I)) per image (B,), in nats."""
    return -0.5 * (1 + logvar - mu**2 - logvar.exp()).sum(-1)


class HeterogeneityVAE(nn.Module):
    """Encoder + decoder + the imaging model; `forward(images, targets)` returns the loss terms.

    images (B, 1, L0, L0), Fourier-cropped to the decoder's box L when larger; targets: `rotation` (B, 3, 3)
    RELION matrices, `origin` (B, 2) Å (rlnOriginX/YAngst), `ctf` (B, 4): defocus U, V (Å), astigmatism
    angle and phase shift (degrees). `optics`: voltage (kV), spherical_aberration (mm), amplitude_contrast,
    pixel_size (Å/px of the decoder's box). `phase_flipped`: the images were multiplied by sign(CTF), so the
    model multiplies by |CTF|. `scale`: the std of the images' Hartley values (the decoder works in units of it).
    """

    returns_loss = True  # the training engine calls forward(images, targets) and sums the returned terms
    freq_mask: torch.Tensor
    frequencies: torch.Tensor

    def __init__(
        self,
        encoder: nn.Module,
        decoder: HartleyDecoder,
        *,
        beta: float,
        optics: dict,
        phase_flipped: bool,
        scale: float,
    ):
        super().__init__()
        self.encoder, self.decoder = encoder, decoder
        self.box, self.zdim = decoder.box, decoder.zdim
        self.beta, self.optics, self.phase_flipped, self.scale = beta, dict(optics), phase_flipped, scale
        mask = radial_mask(self.box, self.box // 2 - 1).flatten()  # without the Nyquist edge (zero after a crop)
        self.register_buffer("freq_mask", mask)
        self.register_buffer("frequencies", plane(self.box)[mask])  # (P, 3) (kx, ky, 0) inside the circle

    def crop(self, images: torch.Tensor) -> torch.Tensor:
        """(B, L0, L0) or (B, 1, L0, L0) → (B, L, L) at the decoder's box."""
        x = images.reshape(-1, *images.shape[-2:])
        return fourier_crop(x, self.box) if x.shape[-1] != self.box else x

    def encode(self, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """(μ, log σ²), each (B, zdim), of the images as the encoder sees them (`encoder_inputs`)."""
        with torch.autocast(device_type=images.device.type, enabled=False):
            x = self.encoder_inputs(self.centred(images, targets["origin"]), self.ctf_grid(targets["ctf"]))
        return self.encoder(x[:, None])

    def centred(self, images: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """(B, L, L) images at the decoder's box, moved by their origins (Å) to the box centre."""
        return shift_images(self.crop(images).float(), origins.float() / self.optics["pixel_size"])

    @staticmethod
    def encoder_inputs(centred: torch.Tensor, ctf_grid: torch.Tensor) -> torch.Tensor:
        """What the encoder sees: each centred image phase-flipped by its own CTF, so that defocus does not
        reverse its contrast from image to image (a no-op on images flipped already: |CTF| has no sign).
        We decided so after measuring z order the trajectory far worse on unflipped images (README)."""
        flip = torch.sign(torch.fft.ifftshift(ctf_grid, dim=(-2, -1)))
        return torch.fft.ifft2(torch.fft.fft2(centred) * flip).real

    def ctf_grid(self, params: torch.Tensor) -> torch.Tensor:
        """(B, L, L) CTF on the centred frequency grid (|CTF| for phase-flipped images)."""
        o = self.optics
        c = ctf_2d(
            params[:, 0],
            params[:, 1],
            params[:, 2],
            phase_shift=params[:, 3],
            voltage=o["voltage"],
            spherical_aberration=o["spherical_aberration"],
            amplitude_contrast=o["amplitude_contrast"],
            pixel_size=o["pixel_size"],
            shape=(self.box, self.box),
            rfft=False,
        )
        c = torch.fft.fftshift(c, dim=(-2, -1))
        return c.abs() if self.phase_flipped else c

    def ctf(self, params: torch.Tensor) -> torch.Tensor:
        """(B, P) CTF values at the masked frequencies."""
        return self.ctf_grid(params).flatten(1)[:, self.freq_mask]

    def transforms(self, images: torch.Tensor, origins: torch.Tensor) -> torch.Tensor:
        """(B, P) Hartley values of the images, centred by their origins, at the masked frequencies / scale."""
        return hartley(self.centred(images, origins), 2).flatten(1)[:, self.freq_mask] / self.scale

    def slices(self, rotations: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """(B, P) decoded central sections (no CTF) at the masked frequencies."""
        k = self.frequencies @ rotations.to(self.frequencies.dtype)  # Aᵀk per image, as `slice_coordinates`
        return self.decoder(k, z)

    def forward(self, images: torch.Tensor, targets: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        with torch.autocast(device_type=images.device.type, enabled=False):  # FFTs and the CTF in float32
            centred = self.centred(images, targets["origin"])
            grid = self.ctf_grid(targets["ctf"])
            observed = hartley(centred, 2).flatten(1)[:, self.freq_mask] / self.scale
            ctf = grid.flatten(1)[:, self.freq_mask]
            inputs = self.encoder_inputs(centred, grid)
        mu, logvar = self.encoder(inputs[:, None])
        z = mu + torch.randn_like(mu) * (0.5 * logvar).exp() if self.training else mu
        predicted = self.slices(targets["rotation"], z).float() * ctf
        return {
            "reconstruction": ((predicted - observed) ** 2).mean(),
            "kl": self.beta * kl_divergence(mu.float(), logvar.float()).mean() / len(self.frequencies),
        }


def build_vae(
    *,
    box: int,
    zdim: int,
    encoder: str,
    hidden: int,
    layers: int,
    beta: float,
    optics: dict,
    phase_flipped: bool,
    scale: float,
    n_freqs: int | None = None,
    width: int = 16,
) -> HeterogeneityVAE:
    """The model from its settings (what a checkpoint's meta stores)."""
    if encoder not in ENCODERS:
        raise ValueError(f"encoder must be one of {ENCODERS}, got {encoder!r}")
    enc: nn.Module = (
        MLPEncoder(box, zdim, hidden=hidden, layers=layers) if encoder == "mlp" else CNNEncoder(box, zdim, width=width)
    )
    dec = HartleyDecoder(zdim, box, hidden=hidden, layers=layers, n_freqs=n_freqs)
    return HeterogeneityVAE(enc, dec, beta=beta, optics=optics, phase_flipped=phase_flipped, scale=scale)
