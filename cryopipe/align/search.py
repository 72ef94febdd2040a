"""Global search: every image against projections at an SO(3) grid × amplitude starts × shifts.

For phase-flipped images I, reference projections P and integer shifts d (pixels), the
correlation of `similarity.correlation` for all (d, P) pairs is one real matrix product:
numerator = Re[(w|C|I·e^{+2πik·d}) · conj(P)ᵀ], model norm = (w|C|²) · |P|²ᵀ. No Python loop
over images, rotations or shifts; projections are processed in chunks to bound memory.
"""

from __future__ import annotations

import torch

from cryopipe.align.model import DeformableReference


def reference_projections(
    ref: DeformableReference,
    rotations: torch.Tensor,
    amplitudes: torch.Tensor,
    *,
    size: int,
    pixel_size: float,
    second: torch.Tensor | None = None,
    chunk: int = 2048,
) -> torch.Tensor:
    """rfft of projections for every (amplitude start, rotation): (Q·R, size, size//2+1), amplitude-major.
    `second` (Q,): each start's conformation (0: reference, 1: second reference)."""
    out = []
    for q, a in enumerate(amplitudes):
        for lo in range(0, len(rotations), chunk):
            A = rotations[lo : lo + chunk]
            z = None if second is None else second[q].expand(len(A))
            imgs = ref.render(a.expand(len(A), -1), A, None, size=size, pixel_size=pixel_size, second=z)
            out.append(torch.fft.rfft2(imgs))
    return torch.cat(out)


def shift_grid(max_shift_px: float, step_px: float = 1.0, device=None) -> torch.Tensor:
    """Integer-step shifts (D, 2) in pixels within a disc of radius max_shift_px (always includes 0)."""
    n = int(max_shift_px // step_px)
    r = torch.arange(-n, n + 1, device=device, dtype=torch.float32) * step_px
    dy, dx = torch.meshgrid(r, r, indexing="ij")
    keep = dx**2 + dy**2 <= max_shift_px**2 + 1e-6
    return torch.stack([dx[keep], dy[keep]], -1)


def global_search(
    image_ft: torch.Tensor,
    model_ctf: torch.Tensor,
    weights: torch.Tensor,
    proj_ft: torch.Tensor,
    shifts_px: torch.Tensor,
    top: int,
    chunk: int = 4096,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Best `top` (score, projection index, shift index) per image: each (B, top)."""
    B, H, _W = image_ft.shape
    S = H
    ky = torch.fft.fftfreq(H, device=image_ft.device) * S
    kx = torch.fft.rfftfreq(S, device=image_ft.device) * S
    phase = (
        2
        * torch.pi
        * (shifts_px[:, 0, None, None] * kx[None, None, :] + shifts_px[:, 1, None, None] * ky[None, :, None])
        / S
    )
    ramp = torch.polar(torch.ones_like(phase), phase)  # e^{+2πi k·d/S}: model content moved by +d
    Iw = (weights * model_ctf * image_ft)[:, None] * ramp[None]  # (B, D, H, W)
    D = len(shifts_px)
    J = torch.cat([Iw.real, Iw.imag], -1).reshape(B * D, -1)
    model_weight = (weights * model_ctf**2).reshape(B, -1)
    img_norm = torch.sqrt((weights * (image_ft.real**2 + image_ft.imag**2)).sum((-2, -1)))
    best_s = torch.full((B, 0), -2.0, device=image_ft.device)
    best_i = torch.zeros((B, 0), dtype=torch.long, device=image_ft.device)
    for lo in range(0, len(proj_ft), chunk):
        P = proj_ft[lo : lo + chunk]
        Pf = torch.cat([P.real, P.imag], -1).reshape(len(P), -1)
        num = (J @ Pf.T).reshape(B, D, len(P))
        den = torch.sqrt((model_weight @ (P.real**2 + P.imag**2).reshape(len(P), -1).T).clamp_min(1e-20))  # (B, P)
        score = num / (den[:, None, :] * img_norm[:, None, None])
        flat = score.permute(0, 2, 1).reshape(B, -1)  # index = (lo + p) * D + d
        k = min(top, flat.shape[1])
        s, i = flat.topk(k, dim=1)
        best_s = torch.cat([best_s, s], 1)
        best_i = torch.cat([best_i, i + lo * D], 1)
        keep_s, keep = best_s.topk(min(top, best_s.shape[1]), dim=1)
        best_s, best_i = keep_s, torch.gather(best_i, 1, keep)
    return best_s, best_i // D, best_i % D
