import numpy as np
import pytest
import torch


@pytest.fixture
def phantom():
    """An asymmetric phantom: 3D Gaussians at distinct places with distinct weights (Å)."""
    coords = torch.tensor([[0.0, 0.0, 0.0], [12.0, 3.0, -4.0], [-5.0, 9.0, 6.0], [2.0, -10.0, 8.0], [-8.0, -6.0, -9.0]],
                          dtype=torch.float64)
    weights = torch.tensor([1.0, 2.0, 0.7, 1.4, 0.5], dtype=torch.float64)
    return coords, weights


def corr(a, b) -> float:
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a - a.mean(), b - b.mean()
    return float(a @ b / np.sqrt((a @ a) * (b @ b)))


import json
import subprocess
import sys

TINY = {
    "seed": 11,
    "device": "cpu",
    "reference": {"resolution": 5.0},
    "modes": {"n_modes": 3},
    "conformations": {"n_particles": 24, "max_shift": 2.0},
    "simulate": {"box": 40, "pixel_size": 2.0, "batch_size": 16, "grid": {"snr": [0.5], "defocus": [[1.0, 2.0]]}},
    "preprocess": {"size": 32, "batch_size": 10},
}


def run_cli(*args, cwd=None, check=True):
    proc = subprocess.run([sys.executable, "-m", "cryopipe", *map(str, args)], cwd=cwd, capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(f"cryopipe {args[0]} failed:\n{proc.stderr}")
    return proc


def stage_json(stage, cfg=TINY):
    import importlib

    from cryopipe.config import validate_config

    return json.dumps(importlib.import_module(f"cryopipe.commands.{stage}").params_from_config(validate_config(cfg)))


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """reference → modes → conformations → simulate for 24 particles at 40 px, via the CLI."""
    d = tmp_path_factory.mktemp("tiny")
    run_cli("reference", "--params", stage_json("reference"), "--atoms", d / "atoms.npz", "--pdb-out", d / "ref.pdb",
            "--map", d / "map.mrc")
    run_cli("modes", "--params", stage_json("modes"), "--pdb", d / "ref.pdb", "--out", d / "modes.npz", "--nmd", d / "modes.nmd")
    run_cli("conformations", "--params", stage_json("conformations"), "--modes", d / "modes.npz", "--atoms", d / "atoms.npz",
            "--out", d / "truth.csv", "--plot", d / "truth.png")
    sim = d / "sim"
    run_cli("simulate", "--params", stage_json("simulate"), "--dataset", "snr0.5_df1-2", "--atoms", d / "atoms.npz",
            "--modes", d / "modes.npz", "--conformations", d / "truth.csv", "--star", sim / "particles.star",
            "--mrcs", sim / "particles.mrcs", "--truth", sim / "truth.csv", "--preview", sim / "preview.png")
    return d
