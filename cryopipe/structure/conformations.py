"""Ground truth for simulated particles: amplitudes, orientations and shifts drawn from the seed.

Distributions of the normal-mode amplitudes (Å RMSD, one column per selected mode):
- helix: a 1-D continuous trajectory like DeepHEMNMA's synthetic AdK set. With t ~ U(0, 1),
  first mode = span·(2t − 1), the next two = radius·cos/sin(2π·turns·t) (+ Gaussian jitter);
- uniform: every amplitude ~ U(−span, span);
- discrete: K states drawn in the uniform box, each particle one state + Gaussian jitter;
- interpolate: t ~ U(0, 1) times the amplitudes that best reproduce target − reference
  (e.g. open 4AKE → closed 1AKE), so the truth stays expressible in the modes;
- morph: t ~ U(min_fraction, max_fraction), and the particle's atoms are the Cartesian
  interpolation reference + t·(superposed target − reference) between two real structures
  (`cryopipe.structure.target`), not a point of the mode space: data that the fitted model did
  not make. `morph_fraction` = t is the truth; the mode columns hold t times the least-squares
  amplitudes of the whole displacement (its best approximation in the modes).
Orientations are uniform on SO(3); shifts (rlnOriginX/YAngst) uniform in ±max_shift pixels.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from cryopipe.errors import CryopipeError
from cryopipe.geometry import matrix_to_euler, random_rotations
from cryopipe.io.star import EULER, ORIGIN

MORPH_COLUMN = "morph_fraction"  # truth of `morph` data: t of reference + t·(target − reference)


def amplitude_columns(mode_numbers) -> list[str]:
    return [f"mode{n}" for n in mode_numbers]


def mode_columns(columns) -> list[str]:
    """The amplitude columns ('mode7', ...) of a table, in order; not 'mode7_true' or other derived ones."""
    import re

    return [c for c in columns if re.fullmatch(r"mode\d+", str(c))]


def draw_amplitudes(rng: np.random.Generator, n: int, n_modes: int, spec: dict, target_amplitudes=None):
    """Amplitudes (n, n_modes) plus labels: (amplitudes, t or state per particle)."""
    kind = spec["distribution"]
    if kind == "helix":
        p = spec["helix"]
        t = rng.uniform(0, 1, n)
        a = np.zeros((n, n_modes))
        a[:, 0] = p["span"] * (2 * t - 1)
        if n_modes > 1:
            a[:, 1] = p["radius"] * np.cos(2 * np.pi * p["turns"] * t)
        if n_modes > 2:
            a[:, 2] = p["radius"] * np.sin(2 * np.pi * p["turns"] * t)
        a += p["jitter"] * rng.standard_normal(a.shape)
        return a, t
    if kind == "uniform":
        span = spec["uniform"]["span"]
        a = rng.uniform(-span, span, (n, n_modes))
        return a, np.full(n, np.nan)
    if kind == "discrete":
        p = spec["discrete"]
        centres = rng.uniform(-p["span"], p["span"], (p["n_states"], n_modes))
        state = rng.integers(0, p["n_states"], n)
        a = centres[state] + p["jitter"] * rng.standard_normal((n, n_modes))
        return a, state.astype(float)
    if kind in ("interpolate", "morph"):
        if target_amplitudes is None:
            raise CryopipeError(f"config key 'conformations.{kind}.target': no target structure given")
        lo = spec["morph"]["min_fraction"] if kind == "morph" else 0.0
        t = rng.uniform(lo, spec[kind]["max_fraction"], n)
        return t[:, None] * np.asarray(target_amplitudes)[None, :], t
    raise CryopipeError(f"config key 'conformations.distribution': unknown distribution '{kind}'")


def draw_conformations(spec: dict, seed: int, mode_numbers, target_amplitudes=None) -> pd.DataFrame:
    """The ground-truth table, keyed by particle index (0-based), without imaging parameters."""
    n = spec["n_particles"]
    rng = np.random.default_rng(np.random.SeedSequence([seed, 1]))
    amps, label = draw_amplitudes(rng, n, len(mode_numbers), spec, target_amplitudes)
    gen = torch.Generator().manual_seed(int(rng.integers(2**62)))
    euler = matrix_to_euler(random_rotations(n, gen)).numpy()
    shifts = rng.uniform(-spec["max_shift"], spec["max_shift"], (n, 2)) * spec["pixel_size"]
    table = pd.DataFrame(amps, columns=amplitude_columns(mode_numbers))
    table.insert(0, "particle", np.arange(n))
    table["label"] = label
    if spec["distribution"] == "morph":
        table[MORPH_COLUMN] = label
    table[EULER] = euler
    table[ORIGIN] = shifts
    return table


def truth_motion(spec: dict, atoms, modes) -> tuple[np.ndarray, list[str]]:
    """What moved the simulated atoms: displacement fields (M, N, 3) and the truth columns of their weights.

    `spec` holds `distribution`, `modes` and (for morph) `morph`; atoms = reference + Σ_k column_k · field_k.
    """
    if spec["distribution"] == "morph":
        from cryopipe.structure.target import target_displacement

        m = spec["morph"]
        return target_displacement(atoms, m["target"], m["selection"]).displacement[None], [MORPH_COLUMN]
    return modes.select(spec["modes"]), amplitude_columns(spec["modes"])
