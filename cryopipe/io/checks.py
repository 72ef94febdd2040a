"""Every check of a particle set (STAR + MRCS stacks) in one place, before any work or output.

`check_particle_set` is called by `import` and by `preprocess`. It reads the STAR's tables and the
stacks' headers only (never the image data), with vectorised pandas/numpy, so it stays cheap for
10⁶ particles. Each problem is a CryopipeError naming the file and the column and 1-based data row
(or the stack and its sizes), which the CLI prints as one line (exit status 2). Decisions:

- **Numbers**: every column the pipeline reads must parse as a finite number; the error names the
  column, the row and the offending value.
- **Box**: images must be square, the same size in every stack and in `rlnImageSize`, and **even**:
  RELION extracts even boxes only and the pipeline's centre convention (pixel L//2) and Fourier crop
  assume one; an odd box is refused with the command that re-windows it.
- **Stacks**: the file size must be what the header says (1024 + extended header + nx·ny·nz·bytes);
  a truncated (or over-long) stack is refused naming both sizes.
- **Defocus** (RELION: Å, positive = underfocus): a negative value is refused; a whole set below
  100 Å (0.01 µm) looks like µm and is refused; a value above 100,000 Å (10 µm) is refused as absurd.
- **Optics**: pixel size > 0, 0 < voltage ≤ 1000 kV, |Cs| ≤ 20 mm, amplitude contrast in [0, 1]; one
  optics group.
- **Pixel size**: the STAR's rlnImagePixelSize wins (as in RELION); a stack header that disagrees by
  more than 1% prints one warning line on stderr (a header of 0 or 1 Å counts as unset: no warning).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from cryopipe.errors import CryopipeError
from cryopipe.io.star import DEFOCUS, EULER, ORIGIN, REQUIRED_OPTICS, resolve_stack_path

# Particle-table columns the pipeline reads as numbers (when present).
PARTICLE_NUMERIC = [*DEFOCUS, "rlnPhaseShift", *EULER, *ORIGIN, "rlnRandomSubset", "rlnOpticsGroup"]
# Optics-table columns the pipeline reads as numbers (when present).
OPTICS_NUMERIC = ["rlnOpticsGroup", *REQUIRED_OPTICS, "rlnPhaseShift", "rlnCtfDataArePhaseFlipped"]
INTEGER = {"rlnRandomSubset", "rlnOpticsGroup", "rlnImageSize", "rlnCtfDataArePhaseFlipped"}

DEFOCUS_MIN_MAX = 100.0  # Å: a set whose largest defocus is below this is in µm (or nm), not Å
DEFOCUS_MAX = 100_000.0  # Å (10 µm): above this a defocus is not plausible
PIXEL_SIZE_TOLERANCE = 0.01  # relative STAR vs header disagreement that is worth a warning


def numeric_values(table: pd.DataFrame, col: str, star_path: str | os.PathLike, kind: str = "particle") -> np.ndarray:
    """Column `col` of `table` as finite float64, or a CryopipeError naming the column, row and value."""
    raw = table[col]
    values = pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    bad = np.nonzero(~np.isfinite(values))[0]
    if len(bad):
        i = int(bad[0])
        value = raw.iloc[i]
        if isinstance(value, str) and np.isnan(values[i]):
            what = f"{value!r} is not a number"
        elif pd.isna(value):
            what = "the value is missing (empty or NaN)"
        else:
            what = f"{value if isinstance(value, str) else float(value)!r} is not finite"
        more = f" ({len(bad) - 1} more rows like it)" if len(bad) > 1 else ""
        raise CryopipeError(f"{star_path}: column {col}, {kind} row {i + 1}: {what}{more}")
    if col in INTEGER:
        frac = np.nonzero(values != np.round(values))[0]
        if len(frac):
            i = int(frac[0])
            raise CryopipeError(f"{star_path}: column {col}, {kind} row {i + 1}: {raw.iloc[i]!r} is not a whole number")
    return values


def _refuse_rows(star_path, col: str, values: np.ndarray, bad: np.ndarray, why: str, kind: str = "particle"):
    rows = np.nonzero(bad)[0]
    if len(rows):
        i = int(rows[0])
        more = f" ({len(rows) - 1} more rows like it)" if len(rows) > 1 else ""
        raise CryopipeError(f"{star_path}: column {col}, {kind} row {i + 1}: {values[i]:g} {why}{more}")


def _parse_numeric(particles: pd.DataFrame, optics: pd.DataFrame, star_path) -> None:
    for col in PARTICLE_NUMERIC:
        if col in particles.columns:
            v = numeric_values(particles, col, star_path)
            particles[col] = v.astype(np.int64) if col in INTEGER else v
    for col in OPTICS_NUMERIC:
        if col in optics.columns:
            v = numeric_values(optics, col, star_path, kind="optics")
            optics[col] = v.astype(np.int64) if col in INTEGER else v


def _check_optics(particles: pd.DataFrame, optics: pd.DataFrame, star_path) -> None:
    if len(optics) > 1:
        raise CryopipeError(f"{star_path}: {len(optics)} optics groups; only one is supported")
    checks = [
        ("rlnImagePixelSize", lambda v: v <= 0, "Å/px: the pixel size must be positive"),
        ("rlnImageSize", lambda v: v < 2, "px: the image size must be at least 2"),
        ("rlnVoltage", lambda v: v <= 0, "kV: the voltage must be positive"),
        ("rlnVoltage", lambda v: v > 1000, "kV: RELION's voltage is in kV (e.g. 300), not V"),
        ("rlnSphericalAberration", lambda v: np.abs(v) > 20, "mm: RELION's Cs is in mm (e.g. 2.7)"),
        ("rlnAmplitudeContrast", lambda v: (v < 0) | (v > 1), "is outside [0, 1] (a fraction, e.g. 0.1, not %)"),
    ]
    for col, test, why in checks:
        v = optics[col].to_numpy(dtype=np.float64)
        _refuse_rows(star_path, col, v, test(v), why, kind="optics")
    if "rlnOpticsGroup" in particles.columns and "rlnOpticsGroup" in optics.columns:
        known = optics["rlnOpticsGroup"].to_numpy()
        g = particles["rlnOpticsGroup"].to_numpy(dtype=np.float64)
        _refuse_rows(
            star_path,
            "rlnOpticsGroup",
            g,
            ~np.isin(g, known),
            f"names no optics group (the optics table has {known[0]})",
        )


def _check_particle_values(particles: pd.DataFrame, optics: pd.DataFrame, star_path) -> None:
    if "rlnDefocusU" not in particles.columns:
        raise CryopipeError(f"{star_path}: particle table lacks column rlnDefocusU")
    for col in ("rlnDefocusU", "rlnDefocusV"):
        if col not in particles.columns:
            continue
        v = particles[col].to_numpy(dtype=np.float64)
        _refuse_rows(star_path, col, v, v < 0, "Å is negative: RELION's defocus is positive for underfocus, in Å")
        _refuse_rows(
            star_path,
            col,
            v,
            v > DEFOCUS_MAX,
            f"Å is implausible (above {DEFOCUS_MAX:,.0f} Å = 10 µm): RELION's defocus is in Å, e.g. 15000 for 1.5 µm",
        )
    dmax = max(float(particles[c].max()) for c in ("rlnDefocusU", "rlnDefocusV") if c in particles.columns)
    if dmax < DEFOCUS_MIN_MAX:
        raise CryopipeError(
            f"{star_path}: column rlnDefocusU: every defocus is below {DEFOCUS_MIN_MAX:g} Å (largest {dmax:g}): "
            "RELION's defocus is in Å (1.5 µm = 15000); if these are µm, multiply them by 10,000"
        )
    if "rlnRandomSubset" in particles.columns:
        v = particles["rlnRandomSubset"].to_numpy(dtype=np.float64)
        _refuse_rows(star_path, "rlnRandomSubset", v, ~np.isin(v, (1, 2)), "is not a half set (1 or 2)")
    half = float(optics["rlnImageSize"].iloc[0]) * float(optics["rlnImagePixelSize"].iloc[0]) / 2
    for col in ORIGIN:
        if col in particles.columns:
            v = particles[col].to_numpy(dtype=np.float64)
            _refuse_rows(
                star_path,
                col,
                v,
                np.abs(v) > half,
                f"Å puts the particle outside its image (half the box is {half:g} Å); RELION 3.1's origins are in Å",
            )


def _parse_image_names(particles: pd.DataFrame, star_path) -> tuple[np.ndarray, np.ndarray]:
    """(0-based index in stack, stack string) per particle; a malformed name names its row."""
    names = particles["rlnImageName"].astype(str)
    parts = names.str.partition("@")
    idx_str, at, stack = parts[0].str.strip(), parts[1], parts[2].str.strip()
    number = pd.to_numeric(idx_str, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan)
    whole = np.isfinite(number) & (number == np.round(number)) & (number >= 1)
    idx = np.where(whole, number, 1).astype(np.int64)
    bad = (at != "@").to_numpy() | (stack == "").to_numpy() | ~whole
    rows = np.nonzero(bad)[0]
    if len(rows):
        i = int(rows[0])
        more = f" ({len(rows) - 1} more rows like it)" if len(rows) > 1 else ""
        raise CryopipeError(
            f"{star_path}: column rlnImageName, particle row {i + 1}: {names.iloc[i]!r} is not index@stack "
            f"with an index ≥ 1 (e.g. 000001@particles.mrcs){more}"
        )
    return idx - 1, stack.to_numpy(dtype=object)


def _check_stacks(
    particles: pd.DataFrame, optics: pd.DataFrame, star_path, allow_subset: bool, idx: np.ndarray, stacks: np.ndarray
) -> None:
    from cryopipe.io.mrc import read_stack_header

    L = int(optics["rlnImageSize"].iloc[0])
    apix = float(optics["rlnImagePixelSize"].iloc[0])
    codes, uniques = pd.factorize(stacks)
    paths = [resolve_stack_path(s, star_path) for s in uniques]
    # The same file named two ways is one stack.
    file_code = pd.factorize(pd.Series([os.path.realpath(p) for p in paths]))[0][codes]
    dup = pd.DataFrame({"f": file_code, "i": idx}).duplicated(keep=False).to_numpy()
    if dup.any():
        rows = np.nonzero(dup)[0]
        first = rows[(file_code[rows] == file_code[rows[0]]) & (idx[rows] == idx[rows[0]])]
        raise CryopipeError(
            f"{star_path}: column rlnImageName, particle rows {first[0] + 1} and {first[1] + 1} are the same image "
            f"({particles['rlnImageName'].iloc[first[0]]}): duplicate entries"
        )
    mismatched = []
    order = np.argsort(codes, kind="stable")
    bounds = np.searchsorted(codes[order], np.arange(len(uniques) + 1))
    headers = {}
    for k, path in enumerate(paths):
        h = headers[os.path.realpath(path)] = read_stack_header(path)
        n, ny, nx = h.shape
        if h.file_size != h.expected_size:
            how = "truncated" if h.file_size < h.expected_size else "longer than its header says"
            raise CryopipeError(
                f"{path}: {how}: its header ({n} images of {nx} × {ny} px, mode {h.mode}) describes "
                f"{h.expected_size} bytes, the file has {h.file_size} bytes"
            )
        if nx != ny:
            raise CryopipeError(f"{path}: images are {nx} × {ny} px (x × y); only square images are supported")
        if nx % 2:
            raise CryopipeError(
                f"{path}: odd box of {nx} px; RELION and cryopipe need even boxes: re-window the stack, e.g. "
                f"`relion_image_handler --i {path} --o new.mrcs --new_box {nx - 1}`, and set rlnImageSize"
            )
        if nx != L:
            raise CryopipeError(f"{path}: images are {nx} px but {star_path} says rlnImageSize {L}")
        rows = order[bounds[k] : bounds[k + 1]]
        hi = int(idx[rows].max())
        if hi >= n:
            raise CryopipeError(f"{star_path}: rlnImageName refers to image {hi + 1} of {path}, which holds {n} images")
        v = h.voxel_size
        if not (abs(v) < 1e-3 or abs(v - 1) < 1e-3) and abs(v - apix) > PIXEL_SIZE_TOLERANCE * apix:
            mismatched.append((path, v))
    # Counts per file (stacks named two ways count together).
    per_file: dict[str, tuple[Path, int]] = {}
    for k, path in enumerate(paths):
        real = os.path.realpath(path)
        prev = per_file.get(real, (path, 0))[1]
        per_file[real] = (path, prev + int(bounds[k + 1] - bounds[k]))
    if not allow_subset:
        for real, (path, count) in per_file.items():
            n = headers[real].shape[0]
            if count != n:
                raise CryopipeError(
                    f"{star_path}: lists {count} images of {path}, but the stack holds {n} "
                    "(set data.import.allow_subset to accept a subset)"
                )
    if mismatched:
        path, v = mismatched[0]
        more = f" (and {len(mismatched) - 1} more stacks)" if len(mismatched) > 1 else ""
        print(
            f"cryopipe: warning: {star_path}: rlnImagePixelSize {apix:g} Å/px, but the header of {path} says "
            f"{v:g} Å/px{more}; using the STAR's {apix:g} Å/px, as RELION does",
            file=sys.stderr,
        )


def check_particle_set(
    particles: pd.DataFrame, optics: pd.DataFrame, star_path: str | os.PathLike, allow_subset: bool = False
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Check a particle set read by `read_star` against itself and its stacks' headers.

    Returns copies with every checked column as numbers (and rlnDefocusV/rlnDefocusAngle filled in
    when absent: V = U, angle 0); raises CryopipeError (one line) on the first problem.
    """
    particles, optics = particles.copy(), optics.copy()
    if len(particles) == 0:
        raise CryopipeError(f"{star_path}: the particle table has no rows (no particles to process)")
    if len(optics) == 0:
        raise CryopipeError(f"{star_path}: the optics table has no rows")
    if "rlnImageName" not in particles.columns:
        raise CryopipeError(f"{star_path}: particle table lacks column rlnImageName")
    for col in REQUIRED_OPTICS:
        if col not in optics.columns:
            raise CryopipeError(f"{star_path}: optics table lacks column {col}")
    idx, stacks = _parse_image_names(particles, star_path)
    _parse_numeric(particles, optics, star_path)
    _check_optics(particles, optics, star_path)
    _check_particle_values(particles, optics, star_path)
    if "rlnDefocusV" not in particles.columns:
        particles["rlnDefocusV"] = particles["rlnDefocusU"]
    if "rlnDefocusAngle" not in particles.columns:
        particles["rlnDefocusAngle"] = 0.0
    _check_stacks(particles, optics, star_path, allow_subset, idx, stacks)
    return particles, optics
