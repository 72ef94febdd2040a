"""Improve-train: the EMReady-style map-improvement network, trained on pairs the pipeline simulates.

Pairs (`cryopipe.improve.pairs`): reconstructions made by the pipeline's own backprojector from simulated noisy
CTF-affected images of conformations drawn from the modes' prior (never from the groups it will improve), each
paired with EMReady's target map of its conformation. The optics and defoci come from the data's STAR. Trained
through the engine (checkpoints, resume, early stopping on held-out pairs, learning curve, bf16 on CUDA).
"""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_model", "out_history", "out_curve", "out_pairs"]


def params_from_config(cfg: dict) -> dict:
    from cryopipe.commands.reference import model_resolution

    imp = dict(cfg["analysis"]["improve"])
    if imp["snr"] is None:
        snrs = cfg["simulate"]["grid"]["snr"] if cfg["data"]["source"] == "simulate" else [0.05, 1.0]
        imp["snr"] = [min(snrs), max(snrs)]
    if imp["target_resolution"] is None:
        imp["target_resolution"] = model_resolution(cfg)
    engine = {k: cfg["train"][k] for k in ("amp", "channels_last", "num_workers")}  # how, not what, it trains
    return {
        **{k: v for k, v in imp.items() if k not in ("method", "stride", "min_density")},
        **engine,
        "modes": cfg["conformations"]["modes"],
        "resolution": model_resolution(cfg),
        "max_shift": cfg["conformations"]["max_shift"] * cfg["simulate"]["pixel_size"],
        "noise_before_ctf": cfg["simulate"]["noise_before_ctf"],
        "pad": cfg["analysis"]["backproject"]["pad"],
        "seed": cfg["seed"],
        "device": cfg["device"],
    }


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--atoms", required=True, help="reference/atoms.npz")
    p.add_argument("--modes", required=True, help="modes/modes.npz")
    p.add_argument("--stars", required=True, nargs="+", help="the data's particle STARs (optics, defoci)")
    p.add_argument("--out-model", required=True, help="output: best weights + settings (.pt)")
    p.add_argument("--out-history", required=True, help="output: per-epoch losses (.csv)")
    p.add_argument("--out-curve", required=True, help="output: learning curve (.png)")
    p.add_argument("--out-pairs", required=True, help="output: central slices of pairs and the network's output (.png)")
    p.add_argument("--stop-after", type=int, help="train at most this many epochs in this run; the next run resumes")


def pair_maker(params: dict, atoms, modes, stars: list[str], device: str = "cpu"):
    """The `PairMaker` of a run: the first STAR's optics at the network's voxel size, every STAR's defoci."""
    import numpy as np

    from cryopipe.errors import CryopipeError
    from cryopipe.imaging.simulate import Optics
    from cryopipe.improve.grid import resampled_size
    from cryopipe.improve.pairs import PairMaker, PairSettings
    from cryopipe.io.star import DEFOCUS, read_star

    defoci, optics = [], None
    for path in stars:
        particles, opt = read_star(path)
        missing = [c for c in DEFOCUS if c not in particles.columns]
        if missing:
            raise CryopipeError(f"{path}: column '{missing[0]}' missing (the pairs take the data's defoci)")
        defoci.append(particles[DEFOCUS].to_numpy(np.float64))
        optics = optics if optics is not None else opt.iloc[0].to_dict()
    assert optics is not None
    L, apix = int(optics["rlnImageSize"]), float(optics["rlnImagePixelSize"])
    size = resampled_size(L, apix, params["voxel_size"])
    net_optics = Optics(
        L * apix / size,
        size,
        float(optics["rlnVoltage"]),
        float(optics["rlnSphericalAberration"]),
        float(optics["rlnAmplitudeContrast"]),
    )
    names = ("images", "amplitude_sd", "spread", "pose_error", "shift_error", "deletion", "deletion_radius",
             "max_shift", "noise_before_ctf", "resolution", "target_resolution", "pad", "seed")  # fmt: skip
    settings = PairSettings(snr=tuple(params["snr"]), **{k: params[k] for k in names})
    return PairMaker(
        atoms.coords, atoms.weights, modes.select(params["modes"]), net_optics, np.concatenate(defoci), L, settings,
        device,
    )  # fmt: skip


def main(args: argparse.Namespace) -> None:
    from pathlib import Path
    from typing import cast

    import numpy as np
    import torch
    from torch.utils.data import Dataset
    from tqdm import tqdm

    from cryopipe.device import pick_device
    from cryopipe.errors import CryopipeError
    from cryopipe.improve.boxes import CropSource, FixedCrops, normalised_pair
    from cryopipe.improve.unet import MapImprover
    from cryopipe.io.structure import Atoms
    from cryopipe.nn.engine import TrainSettings, fit, publish
    from cryopipe.plots import save_map_pairs
    from cryopipe.structure.modes import Modes

    params = resolve_params(args, params_from_config)
    torch.set_flush_denormal(True)  # Gaussian tails underflow to denormals: 3-D conv backward ~8× slower on CPU
    multiple = 2 ** (params["levels"] - 1)
    for key in ("crop", "box"):
        if params[key] % multiple:
            raise CryopipeError(
                f"config key 'analysis.improve.{key}': {params[key]} is not divisible by {multiple} (2^(levels-1))"
            )
    atoms, modes = Atoms.load(args.atoms), Modes.load(args.modes)
    maker = pair_maker(params, atoms, modes, args.stars)
    n_train, n_val = params["pairs"], params["validation_pairs"]
    print(
        f"improve-train: {n_train} + {n_val} pairs of {params['images']} images at {maker.optics.size} px "
        f"({maker.optics.pixel_size:.3g} Å/px), SNR {params['snr'][0]:g}–{params['snr'][1]:g}, targets at "
        f"{params['target_resolution']:g} Å"
    )
    maps, targets = [], []
    for i in tqdm(range(n_train + n_val), desc="pairs", mininterval=5):
        pair = maker.make(i)
        m, t = normalised_pair(pair["map"], pair["target"])
        maps.append(m)
        targets.append(t)
    torch.manual_seed(params["seed"])
    model = MapImprover(params["width"], params["levels"])
    source = CropSource(maps[:n_train], targets[:n_train], params["crop"], params["batch_size"],
                        params["batches_per_epoch"], params["seed"])  # fmt: skip
    val = FixedCrops(maps[n_train:], targets[n_train:], params["crop"], 8, params["seed"])
    device = pick_device(params["device"])
    settings = TrainSettings.from_params(
        {**params, "lr_step": params["epochs"] + 1, "weight_decay": 0.0, "augment_inplane": False}, device=device
    )
    meta = {
        "model": {"width": params["width"], "levels": params["levels"]},
        "voxel_size": maker.optics.pixel_size,
        "target_resolution": params["target_resolution"],
        "box": params["box"],
    }
    out_dir = Path(args.out_model).parent
    history = fit(
        model, cast(Dataset, source), val, settings, out_dir, meta=meta, resume=True, stop_after=args.stop_after
    )
    history = publish(out_dir, history, args.out_model, args.out_history, args.out_curve)
    best, _ = load_improver(args.out_model)
    with torch.no_grad():
        shown = [
            (maps[i], targets[i], best(maps[i][None, None])[0, 0]) for i in range(n_train, n_train + min(n_val, 3))
        ]
    save_map_pairs(args.out_pairs, shown, ["reconstruction (normalised)", "target (EMReady)", "network"])
    gain = [float(np.corrcoef(o.ravel(), t.ravel())[0, 1] - np.corrcoef(m.ravel(), t.ravel())[0, 1])
            for m, t, o in shown]  # fmt: skip
    print(
        f"improve-train: {len(history)} epochs, best held-out loss {history['val_loss'].min():.4f}; "
        f"correlation with the target on held-out pairs +{np.mean(gain):.3f} (network − reconstruction)"
    )


def load_improver(path: str, device: str = "cpu"):
    """(model in eval mode, meta) from an improve-train checkpoint."""
    import torch

    from cryopipe.improve.unet import MapImprover

    ck = torch.load(path, map_location=device, weights_only=False)
    model = MapImprover(**ck["meta"]["model"])
    model.load_state_dict(ck["model"])
    model = model.to(device, memory_format=model.memory_format)  # type: ignore[call-overload]  # (stub lacks it)
    return model.eval(), ck["meta"]
