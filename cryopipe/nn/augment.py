"""In-plane rotation augmentation with exactly transformed targets.

Rotating an image's content by θ about the box centre is the same particle seen with
A' = R_z(θ)·A (R_z active, in the image frame) and origin o' = R₂(θ)·o; the amplitudes do not
change. So every training image stands for a whole circle of in-plane orientations, which the
orientation and shift networks otherwise learn only from many more images. Shifts are
standardised with zero mean and one isotropic scale, so the rotation commutes with it.
"""

from __future__ import annotations

import torch


def rotate_images(images: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
    """Rotate the content of (B, C, H, W) images by θ (radians, +x towards +y) about pixel (H//2, W//2)."""
    _B, _, H, W = images.shape
    c, s = torch.cos(theta), torch.sin(theta)
    # affine_grid maps output to input coordinates in [-1, 1] (align_corners=False: pixel centres at
    # (2k+1)/W - 1); the box centre pixel W//2 sits at 1/W for even W, so rotate about that point.
    cx = (2 * (W // 2) + 1) / W - 1
    cy = (2 * (H // 2) + 1) / H - 1
    rot = torch.stack([torch.stack([c, s], -1), torch.stack([-s, c], -1)], -2)  # R(-θ): output → input
    centre = torch.tensor([cx, cy], dtype=images.dtype, device=images.device)
    shift = centre - rot @ centre
    theta_mat = torch.cat([rot, shift[..., None]], -1).to(images.dtype)
    grid = torch.nn.functional.affine_grid(theta_mat, list(images.shape), align_corners=False)
    return torch.nn.functional.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def rotate_targets(targets: dict[str, torch.Tensor], theta: torch.Tensor) -> dict[str, torch.Tensor]:
    out = dict(targets)
    c, s = torch.cos(theta), torch.sin(theta)
    if "orientation" in targets:
        q = targets["orientation"]
        h = theta / 2  # q' = (cos θ/2, 0, 0, sin θ/2) ⊗ q
        w1, z1 = torch.cos(h), torch.sin(h)
        w, x, y, z = q.unbind(-1)
        out["orientation"] = torch.stack([w1 * w - z1 * z, w1 * x - z1 * y, w1 * y + z1 * x, w1 * z + z1 * w], -1)
    if "shifts" in targets:
        sx, sy = targets["shifts"].unbind(-1)
        out["shifts"] = torch.stack([c * sx - s * sy, s * sx + c * sy], -1)
    return out


def random_inplane(images: torch.Tensor, targets: dict[str, torch.Tensor], generator: torch.Generator | None = None):
    theta = torch.rand(len(images), generator=generator).to(images.device) * 2 * torch.pi
    return rotate_images(images, theta), rotate_targets(targets, theta)
