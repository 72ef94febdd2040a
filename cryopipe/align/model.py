"""The deformable reference the images are fitted with: r + z·o + Σ a_k m_k, rotated, projected, shifted.

z ∈ [0, 1] places the fit between two conformations: the reference r (z = 0) and, when a second
structure is given (`align.second_reference`, or the re-centring pass), r + o where o is the part of
(target − r) that the fitted modes cannot express (`second_reference_offset`), so r + o + Σ c_k m_k is
the target itself for its least-squares amplitudes c. o is orthogonal to the modes, so z and the
amplitudes never trade against each other, and an image's amplitudes mean the same at any z. The search
starts every image from z = 0 and z = 1; the refinement then moves z continuously with the amplitudes,
so a state between the two structures (r + t·(o + Σ c_k m_k)) is represented exactly, not by the modes alone.

Rendering uses the simulator's projector (`project_atoms`), so the fit and the simulated data
share one image model. For the coarse stages the atoms are merged into one Gaussian bead per
residue: weight = the residue's total weight, centre = its weighted centroid, σ² = σ_atom² +
the residue's spread²/3, modes = the weighted mean of its atoms' displacements. At low
resolution (≥ 8 Å) that is the same density for ~15× fewer Gaussians.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from cryopipe.imaging.project import project_atoms


@dataclass
class DeformableReference:
    coords: torch.Tensor  # (N, 3) Å
    weights: torch.Tensor  # (N,)
    modes: torch.Tensor  # (M, N, 3), amplitude unit Å RMSD of the full-atom model
    sigma: torch.Tensor | float  # Å, scalar or (N,)
    offset: torch.Tensor | None = None  # (N, 3) Å: the second starting conformation is coords + offset

    def to(self, device, dtype=torch.float32) -> DeformableReference:
        sig = self.sigma.to(device, dtype) if isinstance(self.sigma, torch.Tensor) else self.sigma
        off = None if self.offset is None else self.offset.to(device, dtype)
        return DeformableReference(
            self.coords.to(device, dtype), self.weights.to(device, dtype), self.modes.to(device, dtype), sig, off
        )

    def render(
        self,
        amplitudes: torch.Tensor,
        rotations: torch.Tensor,
        origins: torch.Tensor | None,
        *,
        size: int,
        pixel_size: float,
        second: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Images (B, size, size) for amplitudes (B, M), RELION matrices (B, 3, 3), origins Å (B, 2), and the
        position z (B,) of each between the reference (0) and the second reference (1); None: all 0."""
        xyz = self.coords + torch.einsum("bk,knd->bnd", amplitudes, self.modes)
        if second is not None and self.offset is not None:
            xyz = xyz + second.to(xyz.dtype)[:, None, None] * self.offset
        return project_atoms(xyz, self.weights, rotations, origins, pixel_size=pixel_size, size=size, sigma=self.sigma)


def _tensor_or_none(x):
    return None if x is None else torch.as_tensor(x)


def second_reference_offset(displacement: np.ndarray, modes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(offset o (N, 3), amplitudes c (M,)) with displacement = o + Σ c_k m_k, c least squares."""
    from cryopipe.structure.modes import deform, project_displacement

    c = project_displacement(displacement, modes)
    return displacement - deform(np.zeros_like(displacement), modes, c), c


def full_atom_reference(
    coords: np.ndarray, weights: np.ndarray, modes: np.ndarray, sigma: float, offset: np.ndarray | None = None
) -> DeformableReference:
    return DeformableReference(
        torch.as_tensor(coords), torch.as_tensor(weights), torch.as_tensor(modes), float(sigma), _tensor_or_none(offset)
    )


def heavy_atom_reference(
    coords: np.ndarray, weights: np.ndarray, modes: np.ndarray, elements, sigma: float, offset: np.ndarray | None = None
) -> DeformableReference:
    """All atoms but hydrogens, each hydrogen's weight moved onto its nearest heavy atom: the same
    density at ≥ 3 Å resolution for about half the Gaussians (what the fine stage renders)."""
    from scipy.spatial import cKDTree

    is_h = np.char.upper(np.asarray(elements, dtype=str)) == "H"
    if not is_h.any() or is_h.all():
        return full_atom_reference(coords, weights, modes, sigma, offset)
    heavy = np.nonzero(~is_h)[0]
    _, nearest = cKDTree(coords[heavy]).query(coords[is_h])
    w = weights[heavy] + np.bincount(nearest, weights=weights[is_h], minlength=len(heavy))
    return DeformableReference(
        torch.as_tensor(coords[heavy]),
        torch.as_tensor(w),
        torch.as_tensor(modes[:, heavy]),
        float(sigma),
        None if offset is None else torch.as_tensor(offset[heavy]),
    )


def spatial_groups(coords: np.ndarray, size: float = 4.0) -> np.ndarray:
    """Group numbers 1.. (N,) of points binned into cubes of `size` Å: residue-sized beads for a model without
    residues (a map's pseudoatoms), deterministic and in order of first appearance."""
    cells = np.floor(np.asarray(coords) / size).astype(np.int64)
    _, first, group = np.unique(cells, axis=0, return_index=True, return_inverse=True)
    rank = np.empty(len(first), dtype=np.int64)
    rank[np.argsort(first)] = np.arange(len(first))
    return rank[group.reshape(-1)] + 1


def residue_beads(
    coords: np.ndarray,
    weights: np.ndarray,
    modes: np.ndarray,
    residue_keys,
    sigma: float,
    offset: np.ndarray | None = None,
) -> DeformableReference:
    """One Gaussian bead per residue (see module docstring)."""
    _, group = np.unique(np.asarray(residue_keys), return_inverse=True)
    n = group.max() + 1
    w = np.bincount(group, weights=weights, minlength=n)
    centre = (
        np.stack([np.bincount(group, weights=weights * coords[:, d], minlength=n) for d in range(3)], 1) / w[:, None]
    )
    spread = np.bincount(group, weights=weights * ((coords - centre[group]) ** 2).sum(1), minlength=n) / w

    def bead_mean(field: np.ndarray) -> np.ndarray:  # weighted mean of a displacement field over each residue
        return (
            np.stack([np.bincount(group, weights=weights * field[:, d], minlength=n) for d in range(3)], 1) / w[:, None]
        )

    return DeformableReference(
        torch.as_tensor(centre),
        torch.as_tensor(w),
        torch.as_tensor(np.stack([bead_mean(m) for m in modes])),
        torch.as_tensor(np.sqrt(sigma**2 + spread / 3.0)),
        None if offset is None else torch.as_tensor(bead_mean(offset)),
    )
