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
