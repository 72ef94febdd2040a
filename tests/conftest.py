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
