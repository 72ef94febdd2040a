"""Parameter errors between two sets of estimates (DeepHEMNMA Tables 1–4 analogue).

Amplitudes: |Δa| per mode (Å RMSD); orientation: the angle of R_a·R_bᵀ; shifts: |Δorigin|.
Each is also expressed as the RMSD (Å) of the reference atoms moved with one set of parameters
vs the other, one parameter type at a time, so different types can be compared in one unit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cryopipe.io.star import EULER, ORIGIN


def rotation_matrices(table: pd.DataFrame) -> torch.Tensor:
    """RELION matrices (n, 3, 3), float64, from a table's Euler columns."""
    from cryopipe.geometry import euler_to_matrix

    return euler_to_matrix(torch.tensor(table[EULER].to_numpy(np.float64)))


def angle_errors(rotations, reference) -> np.ndarray:
    """Angle (°) of R·R_refᵀ per image. rotations: RELION matrices (n, 3, 3) (array or tensor); reference:
    matrices too, or a table with the Euler columns (e.g. the ground truth, rows in the same order)."""
    from cryopipe.geometry import angular_distance

    ref = rotation_matrices(reference) if isinstance(reference, pd.DataFrame) else torch.as_tensor(reference)
    return angular_distance(torch.as_tensor(rotations), ref).numpy()


def shift_errors_px(origins, reference, pixel_size: float) -> np.ndarray:
    """|Δorigin| per image in pixels of `pixel_size` Å. origins (n, 2) Å; reference: (n, 2) Å or a table
    with the origin columns."""
    ref = reference[ORIGIN].to_numpy(np.float64) if isinstance(reference, pd.DataFrame) else np.asarray(reference)
    return np.linalg.norm(np.asarray(origins) - ref, axis=1) / pixel_size


def parameters(table: pd.DataFrame, names: list[str], index) -> dict:
    """{'amplitudes', 'euler', 'shifts'} of the rows `index` of a table holding those columns."""
    rows = table.loc[index]
    return {
        "amplitudes": rows[names].to_numpy(np.float64),
        "euler": rows[EULER].to_numpy(np.float64),
        "shifts": rows[ORIGIN].to_numpy(np.float64),
    }


def errors(a: dict, b: dict, names: list[str], coords: np.ndarray, modes: np.ndarray, pixel_size: float) -> dict:
    """Per-image errors of estimates `a` against `b`: {metric: array}. modes (M, N, 3) in Å RMSD units."""
    from cryopipe.geometry import euler_to_matrix

    da = a["amplitudes"] - b["amplitudes"]
    Ra, Rb = euler_to_matrix(torch.tensor(a["euler"])), euler_to_matrix(torch.tensor(b["euler"]))
    ds = np.linalg.norm(a["shifts"] - b["shifts"], axis=1)
    disp = np.einsum("nk,kad->nad", da, modes)
    x = torch.tensor(coords)
    rmsd_rot = torch.sqrt(((x @ Ra.transpose(1, 2) - x @ Rb.transpose(1, 2)) ** 2).sum(2).mean(1)).numpy()
    out = {f"|Δ{c}| (Å RMSD)": np.abs(da[:, k]) for k, c in enumerate(names)}
    out.update(
        {
            "angle (°)": angle_errors(Ra, Rb),
            "shift (px)": ds / pixel_size,
            "RMSD amplitudes (Å)": np.sqrt((disp**2).sum(2).mean(1)),
            "RMSD angles (Å)": rmsd_rot,
            "RMSD shifts (Å)": ds,
        }
    )
    return out


def summarise(errs: dict) -> dict:
    """{metric mean, metric std} per metric, plus the image count."""
    n = len(next(iter(errs.values()))) if errs else 0
    out: dict[str, float] = {"images": n}
    for k, v in errs.items():
        out[f"{k} mean"] = float(np.mean(v)) if n else float("nan")
        out[f"{k} std"] = float(np.std(v)) if n else float("nan")
    return out


def to_markdown(df: pd.DataFrame, floatfmt: str = ".2f") -> str:
    """A GitHub-flavoured Markdown table (no extra dependency)."""

    def cell(v):
        if isinstance(v, (float, np.floating)):
            return "n/a" if not np.isfinite(v) else format(v, floatfmt)
        return str(v)

    cols = [str(c) for c in df.columns]
    lines = ["| " + " | ".join(cols) + " |", "|" + "|".join("---" for _ in cols) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"
