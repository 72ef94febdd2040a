"""Re-centring on the data: a second reference from the far end of a first alignment pass.

Without a known second structure, the modes alone do not reach a state far from the reference (the
closed end of AdK's motion: the fit stays Å away and loses the pose). A pass of the alignment still
places the images that are part of the way there at the far end of its conformational space. Those
images are reconstructed (their fitted poses, |CTF| Wiener backprojection on the aligned grid), and
the reference atoms are fitted to that map along *all* computed modes (many more than the alignment
fits: a map of a hundred images has the signal for it, a single image does not), by Adam on the
correlation of the atoms' map and the reconstruction, both low-passed to `resolution`. The fitted
conformation becomes the second starting conformation of the next pass (`DeformableReference`), so
each pass reaches further along the motion. Nothing here uses a ground truth or a second structure.
"""

from __future__ import annotations

import numpy as np
import torch

from cryopipe.align.model import second_reference_offset
from cryopipe.analysis.backproject import Backprojector
from cryopipe.analysis.fsc import soft_sphere
from cryopipe.imaging.ctf import ctf_2d
from cryopipe.imaging.project import atoms_to_map, sigma_for_resolution
from cryopipe.structure.modes import deform, project_displacement


def far_end(displacements: np.ndarray, fraction: float) -> np.ndarray:
    """Mask of the `fraction` of images at the far end of the first principal axis of their fitted
    displacements (n, N, 3): the end whose conformations lie farther (RMSD) from the reference."""
    flat = displacements.reshape(len(displacements), -1)
    centred = flat - flat.mean(0)
    axis = np.linalg.svd(centred, full_matrices=False)[2][0]
    score = centred @ axis
    rmsd = np.sqrt((displacements**2).sum(2).mean(1))
    hi, lo = score >= np.quantile(score, 1 - fraction), score <= np.quantile(score, fraction)
    if rmsd[lo].mean() > rmsd[hi].mean():
        score, hi = -score, lo
    return hi


def reconstruct(
    images: torch.Tensor,
    rotations: torch.Tensor,
    origins: torch.Tensor,
    defocus: np.ndarray,
    optics: dict,
    *,
    phase_flipped: bool,
    ctf: bool = True,
    wiener: float = 0.05,
) -> torch.Tensor:
    """Map (L³) of images (n, L, L) at their poses (RELION matrices, origins Å) with a constant Wiener term
    (`wiener` × the mean inserted CTF² per voxel; enough for a map to fit modes to, not a final map)."""
    L = images.shape[-1]
    px = optics["pixel_size"]
    bp = Backprojector(L, 2)
    c = None
    if ctf:
        c = ctf_2d(
            defocus[:, 0],
            defocus[:, 1],
            defocus[:, 2],
            voltage=optics["voltage"],
            spherical_aberration=optics["spherical_aberration"],
            amplitude_contrast=optics["amplitude_contrast"],
            pixel_size=px,
            shape=(2 * L, 2 * L),
        )
        c = c.abs() if phase_flipped else c
    bp.insert(images, rotations, origins / px, c)
    w = bp.shell_mean_weight()
    return bp.reconstruct(torch.full((L // 2,), wiener * float(w[1:].mean()), dtype=torch.float64)).float()


def lowpass(volume: torch.Tensor, pixel_size: float, resolution: float) -> torch.Tensor:
    k = torch.fft.fftfreq(volume.shape[-1]) / pixel_size
    kk = torch.sqrt(k[:, None, None] ** 2 + k[None, :, None] ** 2 + k[None, None, :] ** 2)
    return torch.fft.ifftn(torch.fft.fftn(volume) * (kk <= 1.0 / resolution)).real


def fit_modes_to_map(
    volume: torch.Tensor,
    coords: np.ndarray,
    weights: np.ndarray,
    modes: np.ndarray,
    pixel_size: float,
    *,
    resolution: float = 6.0,
    steps: int = 150,
    start: np.ndarray | None = None,
) -> tuple[np.ndarray, float]:
    """(displacement (N, 3) Å = Σ b_k m_k + a translation, final correlation) that best fits the atoms' map to
    `volume` (z, y, x) inside a soft sphere, both low-passed to `resolution` Å. `start`: an initial
    displacement (projected on the modes)."""
    L = volume.shape[-1]
    mask = soft_sphere(L, 0.42 * L, 3.0).float()
    M = torch.as_tensor(modes, dtype=torch.float32)
    b0 = np.zeros(len(modes)) if start is None else project_displacement(start, modes)
    b = torch.tensor(b0, dtype=torch.float32, requires_grad=True)
    shift = torch.zeros(3, requires_grad=True)
    X, W = torch.as_tensor(coords, dtype=torch.float32), torch.as_tensor(weights, dtype=torch.float32)
    target = lowpass(volume.float() * mask, pixel_size, resolution)
    target = (target - target.mean()) / target.std()
    sigma = sigma_for_resolution(resolution)
    optimizer = torch.optim.Adam([b, shift], lr=0.1)
    cc = torch.tensor(0.0)
    for _ in range(steps):
        m = (
            atoms_to_map(X + torch.einsum("k,knd->nd", b, M) + shift, W, pixel_size=pixel_size, size=L, sigma=sigma)
            * mask
        )
        m = (m - m.mean()) / m.std()
        cc = (m * target).mean()
        optimizer.zero_grad()
        (-cc).backward()
        optimizer.step()
    disp = torch.einsum("k,knd->nd", b, M) + shift
    return disp.detach().double().numpy(), float(cc.detach())


def recentred_displacement(
    res: dict,
    atoms,
    all_modes: np.ndarray,
    vectors: np.ndarray,
    second: np.ndarray | None,
    images,
    defocus: np.ndarray,
    optics: dict,
    keep: np.ndarray,
    *,
    fraction: float,
    resolution: float,
    steps: int,
    phase_flipped: bool,
    ctf: bool = True,
) -> tuple[np.ndarray, int, float]:
    """(displacement (N, 3) of the next second reference, far-end images used, map-fit cc) from one pass.

    res: the pass's `Aligner.align` output; vectors: its fitted modes; second: its second reference's
    displacement (None in a first pass); keep: the images that passed the fit-quality filter; all_modes:
    every computed mode (the map fit uses them all).
    """
    disp = deform(np.zeros_like(atoms.coords), vectors, res["amplitudes"])
    if second is not None:
        disp = disp + res["second"][:, None, None] * second_reference_offset(second, vectors)[0]
    idx = np.nonzero(keep)[0][far_end(disp[keep], fraction)]
    vol = reconstruct(
        torch.as_tensor(np.asarray(images[idx])),
        torch.as_tensor(res["rotations"][idx]),
        torch.as_tensor(res["origins"][idx]),
        np.asarray(defocus)[idx],
        optics,
        phase_flipped=phase_flipped,
        ctf=ctf,
    )
    fitted, cc = fit_modes_to_map(
        vol,
        atoms.coords,
        atoms.weights,
        all_modes,
        optics["pixel_size"],
        resolution=resolution,
        steps=steps,
        start=disp[idx].mean(0),
    )
    return fitted, len(idx), cc
