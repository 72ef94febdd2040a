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
        particles, optics = _optics_from_relion30(path, particles, pixel_size)
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


def _optics_from_relion30(path: Path, particles: pd.DataFrame, pixel_size: float | None):
    if "rlnImagePixelSize" in particles.columns:
        apix = float(particles["rlnImagePixelSize"].iloc[0])
    elif {"rlnDetectorPixelSize", "rlnMagnification"} <= set(particles.columns):
        apix = float(particles["rlnDetectorPixelSize"].iloc[0] * 1e4 / particles["rlnMagnification"].iloc[0])
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
        values[col] = float(particles[col].iloc[0])
    optics = make_optics(
        apix,
        _image_size_from_stack(path, particles),
        values["rlnVoltage"],
        values["rlnSphericalAberration"],
        values["rlnAmplitudeContrast"],
    )
    for axis in ("X", "Y"):
        if f"rlnOrigin{axis}" in particles.columns:
            particles[f"rlnOrigin{axis}Angst"] = particles.pop(f"rlnOrigin{axis}") * apix
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
    from cryopipe.io.mrc import open_stack

    if "rlnImageName" not in particles.columns:
        raise CryopipeError(f"{path}: particle table lacks column rlnImageName")
    _, stack = split_image_name(particles["rlnImageName"].iloc[0])
    return int(open_stack(resolve_stack_path(stack, path)).shape[-1])


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
    """Group particles by stack: [(stack path, particle rows, indices in stack)], checking bounds."""
    from cryopipe.io.mrc import open_stack

    parsed = [split_image_name(n) for n in particles["rlnImageName"]]
    idx = np.array([p[0] for p in parsed])
    stacks = np.array([p[1] for p in parsed])
    out = []
    for stack in pd.unique(stacks):
        rows = np.nonzero(stacks == stack)[0]
        path = resolve_stack_path(stack, star_path)
        n = open_stack(path).shape[0]
        bad = idx[rows][(idx[rows] < 0) | (idx[rows] >= n)]
        if len(bad):
            raise CryopipeError(
                f"{star_path}: rlnImageName refers to image {bad[0] + 1} of {path}, which holds {n} images"
            )
        out.append((path, rows, idx[rows]))
    return out


def load_images(particles: pd.DataFrame, star_path: str | os.PathLike, rows: np.ndarray | None = None) -> np.ndarray:
    """Images (n, L, L) float32 of the given particle rows (default: all), in row order."""
    from cryopipe.io.mrc import open_stack

    sub = particles if rows is None else particles.iloc[rows]
    groups = stack_index(sub, star_path)
    first = open_stack(groups[0][0])
    out = np.empty((len(sub), first.shape[-2], first.shape[-1]), dtype=np.float32)
    for path, r, i in groups:
        out[r] = open_stack(path)[i]
    return out
