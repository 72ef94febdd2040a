"""A second structure of the same molecule, as a displacement field on the reference's atoms.

The target (e.g. closed AdK 1AKE beside the open 4AKE reference) is matched to the reference atom by
atom (chain, residue number, atom name; residue number and name alone when the chains are named
differently), superposed on the matched atoms (Kabsch, least squares) and turned into one
displacement per reference atom: target − reference where an atom matches; for an atom without
partner (hydrogens absent from a crystal structure, unresolved side chains) the displacement of the
nearest matched atom of the reference, so it rides along with its neighbours. The reference moved by
t × displacement is the Cartesian interpolation between the two real structures (t = 1: the target).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from cryopipe.errors import CryopipeError


@dataclass
class TargetDisplacement:
    displacement: np.ndarray  # (N, 3) Å, one per reference atom
    matched: np.ndarray  # (K,) reference atom indices with a partner in the target
    rmsd: float  # Å over the matched atoms after superposition


def kabsch(moving: np.ndarray, fixed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotation R (3, 3) and translation t (3,) minimising Σ |R·moving_i + t − fixed_i|² (a proper rotation)."""
    mc, fc = moving.mean(0), fixed.mean(0)
    U, _, Vt = np.linalg.svd((moving - mc).T @ (fixed - fc))
    d = np.sign(np.linalg.det(Vt.T @ U.T))
    R = Vt.T @ np.diag([1.0, 1.0, d]) @ U.T
    return R, fc - R @ mc


def match_atoms(ref_keys: list[tuple], target_keys: list[tuple]) -> tuple[np.ndarray, np.ndarray]:
    """Index pairs (reference, target) of atoms with the same key; each reference atom pairs once (with the
    first target atom of its key: e.g. chain A of a dimer when the chains' names are not compared)."""
    index = {k: i for i, k in enumerate(ref_keys)}
    pairs, taken = [], set()
    for j, k in enumerate(target_keys):
        i = index.get(k)
        if i is not None and i not in taken:
            pairs.append((i, j))
            taken.add(i)
    if not pairs:
        return np.zeros(0, dtype=int), np.zeros(0, dtype=int)
    i, j = np.array(pairs).T
    return i, j


def target_displacement(
    atoms, target_path: str, selection: str, *, key: str = "conformations.morph.target"
) -> TargetDisplacement:
    """Displacement (reference atoms → superposed target) for the reference `atoms` (cryopipe.io.structure.Atoms)."""
    from scipy.spatial import cKDTree

    from cryopipe.io.structure import parse_structure

    tgt = parse_structure(target_path, selection)
    coords = tgt.getCoords().astype(np.float64)
    names, resnums, chains = tgt.getNames(), tgt.getResnums(), tgt.getChids()
    i, j = match_atoms(list(zip(atoms.chains, atoms.resnums, atoms.names)), list(zip(chains, resnums, names)))
    if len(i) < 10:  # the same molecule with other chain names
        i, j = match_atoms(list(zip(atoms.resnums, atoms.names)), list(zip(resnums, names)))
    if len(i) < 10:
        raise CryopipeError(
            f"config key '{key}': {target_path} shares fewer than 10 atoms (residue number + atom name) "
            "with the reference"
        )
    R, t = kabsch(coords[j], atoms.coords[i])
    disp = np.zeros_like(atoms.coords)
    disp[i] = coords[j] @ R.T + t - atoms.coords[i]
    rest = np.setdiff1d(np.arange(len(atoms.coords)), i)
    if len(rest):
        _, nearest = cKDTree(atoms.coords[i]).query(atoms.coords[rest])
        disp[rest] = disp[i][nearest]
    rmsd = float(np.sqrt((disp[i] ** 2).sum(1).mean()))
    return TargetDisplacement(disp, i, rmsd)


def cumulative_overlap(displacement: np.ndarray, modes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-mode |overlap| with the displacement (M,) and the order of the modes by it (largest first)."""
    d = displacement.reshape(-1)
    V = modes.reshape(len(modes), -1)
    ov = np.abs(V @ d) / (np.linalg.norm(V, axis=1) * np.linalg.norm(d))
    return ov, np.argsort(-ov, kind="stable")
