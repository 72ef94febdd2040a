"""Fresh labelled training images every epoch, rendered from the class maps (a batch source for the engine).

The report trained on 50k stored images; on a CPU we store a few thousand, and a network shown the same
few thousand views of SO(3) memorises them (measured: noiseless, 1,680 images, validation loss rising from
epoch 2). Here every epoch draws new classes, poses and defoci, projects the class maps by the Fourier-slice
theorem (`cryopipe.imaging.fourier_slice`: ~100× cheaper than rendering the atoms), applies the CTF on the
padded box as `simulate` does, and adds white noise at the data set's noise level. The validation and test
images stay the atom-rendered stack: the networks are scored on images made another way than they were
trained on.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cryopipe.geometry import random_rotations
from cryopipe.imaging.ctf import ctf_2d
from cryopipe.imaging.fourier import crop_centered
from cryopipe.imaging.fourier_slice import SliceProjector
from cryopipe.imaging.preprocess import phase_flip
from cryopipe.imaging.simulate import Optics
from cryopipe.io.star import make_optics


class ClassImageSimulator:
    """volumes (K, L, L, L): one map per class (z, y, x) on the stack's grid; noise_var: the stack's noise variance;
    defocus (lo, hi) µm; astigmatism Å. Images (B, 1, L, L), phase-flipped when `flip` (as the network's inputs);
    `band` (cycles per box): the signal only up to this frequency (the network's input Nyquist), the noise white."""

    def __init__(
        self,
        volumes: torch.Tensor,
        optics: Optics,
        *,
        defocus,
        astigmatism: float,
        noise_var: float,
        images_per_epoch: int,
        batch_size: int,
        seed: int,
        flip: bool,
        ctf: bool = True,
        band: float | None = None,
        consensus: bool = False,
        device: str = "cpu",
    ):
        # `consensus`: a second channel, the noiseless image of the classes' mean map at the same pose and
        # defocus (what a consensus refinement of the mixture gives), for the classifiers given the pose
        self.consensus = consensus
        maps = torch.cat([volumes, volumes.mean(0, keepdim=True)]) if consensus else volumes
        self.projector = SliceProjector(maps, band=band).to(device)
        self.optics, self.defocus, self.astigmatism = optics, defocus, astigmatism
        self.noise_sd = float(noise_var) ** 0.5
        self.n_classes, self.size = volumes.shape[0], volumes.shape[-1]
        self.images_per_epoch, self.batch_size = images_per_epoch, batch_size
        self.batches_per_epoch = -(-images_per_epoch // batch_size)
        # the class frequencies it draws (uniform): the engine's constant-prediction baseline (log K)
        self.targets = {"class": torch.arange(self.n_classes, dtype=torch.float32)}
        self.seed, self.flip, self.ctf, self.device = seed, flip, ctf, torch.device(device)
        # the optics table phase_flip reads, as the data set's STAR holds it
        self.star_optics = (
            make_optics(
                optics.pixel_size, optics.size, optics.voltage, optics.spherical_aberration, optics.amplitude_contrast
            )
            .iloc[0]
            .to_dict()
        )

    def _ctf(self, du, dv, angle, shape):
        o = self.optics
        return ctf_2d(
            du,
            dv,
            angle,
            voltage=o.voltage,
            spherical_aberration=o.spherical_aberration,
            amplitude_contrast=o.amplitude_contrast,
            pixel_size=o.pixel_size,
            shape=shape,
            b_factor=o.b_factor,
            phase_shift=o.phase_shift,
        ).to(self.device)

    def batch(self, epoch: int, index: int):
        """(images (B, C, L, L), {"class": (B,)}, indices (B,)): a function of (seed, epoch, index) only.
        C = 1, or 2 with `consensus` (the image, then the consensus map's noiseless image at its pose)."""
        stream = np.random.SeedSequence([self.seed, 17, epoch, index]).generate_state(1)[0]
        g = torch.Generator().manual_seed(int(stream))
        n = min(self.batch_size, self.images_per_epoch - index * self.batch_size)
        labels = torch.randint(self.n_classes, (n,), generator=g)
        rotations = random_rotations(n, g)
        lo, hi = self.defocus
        mean = (lo + (hi - lo) * torch.rand(n, generator=g, dtype=torch.float64)) * 1e4
        du, dv = mean + self.astigmatism / 2, mean - self.astigmatism / 2
        angle = 180 * torch.rand(n, generator=g, dtype=torch.float64)
        rotations = rotations.to(self.device)
        ctf = self._ctf(du, dv, angle, (self.projector.padded,) * 2) if self.ctf else None
        defoci = pd.DataFrame({"rlnDefocusU": du, "rlnDefocusV": dv, "rlnDefocusAngle": angle})
        images = self._images(labels.to(self.device), rotations, ctf)
        images = images + self.noise_sd * torch.randn(images.shape, generator=g).to(self.device)
        channels = [self._flipped(images, defoci)]
        if self.consensus:
            mean_map = torch.full((n,), self.n_classes, device=self.device)
            channels.append(self._flipped(self._images(mean_map, rotations, ctf), defoci))
        return (
            torch.stack(channels, 1).float(),
            {"class": labels.float().to(self.device)},
            torch.arange(n) + index * self.batch_size,
        )

    def _images(self, which: torch.Tensor, rotations: torch.Tensor, ctf: torch.Tensor | None) -> torch.Tensor:
        """Noiseless images (B, L, L) of maps `which`, CTF applied on the padded box as `simulate` does."""
        P = self.projector.padded
        spectra = self.projector.padded_spectra(which, rotations)
        if ctf is not None:
            spectra = spectra * ctf
        return crop_centered(torch.fft.fftshift(torch.fft.irfft2(spectra, s=(P, P)), dim=(-2, -1)), self.size)

    def _flipped(self, images: torch.Tensor, defoci: pd.DataFrame) -> torch.Tensor:
        if not (self.flip and self.ctf):  # as the stored images are (`cryopipe.classify.data.load_labelled`)
            return images
        return phase_flip(images, defoci, self.star_optics)

    def epoch_batches(self, epoch: int, rank: int = 0, world: int = 1):
        for b in range(rank, self.batches_per_epoch, world):
            yield self.batch(epoch, b)


def class_volumes(
    coords: np.ndarray, weights: np.ndarray, keep: np.ndarray, *, pixel_size: float, size: int, sigma: float
) -> torch.Tensor:
    """(K, L, L, L) maps of the classes, centred on the all-A centroid as `ClassRenderer` centres them."""
    from cryopipe.imaging.project import atoms_to_map

    c = torch.as_tensor(np.asarray(coords, dtype=np.float64) - np.asarray(coords, dtype=np.float64).mean(0))
    w = torch.as_tensor(np.asarray(weights, dtype=np.float64))
    return torch.stack(
        [atoms_to_map(c[k], w[k], pixel_size=pixel_size, size=size, sigma=sigma) for k in np.asarray(keep, dtype=bool)]
    )
