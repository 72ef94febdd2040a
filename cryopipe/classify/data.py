"""Labelled particle images held in memory for the classifiers: phase-flipped, and with the pose channel of
the classifiers given the pose."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset


def load_labelled(particles: pd.DataFrame, star_path, optics: pd.DataFrame, flip: bool) -> torch.Tensor:
    """Images (n, L, L) float32 of the STAR rows, phase-flipped with each row's defocus when `flip`."""
    from cryopipe.io.star import load_images

    images = torch.as_tensor(load_images(particles, star_path))
    return flipped(images, particles, optics, flip)


def flipped(images: torch.Tensor, particles: pd.DataFrame, optics: pd.DataFrame, flip: bool) -> torch.Tensor:
    from cryopipe.imaging.preprocess import phase_flip

    if not flip or not len(images):
        return images
    return phase_flip(images, particles, optics.iloc[0].to_dict()).float()


def consensus_images(renderer, rows: pd.DataFrame, batch_size: int) -> torch.Tensor:
    """(n, L, L): the mean of the classes' noiseless, CTF-modulated images at each row's pose and defocus (the
    image of a consensus map of the mixture: it holds the pose, not the class)."""
    out = [renderer.signals(rows.iloc[i : i + batch_size]).mean(1).cpu() for i in range(0, len(rows), batch_size)]
    return torch.cat(out) if out else torch.zeros(0, renderer.whole.optics.size, renderer.whole.optics.size)


def network_inputs(
    rows: pd.DataFrame, star_path, optics: pd.DataFrame, flip: bool, renderer=None, batch_size: int = 256
) -> torch.Tensor:
    """(n, C, L, L): the images, then (with a `renderer`, for a classifier given the pose) the consensus image at
    the pose the rows hold; both phase-flipped alike."""
    channels = [load_labelled(rows, star_path, optics, flip)]
    if renderer is not None:
        channels.append(flipped(consensus_images(renderer, rows, batch_size), rows, optics, flip))
    return torch.stack(channels, 1)


class LabelledImages(Dataset):
    """(image (C, L, L), {"class": label}, index) items for the training engine; `targets` for its baseline."""

    def __init__(self, images: torch.Tensor, labels: np.ndarray):
        self.images = images if images.ndim == 4 else images[:, None]
        self.targets = {"class": torch.as_tensor(np.array(labels), dtype=torch.float32)}

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int):
        return self.images[i], {"class": self.targets["class"][i]}, i
