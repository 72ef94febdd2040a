"""Maps on the network's grid: Fourier resampling to its voxel size, EMReady's normalisation, boxes with overlap
and their exact re-assembly (overlapping boxes averaged, as EMReady's `map_batch_to_map` does)."""

from __future__ import annotations

import numpy as np
import torch

PERCENTILE = 99.999  # EMReady divides a map by this percentile of its positive voxels


def resampled_size(size: int, voxel_size: float, new_voxel_size: float) -> int:
    """The even box that holds the same field of view at (about) `new_voxel_size` Å."""
    return max(2, 2 * int(round(size * voxel_size / new_voxel_size / 2)))


def fourier_resample(vol: torch.Tensor, size: int) -> torch.Tensor:
    """(L, L, L) → (size, size, size) over the same field of view, by cropping or zero-padding its centred
    spectrum (an ideal low-pass when shrinking, exact interpolation when growing). Values keep their scale; the
    box centre (voxel L//2) stays the centre. The Nyquist planes of an even grid are dropped so the map stays
    real. Resampling down and up again returns the map low-passed at the coarser Nyquist."""
    L = vol.shape[-1]
    if size == L:
        return vol.clone()
    F = torch.fft.fftshift(torch.fft.fftn(vol.to(torch.float64)))
    m = min(size, L)
    lo_in, lo_out = L // 2 - m // 2, size // 2 - m // 2
    out = F.new_zeros(size, size, size)
    out[lo_out : lo_out + m, lo_out : lo_out + m, lo_out : lo_out + m] = F[
        lo_in : lo_in + m, lo_in : lo_in + m, lo_in : lo_in + m
    ]
    if m % 2 == 0:  # the unpaired Nyquist planes of the smaller grid
        edge = lo_out
        out[edge] = 0
        out[:, edge] = 0
        out[:, :, edge] = 0
    return (torch.fft.ifftn(torch.fft.ifftshift(out)).real * (size / L) ** 3).to(vol.dtype)


def normalisation(vol: torch.Tensor) -> float:
    """EMReady's scale: the 99.999th percentile of the positive voxels (1 for a map without any)."""
    positive = vol[vol > 0]
    if positive.numel() == 0:
        return 1.0
    return float(np.percentile(positive.double().numpy(), PERCENTILE))


def box_starts(size: int, box: int, stride: int) -> list[int]:
    """Start indices along one axis: every `stride` voxels, the last box flush with the end (the whole axis is
    covered; a box larger than the axis is one box at 0, padded)."""
    if size <= box:
        return [0]
    starts = list(range(0, size - box + 1, stride))
    if starts[-1] != size - box:
        starts.append(size - box)
    return starts


def box_corners(shape: tuple[int, int, int], box: int, stride: int) -> list[tuple[int, int, int]]:
    return [(z, y, x) for z in box_starts(shape[0], box, stride) for y in box_starts(shape[1], box, stride)
            for x in box_starts(shape[2], box, stride)]  # fmt: skip


def cut_box(vol: torch.Tensor, corner: tuple[int, int, int], box: int) -> torch.Tensor:
    """The box³ at `corner` (zero-padded where it reaches past a small map's end)."""
    z, y, x = corner
    part = vol[z : z + box, y : y + box, x : x + box]
    if part.shape == (box, box, box):
        return part
    out = vol.new_zeros(box, box, box)
    out[: part.shape[0], : part.shape[1], : part.shape[2]] = part
    return out


class Assembler:
    """Sums predicted boxes into a map and counts how many covered each voxel; `result()` is their average
    (0 where no box was placed). For boxes cut from a map and put back unchanged it returns the map exactly."""

    def __init__(self, shape: tuple[int, int, int], dtype=torch.float32):
        self.total = torch.zeros(shape, dtype=torch.float64)
        self.count = torch.zeros(shape, dtype=torch.float64)

    def add(self, box: torch.Tensor, corner: tuple[int, int, int]) -> None:
        z, y, x = corner
        part = self.total[z : z + box.shape[0], y : y + box.shape[1], x : x + box.shape[2]]
        part += box[: part.shape[0], : part.shape[1], : part.shape[2]].to(torch.float64)
        self.count[z : z + box.shape[0], y : y + box.shape[1], x : x + box.shape[2]] += 1

    def result(self) -> torch.Tensor:
        return (self.total / self.count.clamp(min=1)).float()
