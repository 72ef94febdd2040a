"""Classify-train: one classifier (2-layer CNN, ResNet18 or ResNet50) on one SNR's homologue images.

Cross-entropy on the train subset, early stopping on the validation subset's loss, through the training
engine of `train` (checkpoints every epoch, resume, learning curve, bf16 and DDP on GPUs).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cryopipe.commands import add_params_arg, resolve_params

if TYPE_CHECKING:  # commands import only the standard library at module level (`--help` stays instant)
    import pandas as pd

OUTPUTS = ["out_model", "out_history", "out_curve"]


def params_from_config(cfg: dict) -> dict:
    from cryopipe.commands import homologue_signal

    t = cfg["classification"]["train"]
    engine = {k: cfg["train"][k] for k in ("amp", "channels_last", "num_workers")}  # how, not what, it trains
    # what the training images (source simulation) and the pose channel are rendered with: the data set's own
    return {
        **t,
        **engine,
        "seed": cfg["seed"],
        "device": cfg["device"],
        "imaging": homologue_signal.params_from_config(cfg),
    }


def add_args(p: argparse.ArgumentParser) -> None:
    from cryopipe.classify import ARCHITECTURES

    add_params_arg(p)
    p.add_argument("--architecture", required=True, choices=ARCHITECTURES)
    p.add_argument("--star", required=True, help="one SNR's particles.star (from `homologue-images`)")
    p.add_argument("--truth", required=True, help="classification/truth.csv (class and subset per particle)")
    p.add_argument("--snr", type=float, help="the data set's SNR: source simulation's noise level")
    p.add_argument("--classes", help="classification/classes.npz: source simulation renders its classes")
    p.add_argument("--out-model", required=True, help="output: best weights + architecture (.pt)")
    p.add_argument("--out-history", required=True, help="output: per-epoch losses (.csv)")
    p.add_argument("--out-curve", required=True, help="output: learning curve (.png)")
    p.add_argument("--stop-after", type=int, help="train at most this many epochs in this run; the next run resumes")


def labelled_subsets(star, truth_path) -> tuple[dict, pd.DataFrame, list[str]]:
    """{subset: particles with a `class` column} of one SNR's STAR, the optics table, the class names."""
    import pandas as pd

    from cryopipe.errors import CryopipeError
    from cryopipe.io.star import read_star

    particles, optics = read_star(star)
    truth = pd.read_csv(truth_path)
    if len(truth) != len(particles):
        raise CryopipeError(f"{star}: {len(particles)} particles, but {truth_path} has {len(truth)} rows")
    if "rlnClassNumber" not in particles.columns:
        raise CryopipeError(f"{star}: no rlnClassNumber column (the class labels)")
    if ((particles["rlnClassNumber"].to_numpy() - 1) != truth["class"].to_numpy()).any():
        raise CryopipeError(f"{star}: rlnClassNumber does not match the classes of {truth_path}")
    particles["class"] = truth["class"].to_numpy()
    particles["particle"] = truth["particle"].to_numpy()
    names = truth.drop_duplicates("class").sort_values("class")["class_name"].tolist()
    return (
        {s: particles[truth["subset"].to_numpy() == s].reset_index(drop=True) for s in ("train", "validation", "test")},
        optics,
        names,
    )


def training_simulator(params: dict, args: argparse.Namespace, truth_path: str, device: str, consensus: bool):
    """The on-the-fly source of training images: the class maps under the data set's optics, defocus range
    and noise level (`cryopipe.classify.simulated`)."""
    import numpy as np
    import pandas as pd

    from cryopipe.classify.simulated import ClassImageSimulator, class_volumes
    from cryopipe.errors import CryopipeError
    from cryopipe.imaging.project import sigma_for_resolution
    from cryopipe.imaging.simulate import Optics, noise_variance_for_snr

    if args.snr is None or args.classes is None:
        raise CryopipeError("config key 'classification.train.source': simulation needs --snr and --classes")
    m = params["imaging"]
    if m["noise_before_ctf"] != 0:
        raise CryopipeError(
            "config key 'classification.train.source': simulation renders white noise only; "
            "set classification.noise_before_ctf to 0 or train.source to stack"
        )
    with np.load(args.classes) as z:
        volumes = class_volumes(
            z["coords"],
            z["weights"],
            z["keep"],
            pixel_size=m["pixel_size"],
            size=m["box"],
            sigma=sigma_for_resolution(m["resolution"]),
        )
    optics = Optics.from_params(m)
    noise_var = noise_variance_for_snr(pd.read_csv(truth_path)["signal_variance"].to_numpy(), args.snr)
    band = params["input_size"] / 2 if params["input_size"] and params["input_size"] < m["box"] else None
    return ClassImageSimulator(
        volumes,
        optics,
        defocus=m["defocus"],
        astigmatism=m["astigmatism"],
        noise_var=noise_var,
        images_per_epoch=params["images_per_epoch"],
        batch_size=params["batch_size"],
        seed=params["seed"],
        flip=params["phase_flip"],
        ctf=m["ctf"],
        band=band,
        consensus=consensus,
        device=device,
    )


def load_classifier(path: str, device: str = "cpu"):
    """(model in eval mode, meta) from a classify-train checkpoint."""
    import torch

    from cryopipe.classify.models import build_classifier

    ck = torch.load(path, map_location=device, weights_only=False)
    m = ck["meta"]
    model = build_classifier(
        m["architecture"], m["n_classes"], m["image_size"], width=m["width"], input_size=m["input_size"]
    )
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), m


def main(args: argparse.Namespace) -> None:
    from pathlib import Path

    import torch

    from cryopipe.classify.data import LabelledImages, network_inputs
    from cryopipe.classify.models import build_classifier, given_pose
    from cryopipe.commands.homologue_signal import load_renderer
    from cryopipe.device import pick_device
    from cryopipe.errors import CryopipeError
    from cryopipe.nn.engine import TrainSettings, fit, publish

    params = resolve_params(args, params_from_config)
    subsets, optics, names = labelled_subsets(args.star, args.truth)
    size = int(optics["rlnImageSize"].iloc[0])

    pose = given_pose(args.architecture)
    if pose and args.classes is None:
        raise CryopipeError(f"--architecture {args.architecture}: the pose channel needs --classes")
    renderer = load_renderer(params["imaging"], args.classes)[0] if pose else None

    def dataset(rows):  # in memory: 50k images of 128² px are 3.3 GB
        return LabelledImages(
            network_inputs(rows, args.star, optics, params["phase_flip"], renderer, params["imaging"]["batch_size"]),
            rows["class"].to_numpy(),
        )

    if params["source"] == "simulation":
        train_source = training_simulator(
            params, args, truth_path=args.truth, device=pick_device(params["device"]), consensus=pose
        )
    else:
        train_source = dataset(subsets["train"])
    torch.manual_seed(params["seed"])
    model = build_classifier(
        args.architecture, len(names), size, width=params["width"], input_size=params["input_size"]
    )
    meta = {
        "architecture": args.architecture,
        "n_classes": len(names),
        "class_names": names,
        "image_size": size,
        "width": params["width"],
        "input_size": params["input_size"],
        "phase_flip": params["phase_flip"],
    }
    settings = TrainSettings.from_params(params, device=pick_device(params["device"]))
    out_dir = Path(args.out_model).parent
    val = subsets["validation"]
    training = (
        f"{params['images_per_epoch']} new simulated images per epoch"
        if params["source"] == "simulation"
        else f"{len(subsets['train'])} training images"
    )
    print(
        f"classify-train: {args.architecture} (width {params['width']}, input {model.input_size or size} px), "
        f"{training}, {len(val)} validation images of the data set, {len(names)} classes, device {settings.device}"
    )
    history = fit(
        model,
        train_source,
        dataset(val),
        settings,
        out_dir,
        meta={**meta, "source": params["source"]},
        resume=True,
        stop_after=args.stop_after,
    )
    history = publish(out_dir, history, args.out_model, args.out_history, args.out_curve)
    print(
        f"classify-train: {len(history)} epochs, best validation cross-entropy {history['val_loss'].min():.4f} "
        f"(constant prediction {history['constant_val_loss'].iloc[-1]:.4f})"
    )
