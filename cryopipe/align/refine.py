"""Gradient refinement of rotation, shift and amplitudes, coarse to fine.

Parameters per image: a rotation increment ω (axis-angle, applied in the image frame:
A = exp([ω]×)·A₀), the RELION origin (Å) and the amplitudes (Å RMSD). Each stage low-passes
model and image to its own resolution on its own (cropped) grid and runs Adam on −Σ cc. The
loss is a sum of per-image terms and Adam acts element-wise, so every image is refined exactly
as it would be alone: batching changes the speed, not the result.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import torch

from cryopipe.align.model import DeformableReference
from cryopipe.align.similarity import band_weights, correlation
from cryopipe.imaging.ctf import ctf_2d
from cryopipe.imaging.fourier import fourier_crop


@dataclass
class Stage:
    size: int  # px of the grid the stage works on
    lowpass: float  # Å
    steps: int
    lr_rotation: float = 0.01  # rad
    lr_shift: float = 0.2  # Å
    lr_amplitude: float = 0.15  # Å RMSD
    lr_second: float = 0.05  # of the second reference's offset (z), refined only when the model has one
    beads: bool = True  # residue beads (fast) or all atoms

    def scaled_rates(self, scale: float) -> Stage:
        """The same stage with every learning rate times `scale`: Adam moves a parameter by about its rate per
        step, so the rates bound how far a stage can travel from its start (~rate × steps / 2 with the cosine)."""
        return replace(
            self,
            lr_rotation=self.lr_rotation * scale,
            lr_shift=self.lr_shift * scale,
            lr_amplitude=self.lr_amplitude * scale,
            lr_second=self.lr_second * scale,
        )


def skew(w: torch.Tensor) -> torch.Tensor:
    z = torch.zeros_like(w[..., 0])
    return torch.stack(
        [
            torch.stack([z, -w[..., 2], w[..., 1]], -1),
            torch.stack([w[..., 2], z, -w[..., 0]], -1),
            torch.stack([-w[..., 1], w[..., 0], z], -1),
        ],
        -2,
    )


@dataclass
class ImageBatch:
    """Network-size images (B, L, L) with their CTF parameters and optics, cropped per stage on demand."""

    images: torch.Tensor
    defocus_u: torch.Tensor
    defocus_v: torch.Tensor
    defocus_angle: torch.Tensor
    optics: dict  # voltage, spherical_aberration, amplitude_contrast, pixel_size (of `images`)
    ctf: bool = True
    phase_flipped: bool = True  # images already multiplied by sign(CTF): the model then takes |CTF|

    @property
    def size(self) -> int:
        return self.images.shape[-1]

    def at(self, size: int) -> tuple[torch.Tensor, torch.Tensor, float]:
        """(rfft of images cropped to `size`, the model's CTF on that grid (|CTF| if phase-flipped), pixel size)."""
        px = self.optics["pixel_size"] * self.size / size
        img = fourier_crop(self.images, size) if size != self.size else self.images
        if self.ctf:
            c = ctf_2d(
                self.defocus_u,
                self.defocus_v,
                self.defocus_angle,
                voltage=self.optics["voltage"],
                spherical_aberration=self.optics["spherical_aberration"],
                amplitude_contrast=self.optics["amplitude_contrast"],
                pixel_size=px,
                shape=(size, size),
            )
            if self.phase_flipped:
                c = c.abs()
        else:
            c = torch.ones(len(img), size, size // 2 + 1)
        return torch.fft.rfft2(img.float()), c.to(img.device, torch.float32), px

    def repeat(self, k: int) -> ImageBatch:
        rep = lambda t: t.repeat_interleave(k, 0)
        return ImageBatch(
            rep(self.images),
            rep(self.defocus_u),
            rep(self.defocus_v),
            rep(self.defocus_angle),
            self.optics,
            self.ctf,
            self.phase_flipped,
        )


def refine(
    ref: dict[bool, DeformableReference],
    batch: ImageBatch,
    rotations: torch.Tensor,
    origins: torch.Tensor,
    amplitudes: torch.Tensor,
    stages: list[Stage],
    second: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor]:
    """Refined (rotations, origins, amplitudes, z, cc at the last stage) for B images; `second` (B,) is each
    image's starting position z between the reference and the second reference (`DeformableReference.render`),
    refined within [0, 1] with the amplitudes (held where `lr_second` is 0 or the model has no offset)."""
    A0 = rotations.detach().clone()
    origins = origins.detach().clone()
    amplitudes = amplitudes.detach().clone()
    z0 = None if second is None else second.detach().to(A0.device, torch.float32).clone()
    cc = torch.zeros(len(A0), device=A0.device)
    for stage in stages:
        image_ft, model_ctf, px = batch.at(stage.size)
        w = band_weights(stage.size, px, stage.lowpass, device=image_ft.device)
        model = ref[stage.beads]
        omega = torch.zeros(len(A0), 3, device=A0.device, requires_grad=True)
        o = origins.clone().requires_grad_(True)
        a = amplitudes.clone().requires_grad_(True)
        groups = [
            {"params": [omega], "lr": stage.lr_rotation},
            {"params": [o], "lr": stage.lr_shift},
            {"params": [a], "lr": stage.lr_amplitude},
        ]
        z = z0
        if z0 is not None and model.offset is not None and stage.lr_second > 0:
            z = z0.clone().requires_grad_(True)
            groups.append({"params": [z], "lr": stage.lr_second})
        optimizer = torch.optim.Adam(groups)
        base = [g["lr"] for g in optimizer.param_groups]
        for step in range(stage.steps):
            for g, lr in zip(optimizer.param_groups, base):  # cosine decay: large moves first, then settle
                g["lr"] = lr * 0.5 * (1 + math.cos(math.pi * step / stage.steps))
            A = torch.matrix_exp(skew(omega)) @ A0
            img = model.render(a, A, o, size=stage.size, pixel_size=px, second=z)
            cc = correlation(torch.fft.rfft2(img), image_ft, model_ctf, w)
            optimizer.zero_grad()
            (-cc.sum()).backward()
            optimizer.step()
            if z is not None and z.requires_grad:
                with torch.no_grad():  # z is a share of the path between the two known structures
                    z.clamp_(0.0, 1.0)
        with torch.no_grad():
            A0 = torch.matrix_exp(skew(omega)) @ A0
            origins, amplitudes = o.detach(), a.detach()
            z0 = None if z is None else z.detach()
            final = model.render(amplitudes, A0, origins, size=stage.size, pixel_size=px, second=z0)
            cc = correlation(torch.fft.rfft2(final), image_ft, model_ctf, w)
    return A0, origins, amplitudes, z0, cc
