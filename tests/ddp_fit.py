"""Run by tests/test_network.py under `torchrun --nproc_per_node 2` (CPU, gloo backend)."""

import sys
from pathlib import Path

import torch

from cryopipe.nn.engine import fit
from cryopipe.nn.heads import Regressor

sys.path.insert(0, str(Path(__file__).parent))
from test_network import Tiny

from helpers import train_settings

out = Path(sys.argv[1])
torch.manual_seed(1)
model = Regressor(("amplitudes",), 2, depth=18, image_size=24)
fit(
    model,
    Tiny(32, 0),
    Tiny(8, 1),
    train_settings(epochs=2, batch_size=8, seed=3),
    out,
    meta={"kinds": ["amplitudes"]},
    progress=False,
)
