import pytest
import torch

from helpers import run_cli, stage_json


@pytest.fixture
def phantom():
    """An asymmetric phantom: 3D Gaussians at distinct places with distinct weights (Å)."""
    coords = torch.tensor(
        [[0.0, 0.0, 0.0], [12.0, 3.0, -4.0], [-5.0, 9.0, 6.0], [2.0, -10.0, 8.0], [-8.0, -6.0, -9.0]],
        dtype=torch.float64,
    )
    weights = torch.tensor([1.0, 2.0, 0.7, 1.4, 0.5], dtype=torch.float64)
    return coords, weights


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    """reference → modes → conformations → simulate for 24 particles at 40 px, via the CLI."""
    d = tmp_path_factory.mktemp("tiny")
    run_cli(
        "reference",
        "--params",
        stage_json("reference"),
        "--out-atoms",
        d / "atoms.npz",
        "--out-pdb",
        d / "ref.pdb",
        "--out-map",
        d / "map.mrc",
    )
    run_cli(
        "modes",
        "--params",
        stage_json("modes"),
        "--pdb",
        d / "ref.pdb",
        "--out-modes",
        d / "modes.npz",
        "--out-nmd",
        d / "modes.nmd",
    )
    run_cli(
        "conformations",
        "--params",
        stage_json("conformations"),
        "--modes",
        d / "modes.npz",
        "--atoms",
        d / "atoms.npz",
        "--out-truth",
        d / "truth.csv",
        "--out-plot",
        d / "truth.png",
    )
    sim = d / "sim"
    run_cli(
        "simulate",
        "--params",
        stage_json("simulate"),
        "--dataset",
        "snr0.5_df1-2",
        "--atoms",
        d / "atoms.npz",
        "--modes",
        d / "modes.npz",
        "--conformations",
        d / "truth.csv",
        "--out-star",
        sim / "particles.star",
        "--out-mrcs",
        sim / "particles.mrcs",
        "--out-truth",
        sim / "truth.csv",
        "--out-preview",
        sim / "preview.png",
    )
    return d
