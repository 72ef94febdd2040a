import pytest
import torch

from helpers import run_simulate, run_structure_stages


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
    run_structure_stages(d)
    run_simulate(d, d / "sim", "snr0.5_df1-2")
    return d
