"""Shared test helpers (fixtures live in conftest.py): the tiny config, a correlation, and CLI runners.

`run_cli` calls `cryopipe.cli.main` in this process (no interpreter start-up, no re-import of torch), with
stdout and stderr captured; `run_cli_subprocess` starts `python -m cryopipe` as a user would, for the few
tests that must see the real entry point.
"""

from __future__ import annotations

import contextlib
import io
import json
import subprocess
import sys
import traceback
from dataclasses import dataclass

import numpy as np

TINY = {
    "seed": 11,
    "device": "cpu",
    "reference": {"resolution": 5.0},
    "modes": {"n_modes": 3},
    "conformations": {"n_particles": 24, "max_shift": 2.0},
    "simulate": {"box": 40, "pixel_size": 2.0, "batch_size": 16, "grid": {"snr": [0.5], "defocus": [[1.0, 2.0]]}},
    "preprocess": {"size": 32, "batch_size": 10},
}


def corr(a, b) -> float:
    """Pearson correlation of two arrays of any shape."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


@dataclass
class CliResult:
    """What a finished command left: its exit status and what it printed (as `subprocess.CompletedProcess`)."""

    returncode: int
    stdout: str
    stderr: str


def run_cli(*args, check: bool = True) -> CliResult:
    """`cryopipe ARGS` in this process. An uncaught exception becomes exit status 1 with its traceback on
    stderr, an argparse error its own status, as in a subprocess."""
    from cryopipe.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main([str(a) for a in args])
        except SystemExit as e:
            code = e.code if isinstance(e.code, int) else 1
        except Exception:
            traceback.print_exc()
            code = 1
    result = CliResult(code, out.getvalue(), err.getvalue())
    if check and result.returncode != 0:
        raise AssertionError(f"cryopipe {args[0]} failed:\n{result.stderr}")
    return result


def run_cli_subprocess(*args, cwd=None, check: bool = True) -> subprocess.CompletedProcess:
    """`python -m cryopipe ARGS` in a new interpreter."""
    proc = subprocess.run([sys.executable, "-m", "cryopipe", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"cryopipe {args[0]} failed:\n{proc.stderr}")
    return proc


def stage_json(stage: str, cfg: dict = TINY) -> str:
    """The --params JSON that the workflow passes to `stage` for config `cfg`."""
    import importlib

    from cryopipe.config import validate_config

    return json.dumps(importlib.import_module(f"cryopipe.commands.{stage}").params_from_config(validate_config(cfg)))


def run_structure_stages(d, cfg: dict = TINY) -> None:
    """reference → modes → conformations into folder `d` through the CLI: atoms.npz, ref.pdb, map.mrc,
    modes.npz, modes.nmd, truth.csv, truth.png."""
    run_cli("reference", "--params", stage_json("reference", cfg), "--out-atoms", d / "atoms.npz",
            "--out-pdb", d / "ref.pdb", "--out-map", d / "map.mrc")  # fmt: skip
    run_cli("modes", "--params", stage_json("modes", cfg), "--pdb", d / "ref.pdb", "--out-modes", d / "modes.npz",
            "--out-nmd", d / "modes.nmd")  # fmt: skip
    run_cli("conformations", "--params", stage_json("conformations", cfg), "--modes", d / "modes.npz",
            "--atoms", d / "atoms.npz", "--out-truth", d / "truth.csv", "--out-plot", d / "truth.png")  # fmt: skip


def run_simulate(d, out, dataset: str, cfg: dict = TINY, check: bool = True) -> CliResult:
    """`cryopipe simulate` of the structure stages in `d` (`run_structure_stages`) into folder `out`:
    particles.star, particles.mrcs, truth.csv, preview.png."""
    return run_cli("simulate", "--params", stage_json("simulate", cfg), "--dataset", dataset,
                   "--atoms", d / "atoms.npz", "--modes", d / "modes.npz", "--conformations", d / "truth.csv",
                   "--out-star", out / "particles.star", "--out-mrcs", out / "particles.mrcs",
                   "--out-truth", out / "truth.csv", "--out-preview", out / "preview.png", check=check)  # fmt: skip


def run_preprocess(star, out, cfg: dict = TINY, check: bool = True) -> CliResult:
    """`cryopipe preprocess` of `star` into folder `out`: particles.star, particles.mrcs, split.csv,
    set1.star, set2.star, preview.png."""
    return run_cli("preprocess", "--params", stage_json("preprocess", cfg), "--star", star,
                   "--out-star", out / "particles.star", "--out-mrcs", out / "particles.mrcs",
                   "--out-split", out / "split.csv", "--out-set1", out / "set1.star", "--out-set2", out / "set2.star",
                   "--out-preview", out / "preview.png", check=check)  # fmt: skip


def align_settings(image_size: int, **overrides):
    """`AlignSettings` as the default config makes them for `image_size` px images, with `overrides`."""
    from dataclasses import replace

    from cryopipe.align.run import AlignSettings
    from cryopipe.commands.align import params_from_config
    from cryopipe.config import default_config

    return replace(AlignSettings.from_params(params_from_config(default_config()), image_size), **overrides)


def train_settings(**overrides):
    """`TrainSettings` of the default config (CPU), with `overrides`."""
    from dataclasses import replace

    from cryopipe.commands.train import params_from_config
    from cryopipe.config import default_config
    from cryopipe.nn.engine import TrainSettings

    return replace(TrainSettings.from_params(params_from_config(default_config()), device="cpu"), **overrides)
