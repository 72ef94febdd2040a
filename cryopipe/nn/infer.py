"""Prediction with trained checkpoints: amplitudes (Å RMSD), RELION angles and origins (Å)."""

from __future__ import annotations

import time

import numpy as np
import torch
from torch.utils.data import DataLoader

from cryopipe.geometry import quaternion_to_euler
from cryopipe.nn.engine import collate
from cryopipe.nn.heads import Regressor
from cryopipe.nn.hypotheses import ranked
from cryopipe.nn.targets import Standardiser


def load_model(path, device="cpu") -> tuple[Regressor, Standardiser, dict]:
    ck = torch.load(path, map_location=device, weights_only=False)
    meta = ck["meta"]
    model = Regressor(
        tuple(meta["kinds"]),
        meta["n_modes"],
        depth=meta["depth"],
        dropout=meta.get("dropout", 0.5),
        image_size=meta["image_size"],
        **meta.get("architecture", {}),  # hypotheses, width, input_size (absent: the defaults)
    )
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), Standardiser(meta["standardiser"]), meta


def predict(
    checkpoints: list, dataset, batch_size: int = 128, device: str = "cpu", progress: bool = True
) -> tuple[dict, float]:
    """Predictions of every kind the checkpoints cover, destandardised; plus images/s. With several
    orientation hypotheses also `hypotheses` (n, K, 4), `scores` (n, K) and `hypothesis_euler` (n, K, 3),
    best score first."""
    from tqdm import tqdm

    dev = torch.device(device)
    loaded = [load_model(p, dev) for p in checkpoints]
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, collate_fn=collate)
    parts: dict[str, list] = {}
    t0 = time.perf_counter()
    with torch.no_grad():
        for imgs, _, _ in tqdm(loader, desc="infer", disable=not progress, mininterval=5):
            imgs = imgs.to(dev)
            for model, std, _ in loaded:
                with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=dev.type == "cuda"):
                    out = model(imgs)
                out = std.inverse({k: v.float().cpu().numpy().astype(np.float64) for k, v in out.items()})
                for k, v in out.items():
                    parts.setdefault(k, []).append(v)
    rate = len(dataset) / (time.perf_counter() - t0)
    pred = {k: np.concatenate(v) for k, v in parts.items()}
    if "orientation" in pred:
        pred["euler"] = quaternion_to_euler(torch.tensor(pred["orientation"])).numpy()
    if "hypotheses" in pred:  # every hypothesis, best score first, as RELION angles (n, K, 3)
        q, scores = ranked(torch.tensor(pred["hypotheses"]), torch.tensor(pred["scores"]))
        pred["hypotheses"], pred["scores"] = q.numpy(), scores.numpy()
        pred["hypothesis_euler"] = quaternion_to_euler(q.reshape(-1, 4)).reshape(q.shape[0], q.shape[1], 3).numpy()
    return pred, rate
