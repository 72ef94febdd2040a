"""EMReady's target maps (He, Li & Huang 2023): the map a deposited model is simulated into, for training pairs.

ρ(x) = Σᵢ θ Zᵢ exp(−k |x − rᵢ|²), k = (π / (1.2 + 0.6 R))², θ = (k / π)^{3/2} (per Å³; R the target resolution in
Å). θ normalises each Gaussian, so atom i carries exactly Zᵢ; as a Gaussian of standard deviation σ,
k = 1 / (2σ²), i.e. σ = (1.2 + 0.6 R) / (π √2). The map is sampled at voxel centres (not integrated over voxels).
"""

from __future__ import annotations

import math

import torch

from cryopipe.imaging.project import atoms_to_map


def emready_k(resolution: float) -> float:
    """k (Å⁻²) of EMReady's target formula at `resolution` Å."""
    return (math.pi / (1.2 + 0.6 * resolution)) ** 2


def emready_sigma(resolution: float) -> float:
    """The Gaussian standard deviation (Å) that EMReady's k stands for: exp(−k d²) = exp(−d² / 2σ²)."""
    return 1.0 / math.sqrt(2.0 * emready_k(resolution))


def target_map(
    coords: torch.Tensor, atomic_numbers: torch.Tensor, *, resolution: float, voxel_size: float, size: int
) -> torch.Tensor:
    """ρ (Å⁻³) on a size³ grid (z, y, x) of `voxel_size` Å around the box centre (voxel size//2), atoms (N, 3) in Å
    from the centre, weighted by their atomic numbers (N,)."""
    vol = atoms_to_map(
        coords, atomic_numbers, pixel_size=voxel_size, size=size, sigma=emready_sigma(resolution), point=True
    )
    return vol / voxel_size**3
