"""Training and validation boxes cut from pairs: random crops around the density, turned by one of the cube's 24
proper rotations (never mirrored: a mirror image is another molecule)."""

from __future__ import annotations

import numpy as np
import torch

from cryopipe.improve.grid import cut_box, normalisation


def normalised_pair(map_: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Both divided by EMReady's scale (`normalisation`), the reconstruction's negative ripples clipped at 0."""
    return (map_ / normalisation(map_)).clamp(min=0), target / normalisation(target)


def cube_rotation(box: torch.Tensor, k: int) -> torch.Tensor:
    """The k-th (0…23) proper rotation of the cube applied to (..., D, D, D): one of 6 faces up, then 4 turns."""
    face, turn = divmod(k, 4)
    dims = (-3, -2, -1)
    face_moves = [
        (0, dims[:2]),
        (1, dims[:2]),
        (2, dims[:2]),
        (3, dims[:2]),
        (1, (dims[0], dims[2])),
        (3, (dims[0], dims[2])),
    ]
    times, plane = face_moves[face]
    out = torch.rot90(box, times, plane)
    return torch.rot90(out, turn, (dims[1], dims[2]))


def crop_corner(target: torch.Tensor, crop: int, rng: np.random.Generator) -> tuple[int, int, int]:
    """A corner whose crop is centred on a random voxel of the target's density (> 10 % of its maximum)."""
    L = target.shape[-1]
    dense = torch.nonzero(target > 0.1 * target.max())
    centre = dense[rng.integers(len(dense))].numpy() if len(dense) else np.full(3, L // 2)
    z, y, x = (
        int(np.clip(c - crop // 2 + rng.integers(-crop // 4, crop // 4 + 1), 0, max(L - crop, 0))) for c in centre
    )
    return z, y, x


class CropSource:
    """The engine's batch source (`epoch_batches`): every epoch `batches_per_epoch` batches of new random crops of
    the training pairs, a function of (seed, epoch, batch) only."""

    def __init__(self, maps, targets, crop: int, batch_size: int, batches_per_epoch: int, seed: int):
        self.maps, self.targets = maps, targets
        self.crop, self.batch_size, self.batches_per_epoch, self.seed = crop, batch_size, batches_per_epoch, seed

    def __len__(self) -> int:
        return self.batches_per_epoch * self.batch_size

    def batch(self, epoch: int, b: int):
        rng = np.random.default_rng([self.seed, 11, epoch, b])
        xs, ts = [], []
        for _ in range(self.batch_size):
            p = int(rng.integers(len(self.maps)))
            corner = crop_corner(self.targets[p], self.crop, rng)
            k = int(rng.integers(24))
            xs.append(cube_rotation(cut_box(self.maps[p], corner, self.crop), k))
            ts.append(cube_rotation(cut_box(self.targets[p], corner, self.crop), k))
        return (
            torch.stack(xs)[:, None].contiguous(),
            {"map": torch.stack(ts)[:, None].contiguous()},
            torch.arange(len(xs)),
        )

    def epoch_batches(self, epoch: int, rank: int = 0, world: int = 1):
        for b in range(rank, self.batches_per_epoch, world):
            yield self.batch(epoch, b)


class FixedCrops(torch.utils.data.Dataset):
    """Validation: a fixed set of crops (`per_pair` per held-out pair), as engine items (box, {"map": target}, i)."""

    def __init__(self, maps, targets, crop: int, per_pair: int, seed: int):
        rng = np.random.default_rng([seed, 13])
        self.items = []
        for p in range(len(maps)):
            for _ in range(per_pair):
                corner = crop_corner(targets[p], crop, rng)
                self.items.append((cut_box(maps[p], corner, crop)[None], cut_box(targets[p], corner, crop)[None]))

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int):
        x, t = self.items[i]
        return x, {"map": t}, i
