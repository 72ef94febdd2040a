"""A map through the network box by box, as EMReady's `pred.py` does: resampled to the network's voxel size,
normalised (`grid.normalisation`, negatives clipped), cut into overlapping boxes (boxes with no density skipped:
their voxels are 0), each box improved, overlaps averaged, the scale restored and the map resampled back to its
own grid."""

from __future__ import annotations

import torch

from cryopipe.improve.grid import Assembler, box_corners, cut_box, fourier_resample, normalisation, resampled_size


def improve_boxes(
    model, vol: torch.Tensor, *, box: int, stride: int, batch_size: int = 4, min_density: float = 0.05,
    device="cpu", progress=None,
) -> torch.Tensor:  # fmt: skip
    """`model` applied to every box of a normalised map (L, L, L) whose maximum exceeds `min_density`; the result
    assembled (0 where no box was run). An identity model returns `vol` exactly wherever a box ran."""
    shape = (vol.shape[0], vol.shape[1], vol.shape[2])
    corners = [c for c in box_corners(shape, box, stride) if float(cut_box(vol, c, box).max()) > min_density]
    out = Assembler(shape)
    with torch.no_grad():
        for lo in range(0, len(corners), batch_size):
            chunk = corners[lo : lo + batch_size]
            x = torch.stack([cut_box(vol, c, box) for c in chunk])[:, None].to(device)
            y = model(x)[:, 0].float().cpu()
            for c, b in zip(chunk, y):
                out.add(b, c)
            if progress is not None:
                progress.update(len(chunk))
    return out.result()


def improve_map(
    model, vol: torch.Tensor, voxel_size: float, *, net_voxel: float, box: int, stride: int, batch_size: int = 4,
    min_density: float = 0.05, device="cpu", progress=None,
) -> torch.Tensor:  # fmt: skip
    """The network's map (L, L, L) of a map (L, L, L) at `voxel_size` Å, on the map's own grid and scale."""
    L = vol.shape[-1]
    small = fourier_resample(vol.double(), resampled_size(L, voxel_size, net_voxel)).float()
    scale = normalisation(small)
    out = improve_boxes(
        model, (small / scale).clamp(min=0), box=box, stride=stride, batch_size=batch_size,
        min_density=min_density, device=device, progress=progress,
    )  # fmt: skip
    return fourier_resample(out.double() * scale, L).float()
