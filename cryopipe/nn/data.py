"""Particle images read lazily from .mrcs stacks with plain file reads: memory stays flat for any stack size."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from cryopipe.errors import CryopipeError
from cryopipe.io.star import stack_index


class ParticleDataset(Dataset):
    """(image (1, L, L) float32, targets dict) for the rows of a STAR file.

    Each worker opens the stack files itself (open files do not cross process boundaries).
    """

    def __init__(self, particles: pd.DataFrame, star_path, targets: dict[str, np.ndarray] | None = None):
        self.groups = [(str(p), rows, idx) for p, rows, idx in stack_index(particles, star_path)]
        self.location: list[tuple[int, int] | None] = [None] * len(particles)  # (stack, image) of each row
        for g, (_, rows, idx) in enumerate(self.groups):
            for r, i in zip(rows, idx):
                self.location[r] = (g, int(i))
        self.targets = {k: torch.as_tensor(np.array(v, dtype=np.float32)) for k, v in (targets or {}).items()}
        self.names = particles["rlnImageName"].tolist()
        self._stacks: list | None = None

    def __len__(self) -> int:
        return len(self.location)

    def _stack(self, g: int):
        if self._stacks is None:
            from cryopipe.io.mrc import StackReader

            self._stacks = [StackReader(p) for p, _, _ in self.groups]
        return self._stacks[g]

    def __getitem__(self, i: int):
        loc = self.location[i]
        assert loc is not None, f"particle {i} is in no stack"  # stack_index places every row
        g, j = loc
        img = self._stack(g).read([j])[0]
        if not np.isfinite(img).all():
            raise CryopipeError(f"particle {i} ({self.names[i]}) has NaN/Inf pixels")
        return torch.from_numpy(img)[None], {k: v[i] for k, v in self.targets.items()}, i

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_stacks"] = None
        return state
