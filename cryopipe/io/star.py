"""RELION STAR files: read 3.0 or 3.1, always write 3.1 (optics + particles tables).

In memory a particle set is (particles, optics): two DataFrames with RELION 3.1 column names
(no leading underscore). Image names are `index@path`; relative paths resolve against the
current directory first (RELION's project-directory rule) and then the STAR file's folder.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from cryopipe.errors import CryopipeError
from cryopipe.io.atomic import atomic_path

# Column groups of a particle table (RELION 3.1 names), defined once.
EULER = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]  # ZYZ, degrees
ORIGIN = ["rlnOriginXAngst", "rlnOriginYAngst"]  # Å; the content moved by −origin (RELION)
POSE = EULER + ORIGIN
DEFOCUS = ["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]  # Å, Å, degrees
REQUIRED_OPTICS = ["rlnImagePixelSize", "rlnImageSize", "rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"]


def make_optics(
    pixel_size: float, image_size: int, voltage: float, cs: float, amplitude_contrast: float, name: str = "opticsGroup1"
) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "rlnOpticsGroup": 1,
                "rlnOpticsGroupName": name,
                "rlnImagePixelSize": float(pixel_size),
                "rlnImageSize": int(image_size),
                "rlnImageDimensionality": 2,
                "rlnVoltage": float(voltage),
                "rlnSphericalAberration": float(cs),
                "rlnAmplitudeContrast": float(amplitude_contrast),
            }
        ]
    )


def image_names(stack_path: str | os.PathLike, n: int) -> list[str]:
    return [f"{i + 1:06d}@{stack_path}" for i in range(n)]


def write_star(path: str | os.PathLike, particles: pd.DataFrame, optics: pd.DataFrame) -> None:
    """A RELION 3.1 particle STAR. Particles with a CTF get rlnPhaseShift (0° unless given): cryoDRGN 4.3.1's
    `parse_ctf_star` stores NaN for a missing one, and its maps come out NaN."""
    import starfile

    if "rlnDefocusU" in particles.columns and "rlnPhaseShift" not in particles.columns:
        if "rlnPhaseShift" not in optics.columns:
            particles = particles.assign(rlnPhaseShift=0.0)
    with atomic_path(path) as tmp:
        starfile.write({"optics": optics, "particles": particles}, tmp, overwrite=True)


def read_star(path: str | os.PathLike, pixel_size: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read a RELION 3.0 or 3.1 particle STAR file into 3.1 form (particles, optics).

    A 3.0 file has no optics table: optics are taken from per-particle columns, the pixel size
    from rlnImagePixelSize, rlnDetectorPixelSize·10⁴/rlnMagnification or `pixel_size`, and
    rlnOriginX/Y (pixels) become rlnOriginX/YAngst.
    """
    import starfile

    path = Path(path)
    if not path.is_file():
        raise CryopipeError(f"{path}: STAR file not found")
    try:
        blocks = starfile.read(path, always_dict=True)
    except Exception as e:
        raise CryopipeError(f"{path}: cannot parse STAR file ({e})") from None
    if "particles" in blocks and "optics" in blocks:
        particles, optics = blocks["particles"].copy(), blocks["optics"].copy()
    else:
        tables = [v for v in blocks.values() if isinstance(v, pd.DataFrame)]
        if not tables:
            raise CryopipeError(f"{path}: no particle table found")
        particles = tables[-1].copy()
        _check_not_empty(path, particles)
        particles, optics = _optics_from_relion30(path, particles, pixel_size)
    _check_not_empty(path, particles)
    if len(optics) == 0:
        raise CryopipeError(f"{path}: the optics table has no rows")
    if "rlnImageName" not in particles.columns:
        raise CryopipeError(f"{path}: particle table lacks column rlnImageName")
    for col in REQUIRED_OPTICS:
        if col not in optics.columns:
            if col == "rlnImageSize":
                optics[col] = _image_size_from_stack(path, particles)
            elif col == "rlnImagePixelSize" and pixel_size is not None:
                optics[col] = float(pixel_size)
            else:
                raise CryopipeError(f"{path}: optics table lacks column {col}")
    if "rlnOpticsGroup" not in particles.columns:
        particles["rlnOpticsGroup"] = 1
    particles = particles.reset_index(drop=True)
    return particles, optics


def _check_not_empty(path: Path, particles: pd.DataFrame) -> None:
    if len(particles) == 0:
        raise CryopipeError(f"{path}: the particle table has no rows (no particles to process)")


def _optics_from_relion30(path: Path, particles: pd.DataFrame, pixel_size: float | None):
    from cryopipe.io.checks import numeric_values

    def first(col: str) -> float:  # every row parsed (an error names the row), the first one used
        return float(numeric_values(particles, col, path)[0])

    if "rlnImagePixelSize" in particles.columns:
        apix = first("rlnImagePixelSize")
    elif {"rlnDetectorPixelSize", "rlnMagnification"} <= set(particles.columns):
        apix = first("rlnDetectorPixelSize") * 1e4 / first("rlnMagnification")
    elif pixel_size is not None:
        apix = float(pixel_size)
    else:
        raise CryopipeError(
            f"{path}: RELION 3.0 file without pixel size; set the pixel size in the config (data.import.pixel_size)"
        )
    values = {}
    for col in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast"):
        if col not in particles.columns:
            raise CryopipeError(f"{path}: particle table lacks column {col}")
        values[col] = first(col)
    optics = make_optics(
        apix,
        _image_size_from_stack(path, particles),
        values["rlnVoltage"],
        values["rlnSphericalAberration"],
        values["rlnAmplitudeContrast"],
    )
    for axis in ("X", "Y"):
        if f"rlnOrigin{axis}" in particles.columns:
            particles[f"rlnOrigin{axis}Angst"] = numeric_values(particles, f"rlnOrigin{axis}", path) * apix
            particles = particles.drop(columns=[f"rlnOrigin{axis}"])
    drop = [
        c
        for c in (
            "rlnVoltage",
            "rlnSphericalAberration",
            "rlnAmplitudeContrast",
            "rlnMagnification",
            "rlnDetectorPixelSize",
            "rlnImagePixelSize",
        )
        if c in particles.columns
    ]
    particles = particles.drop(columns=drop)
    particles["rlnOpticsGroup"] = 1
    return particles, optics


def _image_size_from_stack(path: Path, particles: pd.DataFrame) -> int:
    """rlnImageSize from the header of the first particle's stack (the data are not read)."""
    from cryopipe.io.mrc import read_stack_header

    if "rlnImageName" not in particles.columns:
        raise CryopipeError(f"{path}: particle table lacks column rlnImageName")
    name = str(particles["rlnImageName"].iloc[0])
    if "@" not in name:
        raise CryopipeError(
            f"{path}: column rlnImageName, particle row 1: {name!r} is not index@stack (e.g. 000001@particles.mrcs)"
        )
    _, stack = name.split("@", 1)
    return int(read_stack_header(resolve_stack_path(stack, path)).shape[-1])


def split_image_name(name: str) -> tuple[int, str]:
    """'12@dir/stack.mrcs' -> (11, 'dir/stack.mrcs') (0-based index)."""
    idx, _, stack = str(name).partition("@")
    if not stack:
        return 0, idx
    return int(idx) - 1, stack


def resolve_stack_path(stack: str, star_path: str | os.PathLike) -> Path:
    p = Path(stack)
    if p.is_absolute() or p.exists():
        return p
    alt = Path(star_path).parent / stack
    if alt.exists():
        return alt
    raise CryopipeError(
        f"{star_path}: image stack {stack} not found (relative to the current directory or the STAR file)"
    )


def stack_index(particles: pd.DataFrame, star_path: str | os.PathLike) -> list[tuple[Path, np.ndarray, np.ndarray]]:
    """Group particles by stack: [(stack path, particle rows, indices in stack)], checking bounds (headers only)."""
    from cryopipe.io.mrc import read_stack_header

    parsed = [split_image_name(n) for n in particles["rlnImageName"]]
    idx = np.array([p[0] for p in parsed], dtype=np.int64)
    stacks = np.array([p[1] for p in parsed])
    out = []
    for stack in pd.unique(stacks):
        rows = np.nonzero(stacks == stack)[0]
        path = resolve_stack_path(stack, star_path)
        n = read_stack_header(path).shape[0]
        bad = idx[rows][(idx[rows] < 0) | (idx[rows] >= n)]
        if len(bad):
            raise CryopipeError(
                f"{star_path}: rlnImageName refers to image {bad[0] + 1} of {path}, which holds {n} images"
            )
        out.append((path, rows, idx[rows]))
    return out


class ParticleImages:
    """The images of a STAR's particles as a read-on-demand array: `len`, and `[rows]` (a slice or indices) →
    (k, L, L) float32 in row order. Nothing is held but the index, so memory does not grow with the set."""

    def __init__(self, particles: pd.DataFrame, star_path: str | os.PathLike):
        from cryopipe.io.mrc import StackReader

        groups = stack_index(particles, star_path)
        self.readers = [StackReader(path) for path, _, _ in groups]
        self.stack = np.empty(len(particles), dtype=np.int64)  # which reader holds each row ...
        self.index = np.empty(len(particles), dtype=np.int64)  # ... and where in its stack
        for g, (_, rows, idx) in enumerate(groups):
            self.stack[rows], self.index[rows] = g, idx
        self.shape = (len(particles), *self.readers[0].shape[1:])

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows) -> np.ndarray:
        rows = np.arange(len(self))[rows] if isinstance(rows, slice) else np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.shape[1:]), dtype=np.float32)
        for g in np.unique(self.stack[rows]):
            sel = np.nonzero(self.stack[rows] == g)[0]
            out[sel] = self.readers[g].read(self.index[rows[sel]])
        return out

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        data = self[:]
        return data if dtype is None else data.astype(dtype)


def load_images(particles: pd.DataFrame, star_path: str | os.PathLike, rows: np.ndarray | None = None) -> np.ndarray:
    """Images (n, L, L) float32 of the given particle rows (default: all), in row order."""
    sub = particles if rows is None else particles.iloc[rows]
    return ParticleImages(sub, star_path)[:]
