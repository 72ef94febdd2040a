"""Noiseless images of every homologue class at one pose, by linearity of the image formation.

A class is the all-A assembly with some atoms absent (`cryopipe.structure.homologues`). Projection and CTF
are linear in the atoms, so the atoms split into parts by their presence pattern over the classes (the core,
present in all; each removed loop, present in some) and class k's image is the sum of the parts present in
k. One render of every part at a pose gives all K classes' images there: exact, at the cost of one class.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cryopipe.imaging.fourier import pad_centered
from cryopipe.imaging.simulate import Optics, Simulator


class ClassRenderer:
    """coords (N, 3) Å and weights (N,) of the all-A assembly; keep (K, N) bool: atom present in class k.

    The assembly is centred on the all-A centroid for every class (the classes differ only where atoms
    are absent, never by a shift)."""

    def __init__(
        self,
        coords: np.ndarray,
        weights: np.ndarray,
        keep: np.ndarray,
        optics: Optics,
        *,
        sigma: float,
        ctf: bool = True,
        pad_factor: float = 2.0,
        device: str = "cpu",
    ):
        coords = np.asarray(coords, dtype=np.float64) - np.asarray(coords, dtype=np.float64).mean(0)
        keep = np.asarray(keep, dtype=bool)
        patterns, part_of_atom = np.unique(keep.T, axis=0, return_inverse=True)
        present = patterns.any(1)  # a pattern absent from every class renders nothing
        self.presence = torch.as_tensor(patterns[present].T, dtype=torch.float32)  # (K, parts)

        def simulator(index):
            return Simulator(
                coords[index],
                np.asarray(weights)[index],
                np.zeros((0, len(index), 3)),
                optics,
                sigma=sigma,
                ctf=ctf,
                pad_factor=pad_factor,
                device=device,
            )

        self.parts = [simulator(np.flatnonzero(part_of_atom.ravel() == p)) for p in np.flatnonzero(present)]
        self.whole = simulator(np.arange(len(coords)))  # its disc: where the SNR's signal variance is measured
        self.n_classes = keep.shape[0]

    def _combine(self, images: list[torch.Tensor]) -> torch.Tensor:
        stack = torch.stack(images, 1)  # (B, parts, L, L)
        return torch.einsum("kp,bpyx->bkyx", self.presence.to(stack), stack)

    def signals(self, batch: pd.DataFrame) -> torch.Tensor:
        """CTF-modulated noiseless images (B, K, L, L) of every class at the batch's poses and defoci: the
        classes' projections, then each image's CTF once (on the padded box, as `Simulator.signal`)."""
        p = self.projections(batch)
        B, K, L = p.shape[0], p.shape[1], p.shape[-1]
        ctf = self.whole.ctf_images(batch)
        padded = pad_centered(p.reshape(B * K, L, L), self.whole.padded).reshape(B, K, *(self.whole.padded,) * 2)
        return self.whole._ctf_filter_crop(padded, None if ctf is None else ctf[:, None])

    def projections(self, batch: pd.DataFrame) -> torch.Tensor:
        """CTF-free projections (B, K, L, L) of every class at the batch's poses."""
        return self._combine([p.clean(batch, []) for p in self.parts])

    def signal_variance(self, signal: torch.Tensor, batch: pd.DataFrame) -> np.ndarray:
        """var(signal) (B,) inside each particle's disc (the SNR's definition, `cryopipe.imaging.simulate`)."""
        return self.whole.signal_variance(signal, batch)

    def noise(self, batch: pd.DataFrame, noise_var: float, before_fraction: float, seed: int, name: str):
        return self.whole.noise(batch, noise_var, before_fraction, seed, name)
