"""Normal modes of the reference (ProDy ANM on Cα, or RTB), extended to all atoms.

Amplitude unit: every stored mode m_k is an (N, 3) field over *all* atoms, unit-norm as a
3N-vector and then multiplied by √N, so displacing by amplitude a_k moves the atoms by exactly
|a_k| Å RMSD. A deformation is r + Σ_k a_k m_k (`deform`).
Mode numbers count the six rigid-body modes, so the first non-rigid mode is mode 7 (HEMNMA).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from cryopipe.errors import CryopipeError


@dataclass
class Modes:
    vectors: np.ndarray  # (M, N, 3), amplitude 1 = 1 Å RMSD
    numbers: np.ndarray  # (M,) mode numbers, 7 = first non-rigid
    eigenvalues: np.ndarray  # (M,)

    def select(self, numbers) -> np.ndarray:
        idx = []
        for n in numbers:
            hit = np.nonzero(self.numbers == n)[0]
            if not len(hit):
                raise CryopipeError(
                    f"mode {n} not computed (have {self.numbers.min()}-{self.numbers.max()}); raise modes.n_modes"
                )
            idx.append(hit[0])
        return self.vectors[idx]

    def save(self, path: str | os.PathLike) -> None:
        from cryopipe.io.atomic import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, vectors=self.vectors, numbers=self.numbers, eigenvalues=self.eigenvalues)

    @classmethod
    def load(cls, path: str | os.PathLike) -> Modes:
        if not os.path.isfile(path):
            raise CryopipeError(f"{path}: modes file not found")
        with np.load(path) as z:
            return cls(z["vectors"], z["numbers"], z["eigenvalues"])


def rmsd_normalise(vectors: np.ndarray) -> np.ndarray:
    """(M, N, 3) -> same directions, scaled so amplitude 1 gives 1 Å RMSD over the N atoms."""
    n = vectors.shape[1]
    norms = np.linalg.norm(vectors.reshape(len(vectors), -1), axis=1)
    return vectors / norms[:, None, None] * np.sqrt(n)


def compute_modes(
    selection,
    method: str = "anm",
    n_modes: int = 10,
    cutoff: float = 15.0,
    gamma: float = 1.0,
    rtb_block_size: int = 10,
) -> tuple[Modes, object, object]:
    """Modes of a ProDy atom selection; returns (Modes over all atoms, ProDy model, Cα selection)."""
    import prody

    prody.confProDy(verbosity="none")
    ca = selection.select("name CA")
    if ca is None or ca.numAtoms() < 3:
        raise CryopipeError("reference: fewer than 3 Cα atoms; cannot build the elastic network")
    if method == "anm":
        model = prody.ANM("reference")
        model.buildHessian(ca, cutoff=cutoff, gamma=gamma)
    elif method == "rtb":
        # Rigid blocks of `rtb_block_size` consecutive residues, on the Cα network like ANM.
        model = prody.RTB("reference")
        blocks = (ca.getResnums() - ca.getResnums().min()) // rtb_block_size + 1
        model.buildHessian(ca.getCoords(), blocks, cutoff=cutoff, gamma=gamma)
    else:
        raise CryopipeError(f"config key 'modes.method': unknown method '{method}' (anm or rtb)")
    model.calcModes(n_modes=n_modes, zeros=False)
    extended, _ = prody.extendModel(model, ca, selection, norm=True)
    vectors = extended.getArray().T.reshape(-1, selection.numAtoms(), 3)
    eig = model.getEigvals()
    modes = Modes(rmsd_normalise(vectors), np.arange(7, 7 + len(vectors)), np.asarray(eig))
    return modes, model, ca


def deform(coords: np.ndarray, modes: np.ndarray, amplitudes: np.ndarray) -> np.ndarray:
    """Deformed coordinates: coords (N, 3) + Σ_k a_k m_k for amplitudes (..., M) -> (..., N, 3)."""
    return coords + np.einsum("...k,knd->...nd", amplitudes, modes)


def project_displacement(displacement: np.ndarray, modes: np.ndarray) -> np.ndarray:
    """Least-squares amplitudes (M,) whose deformation best reproduces `displacement` (N, 3)."""
    A = modes.reshape(len(modes), -1).T
    amps, *_ = np.linalg.lstsq(A, displacement.reshape(-1), rcond=None)
    return amps


def overlap(displacement: np.ndarray, mode: np.ndarray) -> float:
    """|cos| between a displacement field and a mode, both (N, 3)."""
    d, m = displacement.reshape(-1), mode.reshape(-1)
    return float(abs(d @ m) / (np.linalg.norm(d) * np.linalg.norm(m)))
