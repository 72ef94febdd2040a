"""Half-map reconstruction of a particle subset from its STAR file (poses + CTF) and original images.

Gold standard, as RELION's: the two half sets are disjoint (rlnRandomSubset when the STAR has it, so RELION
sees the same halves, else alternate rows), and each half map is made from its own images with a
regulariser computed from its own weights only (`UNFILTERED` × its mean CTF² per shell: no Wiener filter,
nothing derived from the other half or from their FSC). Their FSC is what `evaluate` reports. The full map
(both halves) is then Wiener-filtered with the per-shell term from that FSC, for looking at and for FSC
against a truth.

Why the halves are not Wiener-filtered: with the FSC-derived term, shells beyond the resolution are damped
~1000× in both halves, and what is left there is what both share, the leakage of their common
low-resolution signal (the crop from the padded box, the mask); their FSC then stays positive where there is
no signal (measured: +0.03 to +0.05 beyond 4 Å on a 6.4-Å group, README "Resolution").
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
from cryopipe.io.star import EULER, ORIGIN, ParticleImages

UNFILTERED = 0.05  # a half map's regulariser: this × its own mean CTF² per shell (tames unsampled voxels only)


def half_sets(particles: pd.DataFrame, star_path="the STAR") -> np.ndarray:
    """1 or 2 per particle: rlnRandomSubset when present (other values are refused), else alternate rows."""
    if "rlnRandomSubset" not in particles.columns:
        return np.arange(len(particles)) % 2 + 1
    halves = pd.to_numeric(particles["rlnRandomSubset"], errors="coerce").to_numpy()
    bad = np.nonzero(~np.isin(halves, (1, 2)))[0]
    if len(bad):
        value = particles["rlnRandomSubset"].iloc[bad[0]]
        raise CryopipeError(f"{star_path}: rlnRandomSubset is {value} in particle row {bad[0] + 1}; it must be 1 or 2")
    return halves.astype(int)


def insert_particles(
    bps: dict, particles: pd.DataFrame, optics: dict, star_path, batch_size: int = 128, progress=None
) -> None:
    """Insert every particle into bps[its half set] with its pose, origin and CTF."""
    apix, L = float(optics["rlnImagePixelSize"]), int(optics["rlnImageSize"])
    n_pad = next(iter(bps.values())).n
    flipped = bool(int(optics.get("rlnCtfDataArePhaseFlipped", 0) or 0))
    halves = half_sets(particles, star_path)
    stack = ParticleImages(particles, star_path)  # read batch by batch
    for lo in range(0, len(particles), batch_size):
        rows = np.arange(lo, min(lo + batch_size, len(particles)))
        batch = particles.iloc[rows]
        images = torch.as_tensor(stack[rows])
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
                phase_shift=(
                    batch["rlnPhaseShift"].to_numpy()
                    if "rlnPhaseShift" in batch.columns
                    else float(optics.get("rlnPhaseShift", 0.0) or 0.0)
                ),
            )
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
    """{'half1', 'half2': unfiltered half maps, 'full': the Wiener-filtered map (L³), 'fsc': the half maps' FSC
    under a soft sphere, 'regulariser': the full map's per-shell term}.

    wiener None → the full map's per-shell regulariser from the half-map FSC; a number → that constant.
    """
    L = int(optics["rlnImageSize"])
    bps = {1: Backprojector(L, pad, device), 2: Backprojector(L, pad, device)}
    insert_particles(bps, particles, optics, star_path, batch_size, progress)
    return finish_halves(bps, L, wiener=wiener, mask_radius_px=mask_radius_px)


def finish_halves(bps: dict, L: int, *, wiener: float | None = None, mask_radius_px: float | None = None) -> dict:
    """The half maps and the full map from two filled backprojectors {1: …, 2: …} (`reconstruct_halves`'s
    result; also for images held in memory, e.g. `cryopipe.improve.pairs`). Adds half 2 into half 1."""
    w1, w2 = bps[1].shell_mean_weight(), bps[2].shell_mean_weight()
    h1 = bps[1].reconstruct(UNFILTERED * w1).cpu()
    h2 = bps[2].reconstruct(UNFILTERED * w2).cpu()
    mask = soft_sphere(L, mask_radius_px if mask_radius_px else 0.45 * L, 3.0).to(h1.dtype)
    _, curve = fsc(h1 * mask, h2 * mask)
    if wiener is None:
        reg = fsc_regulariser(curve, 0.5 * (w1 + w2))
    else:
        reg = torch.full((L // 2,), float(wiener), dtype=torch.float64)
    full = bps[1].add_(bps[2]).reconstruct(reg).cpu()
    return {"half1": h1, "half2": h2, "full": full, "fsc": curve, "regulariser": reg.numpy()}
