"""Train: ResNet + MLP on image set 1 (targets from the alignment, or the ground truth as an ablation)."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_model", "out_history", "out_curve"]
KIND_CHOICES = ("amplitudes", "orientation", "shifts", "combined")


def params_from_config(cfg: dict) -> dict:
    t = dict(cfg["train"])
    return {
        **t,
        "seed": cfg["seed"],
        "device": cfg["device"],
        "modes": cfg["align"]["modes"] or cfg["conformations"]["modes"],
    }


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--kind", required=True, choices=KIND_CHOICES, help="what this network predicts")
    p.add_argument("--star", required=True, help="aligned image set 1 (align/<dataset>/particles.star)")
    p.add_argument("--amplitudes", required=True, help="align/<dataset>/amplitudes.csv (amplitudes, kept)")
    p.add_argument("--split", required=True, help="preprocess/<dataset>/split.csv (train/validation/test)")
    p.add_argument("--truth", help="ground truth, for targets: ground_truth")
    p.add_argument("--out-model", required=True, help="output: best weights + target statistics (.pt)")
    p.add_argument("--out-history", required=True, help="output: per-epoch losses (.csv)")
    p.add_argument("--out-curve", required=True, help="output: learning curve (.png)")
    p.add_argument("--stop-after", type=int, help="train at most this many epochs in this run; the next run resumes")


def training_tables(params: dict, star: str, amplitudes: str, split: str, truth: str | None):
    """(particles, amplitude table) of the kept set-1 images, with their subset, targets from the chosen source."""
    import pandas as pd

    from cryopipe.errors import CryopipeError
    from cryopipe.io.star import POSE, read_star, split_image_name
    from cryopipe.structure.conformations import amplitude_columns

    particles, optics = read_star(star)
    amps = pd.read_csv(amplitudes)
    cols = amplitude_columns(params["modes"])
    missing = [c for c in cols + ["particle", "kept"] if c not in amps.columns]
    if missing:
        raise CryopipeError(f"{amplitudes}: missing column {missing[0]}")
    particles["particle"] = [split_image_name(n)[0] for n in particles["rlnImageName"]]
    table = particles.merge(amps[["particle", "kept"] + cols], on="particle", validate="one_to_one")
    table = table.merge(pd.read_csv(split)[["particle", "subset"]], on="particle", validate="one_to_one")
    if params["targets"] == "ground_truth":
        if not truth:
            raise CryopipeError("config key 'train.targets': ground_truth needs simulated data with a truth table")
        t = pd.read_csv(truth).set_index("particle").loc[table["particle"]]
        for c in cols + POSE:
            table[c] = t[c].to_numpy()
    table = table[table["kept"].astype(bool)].reset_index(drop=True)
    return table, optics, cols


def main(args: argparse.Namespace) -> None:
    import shutil
    from pathlib import Path

    import torch

    from cryopipe.device import pick_device
    from cryopipe.errors import CryopipeError
    from cryopipe.nn.data import ParticleDataset
    from cryopipe.nn.engine import TrainSettings, fit
    from cryopipe.nn.heads import KINDS, Regressor
    from cryopipe.nn.targets import Standardiser, targets_from_tables

    params = resolve_params(args, params_from_config)
    table, optics, cols = training_tables(params, args.star, args.amplitudes, args.split, args.truth)
    train, val = table[table["subset"] == "train"], table[table["subset"] == "validation"]
    if len(train) < 2:
        raise CryopipeError(f"{args.split}: fewer than 2 kept training images")
    kinds = KINDS if args.kind == "combined" else (args.kind,)
    std = Standardiser.fit({k: v for k, v in targets_from_tables(train, train, cols).items() if k in kinds})

    def dataset(rows):
        t = std.forward({k: v for k, v in targets_from_tables(rows, rows, cols).items() if k in kinds})
        return ParticleDataset(rows.reset_index(drop=True), args.star, t)

    torch.manual_seed(params["seed"])
    size = int(optics["rlnImageSize"].iloc[0])
    model = Regressor(kinds, len(cols), depth=params["depth"], dropout=params["dropout"], image_size=size)
    meta = {
        "kinds": list(kinds),
        "n_modes": len(cols),
        "modes": cols,
        "depth": params["depth"],
        "dropout": params["dropout"],
        "standardiser": std.state(),
        "image_size": size,
        "targets": params["targets"],
    }
    settings = TrainSettings.from_params(params, device=pick_device(params["device"]))
    out_dir = Path(args.out_model).parent
    print(
        f"train: {args.kind}, ResNet{params['depth']}, {len(train)} training / {len(val)} validation images, "
        f"targets from {params['targets']}, device {settings.device}"
    )
    # Resumes from out_dir/last.pt when it was written with the same settings (e.g. after a killed job).
    history = fit(
        model, dataset(train), dataset(val), settings, out_dir, meta=meta, resume=True, stop_after=args.stop_after
    )
    if Path(args.out_model).resolve() != (out_dir / "best.pt").resolve():
        shutil.copyfile(out_dir / "best.pt", args.out_model)
    if Path(args.out_history).resolve() != (out_dir / "history.csv").resolve():
        shutil.copyfile(out_dir / "history.csv", args.out_history)
    if Path(args.out_curve).resolve() != (out_dir / "learning_curve.png").resolve():
        shutil.copyfile(out_dir / "learning_curve.png", args.out_curve)
    best = history["val_loss"].min()
    # absent from the history of a checkpoint written by an older version
    constant = float(history["constant_val_loss"].iloc[-1]) if "constant_val_loss" in history else float("nan")
    print(
        f"train: {len(history)} epochs, best validation loss {best:.4f}"
        + (f" (constant prediction {constant:.4f})" if constant == constant else "")
        + f", {history['train_images_per_s'].median():.1f} training images/s"
    )
    if best > 0.9 * constant:
        # Say it where people look: the predictions of such a network are close to one value for every image.
        print(
            f"warning: {args.kind} network: the best validation loss is within 10% of a constant prediction's; "
            "it has learnt little from the images. Train on more images or for more epochs (README: "
            "'How much data the network needs'), or re-fit set 2 after it (refine.mode)."
        )
