"""The projector against analytic Gaussians and an independent voxel-volume projection."""

import numpy as np
import torch
from eulerangles import euler2matrix
from scipy.ndimage import map_coordinates

from cryopipe.geometry import euler_to_matrix
from cryopipe.imaging.fourier import shift_images
from cryopipe.imaging.project import atoms_to_map, project_atoms
from helpers import corr

L, APIX, SIGMA = 48, 1.0, 2.0


def analytic_projection(coords, weights, angles, origin=(0.0, 0.0)):
    """Point-sampled 2D Gaussians at positions rotated with eulerangles' (independent) matrix."""
    R = euler2matrix(np.asarray(angles), axes="zyz", intrinsic=True, right_handed_rotation=True)
    xyz = np.asarray(coords) @ R  # r^T R = (R^T r)^T = (A r)^T for RELION's A = R^T
    c = np.arange(L) - L // 2
    y, x = np.meshgrid(c, c, indexing="ij")
    img = np.zeros((L, L))
    for (px, py, _), w in zip(xyz / APIX, np.asarray(weights)):
        px, py = px - origin[0] / APIX, py - origin[1] / APIX
        img += (
            w * np.exp(-((x - px) ** 2 + (y - py) ** 2) / (2 * (SIGMA / APIX) ** 2)) / (2 * np.pi * (SIGMA / APIX) ** 2)
        )
    return img


def test_projection_matches_analytic_gaussians(phantom):
    coords, weights = phantom
    rng = np.random.default_rng(0)
    angles = np.stack([rng.uniform(-180, 180, 12), rng.uniform(0, 180, 12), rng.uniform(-180, 180, 12)], 1)
    A = euler_to_matrix(torch.tensor(angles))
    imgs = project_atoms(coords[None], weights, A, None, pixel_size=APIX, size=L, sigma=SIGMA)
    for img, ang in zip(imgs, angles):
        assert corr(img, analytic_projection(coords, weights, ang)) > 0.999


def test_projection_matches_rotated_volume(phantom):
    """RELION's definition: P(x, y) = Σ_z V(Aᵀ (x, y, z)), computed on a voxel map with scipy."""
    coords, weights = phantom
    vol = atoms_to_map(coords, weights, pixel_size=APIX, size=L, sigma=SIGMA).numpy()
    angles = torch.tensor([[30.0, 60.0, -45.0], [200.0, 120.0, 10.0]], dtype=torch.float64)
    A = euler_to_matrix(angles)
    c = np.arange(L) - L // 2
    z, y, x = np.meshgrid(c, c, c, indexing="ij")
    for Ai, img in zip(A.numpy(), project_atoms(coords[None], weights, A, None, pixel_size=APIX, size=L, sigma=SIGMA)):
        src = Ai.T @ np.stack([x.ravel(), y.ravel(), z.ravel()])  # volume-frame coordinates (x, y, z)
        vals = map_coordinates(vol, [src[2] + L // 2, src[1] + L // 2, src[0] + L // 2], order=3).reshape(L, L, L)
        assert corr(vals.sum(0), img) > 0.995


def test_map_projects_to_identity_image(phantom):
    coords, weights = phantom
    vol = atoms_to_map(coords, weights, pixel_size=APIX, size=L, sigma=SIGMA)
    img = project_atoms(
        coords[None], weights, torch.eye(3, dtype=torch.float64)[None], None, pixel_size=APIX, size=L, sigma=SIGMA
    )[0]
    np.testing.assert_allclose(vol.sum(0).numpy(), img.numpy(), atol=1e-12)
    np.testing.assert_allclose(vol.sum().item(), weights.sum().item(), rtol=1e-6)  # Gaussians integrate to their weight


def test_origin_shift_follows_relion(phantom):
    """rlnOriginX/YAngst = (dx, dy): relion_project moves the projection by −origin, so the particle
    sits at centre − origin, and shifting the image by +origin re-centres it."""
    coords, weights = phantom
    A = euler_to_matrix(torch.tensor([[20.0, 70.0, 110.0]], dtype=torch.float64))
    origin = torch.tensor([[4.0, -3.0]], dtype=torch.float64)  # Å
    centred = project_atoms(coords[None], weights, A, None, pixel_size=APIX, size=L, sigma=SIGMA)
    moved = project_atoms(coords[None], weights, A, origin, pixel_size=APIX, size=L, sigma=SIGMA)
    assert corr(moved[0], analytic_projection(coords, weights, [20.0, 70.0, 110.0], origin=(4.0, -3.0))) > 0.999
    c = torch.arange(L, dtype=torch.float64) - L // 2
    com = lambda im: torch.stack([(im.sum(0) * c).sum(), (im.sum(1) * c).sum()]) / im.sum()
    np.testing.assert_allclose((com(moved[0]) - com(centred[0])).numpy(), (-origin[0] / APIX).numpy(), atol=1e-3)
    np.testing.assert_allclose(shift_images(moved, origin / APIX)[0].numpy(), centred[0].numpy(), atol=1e-6)
