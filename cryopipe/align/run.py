"""Alignment driver: batches of images → global search → multi-candidate refinement → best fit."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from cryopipe.align.model import DeformableReference
from cryopipe.align.refine import ImageBatch, Stage, refine
from cryopipe.align.search import global_search, reference_projections, shift_grid
from cryopipe.align.similarity import band_weights
from cryopipe.geometry import angular_distance, matrix_to_euler, rotation_grid


@dataclass
class AlignSettings:
    grid_spacing: float = 15.0  # degrees of the SO(3) search grid
    search_size: int = 32  # px of the global search
    search_lowpass: float = 10.0  # Å
    search_amplitudes: list[float] = field(default_factory=lambda: [-3.0, 0.0, 3.0])
    search_combinations: str = "axes"  # "axes": 0 and each value along one mode at a time; "grid": all combinations
    max_shift: float = 4.0  # Å searched around the box centre
    candidates: int = 4  # refined per image before the best is kept
    coarse: list[Stage] = field(default_factory=lambda: [Stage(32, 8.0, 40)])
    fine: list[Stage] = field(default_factory=lambda: [Stage(64, 5.0, 40, beads=False)])
    batch_size: int = 32


def amplitude_starts(values: list[float], n_modes: int, combinations: str) -> torch.Tensor:
    vals = torch.tensor(values, dtype=torch.float32)
    if combinations == "grid":
        return torch.cartesian_prod(*[vals] * n_modes).reshape(-1, n_modes)
    starts = [torch.zeros(n_modes)]
    for k in range(n_modes):
        for v in vals[vals != 0]:
            s = torch.zeros(n_modes)
            s[k] = v
            starts.append(s)
    return torch.stack(starts)


def pick_distinct(scores: torch.Tensor, rot_idx: torch.Tensor, amp_idx: torch.Tensor, rotations: torch.Tensor, k: int,
                  min_angle: float) -> torch.Tensor:
    """Columns (B, k) of the candidates kept: best first, skipping near-duplicates (same amplitude start,
    rotation within `min_angle`). Falls back to the next best when too few are distinct."""
    B, T = scores.shape
    R = rotations[rot_idx]  # (B, T, 3, 3)
    close = angular_distance(R[:, :, None], R[:, None, :]) < min_angle
    same = close & (amp_idx[:, :, None] == amp_idx[:, None, :])
    keep = torch.zeros(B, T, dtype=torch.bool, device=scores.device)
    for j in range(T):
        dup = (same[:, j, :j] & keep[:, :j]).any(1) if j else torch.zeros(B, dtype=torch.bool, device=scores.device)
        keep[:, j] = ~dup & (keep.sum(1) < k)
    order = torch.argsort((~keep).float() * 2 + torch.arange(T, device=scores.device) / T, dim=1, stable=True)
    return order[:, :k]


class Aligner:
    def __init__(self, fine_ref: DeformableReference, beads_ref: DeformableReference, settings: AlignSettings,
                 optics: dict, image_size: int, device: str = "cpu", ctf: bool = True, phase_flipped: bool = True):
        self.s = settings
        self.device = torch.device(device)
        self.refs = {False: fine_ref.to(self.device), True: beads_ref.to(self.device)}
        self.optics = optics
        self.image_size = image_size
        self.ctf = ctf
        self.phase_flipped = phase_flipped
        n_modes = fine_ref.modes.shape[0]
        self.rotations = rotation_grid(settings.grid_spacing).to(self.device, torch.float32)
        self.amp_starts = amplitude_starts(settings.search_amplitudes, n_modes, settings.search_combinations).to(self.device)
        self.search_px = optics["pixel_size"] * image_size / settings.search_size
        self.proj_ft = reference_projections(self.refs[True], self.rotations, self.amp_starts, size=settings.search_size,
                                             pixel_size=self.search_px)
        self.shifts = shift_grid(settings.max_shift / self.search_px, device=self.device)

    def align_batch(self, images: torch.Tensor, defocus: np.ndarray) -> dict[str, torch.Tensor]:
        """images (B, L, L) normalised (phase-flipped or not); defocus (B, 3) U, V, angle → estimates per image."""
        d = torch.tensor(np.array(defocus, dtype=np.float64), device=self.device)
        batch = ImageBatch(images.to(self.device, torch.float32), d[:, 0], d[:, 1], d[:, 2], self.optics, self.ctf,
                           self.phase_flipped)
        B, K, R = len(images), self.s.candidates, len(self.rotations)
        image_ft, model_ctf, px = batch.at(self.s.search_size)
        w = band_weights(self.s.search_size, px, self.s.search_lowpass, device=self.device)
        scores, pidx, didx = global_search(image_ft, model_ctf, w, self.proj_ft, self.shifts, top=max(4 * K, 16))
        cols = pick_distinct(scores, pidx % R, pidx // R, self.rotations, K, self.s.grid_spacing)
        pidx, didx = torch.gather(pidx, 1, cols), torch.gather(didx, 1, cols)
        A0 = self.rotations[pidx % R].reshape(B * K, 3, 3)
        amps0 = self.amp_starts[pidx // R].reshape(B * K, -1)
        origins0 = -self.shifts[didx].reshape(B * K, 2) * px  # content moved by +d px ⇔ origin −d·px Å
        A, o, a, cc = refine(self.refs, batch.repeat(K), A0, origins0, amps0, self.s.coarse)
        best = cc.reshape(B, K).argmax(1) + torch.arange(B, device=self.device) * K
        A, o, a = A[best], o[best], a[best]
        if self.s.fine:
            A, o, a, cc = refine(self.refs, batch, A, o, a, self.s.fine)
        else:
            cc = cc[best]
        return {"rotations": A, "origins": o, "amplitudes": a, "cc": cc}

    def align(self, images: np.ndarray, defocus: np.ndarray, progress: bool = True) -> dict[str, np.ndarray]:
        from tqdm import tqdm

        out: dict[str, list] = {}
        starts = range(0, len(images), self.s.batch_size)
        for lo in tqdm(starts, desc="align", disable=not progress, mininterval=2):
            sl = slice(lo, lo + self.s.batch_size)
            res = self.align_batch(torch.as_tensor(np.asarray(images[sl])), defocus[sl])
            for k, v in res.items():
                out.setdefault(k, []).append(v.detach().cpu())
        cat = {k: torch.cat(v) for k, v in out.items()}
        return {"euler": matrix_to_euler(cat["rotations"].double()).numpy(), "rotations": cat["rotations"].double().numpy(),
                "origins": cat["origins"].double().numpy(), "amplitudes": cat["amplitudes"].double().numpy(),
                "cc": cat["cc"].double().numpy()}
