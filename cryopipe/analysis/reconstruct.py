"""Half-map reconstruction of a particle subset from its STAR file (poses + CTF) and original images.

Half sets follow rlnRandomSubset when the STAR has it (so RELION sees the same halves), else
alternate rows. Pass 1 reconstructs both halves with a small constant regulariser to measure
their FSC; pass 2 uses the FSC-derived per-shell Wiener term for the two half maps and the full map.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cryopipe.analysis.backproject import Backprojector, fsc_regulariser
from cryopipe.analysis.fsc import fsc, soft_sphere
from cryopipe.errors import CryopipeError
from cryopipe.geometry import euler_to_matrix
from cryopipe.imaging.ctf import ctf_2d
from cryopipe.io.star import EULER, ORIGIN, load_images


def half_sets(particles: pd.DataFrame) -> np.ndarray:
    if "rlnRandomSubset" in particles.columns:
        return particles["rlnRandomSubset"].to_numpy().astype(int)
    return np.arange(len(particles)) % 2 + 1


def insert_particles(
    bps: dict, particles: pd.DataFrame, optics: dict, star_path, batch_size: int = 128, progress=None
) -> None:
    """Insert every particle into bps[its half set] with its pose, origin and CTF."""
    apix, L = float(optics["rlnImagePixelSize"]), int(optics["rlnImageSize"])
    n_pad = next(iter(bps.values())).n
    flipped = bool(int(optics.get("rlnCtfDataArePhaseFlipped", 0) or 0))
    halves = half_sets(particles)
    for lo in range(0, len(particles), batch_size):
        rows = np.arange(lo, min(lo + batch_size, len(particles)))
        batch = particles.iloc[rows]
        images = torch.as_tensor(load_images(particles, star_path, rows), dtype=torch.float64)
        if images.shape[-1] != L:
            raise CryopipeError(
                f"{star_path}: images are {images.shape[-1]} px, the optics table says rlnImageSize {L}"
            )
        A = euler_to_matrix(torch.tensor(batch[EULER].to_numpy(np.float64)))
        origins = torch.tensor(batch[ORIGIN].to_numpy(np.float64)) / apix
        ctf = None
        if "rlnDefocusU" in batch.columns:
            ctf = ctf_2d(
                batch["rlnDefocusU"].to_numpy(),
                batch["rlnDefocusV"].to_numpy(),
                batch["rlnDefocusAngle"].to_numpy(),
                voltage=float(optics["rlnVoltage"]),
                spherical_aberration=float(optics["rlnSphericalAberration"]),
                amplitude_contrast=float(optics["rlnAmplitudeContrast"]),
                pixel_size=apix,
                shape=(n_pad, n_pad),
                rfft=False,
            ).double()
            if flipped:
                ctf = ctf.abs()
        for h, bp in bps.items():
            sel = torch.as_tensor(halves[rows] == h)
            if sel.any():
                bp.insert(images[sel], A[sel], origins[sel], None if ctf is None else ctf[sel])
        if progress is not None:
            progress.update(len(rows))


def reconstruct_halves(
    particles: pd.DataFrame,
    optics: dict,
    star_path,
    *,
    pad: int = 2,
    wiener: float | None = None,
    mask_radius_px: float | None = None,
    batch_size: int = 128,
    device="cpu",
    progress=None,
) -> dict:
    """{'half1', 'half2', 'full': maps (L³), 'fsc': half-map FSC (masked), 'regulariser': per shell}.

    wiener None → per-shell regulariser from the half-map FSC; a number → that constant.
    """
    L = int(optics["rlnImageSize"])
    bps = {1: Backprojector(L, pad, device), 2: Backprojector(L, pad, device)}
    insert_particles(bps, particles, optics, star_path, batch_size, progress)
    mask = soft_sphere(L, mask_radius_px if mask_radius_px else 0.45 * L, 3.0)
    w_half = 0.5 * (bps[1].shell_mean_weight() + bps[2].shell_mean_weight())
    if wiener is None:
        eps = 1e-3 * float(w_half[1:].mean().clamp_min(1e-12))
        _, f0 = fsc(bps[1].reconstruct(eps).cpu() * mask, bps[2].reconstruct(eps).cpu() * mask)
        reg = fsc_regulariser(f0, w_half)
    else:
        reg = torch.full((L // 2,), float(wiener), dtype=torch.float64)
    h1, h2 = bps[1].reconstruct(reg).cpu(), bps[2].reconstruct(reg).cpu()
    full = bps[1].merged(bps[2]).reconstruct(reg).cpu()
    _, curve = fsc(h1 * mask, h2 * mask)
    return {"half1": h1, "half2": h2, "full": full, "fsc": curve, "regulariser": reg.numpy()}
