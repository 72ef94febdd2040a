"""VAE-train: the cryoDRGN-style VAE on the preprocessed particles at given poses, then z for every particle.

Through the training engine of `train` (checkpoints every epoch, resume, early stopping on held-out particles,
learning curve, bf16 and DDP on GPUs). z per particle is the encoder's mean (the latent.csv that `reduce`
takes in place of DeepHEMNMA's amplitudes); the STAR written beside it has the poses the VAE used.
"""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_model", "out_history", "out_curve", "out_latent", "out_star"]


def params_from_config(cfg: dict) -> dict:
    from cryopipe.errors import CryopipeError

    v = {k: x for k, x in cfg["vae"].items() if k != "volumes"}
    if v["poses"] == "refine" and cfg["refine"]["mode"] == "none":
        raise CryopipeError("config key 'vae.poses': refine needs refine.mode elastic or rigid")
    if v["poses"] == "truth" and cfg["data"]["source"] == "import":
        raise CryopipeError("config key 'vae.poses': imported data has no truth; use star, network or refine")
    size = v["size"] or cfg["preprocess"]["size"]
    if size > cfg["preprocess"]["size"]:
        raise CryopipeError(f"config key 'vae.size': {size} px is larger than preprocess.size")
    engine = {k: cfg["train"][k] for k in ("amp", "channels_last", "num_workers")}  # how, not what, it trains
    return {**v, **engine, "size": size, "seed": cfg["seed"], "device": cfg["device"]}


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--star", required=True, help="preprocess/<dataset>/particles.star (images, CTF, poses for 'star')")
    p.add_argument("--poses", nargs="*", default=[], help="STAR files or truth.csv with the poses (none: the STAR's)")
    p.add_argument("--out-model", required=True, help="output: best weights + settings (.pt)")
    p.add_argument("--out-history", required=True, help="output: per-epoch losses (.csv)")
    p.add_argument("--out-curve", required=True, help="output: learning curve (.png)")
    p.add_argument("--out-latent", required=True, help="output: particle, subset, z1 … z<zdim> (.csv)")
    p.add_argument("--out-star", required=True, help="output: the particles with the poses the VAE used (.star)")
    p.add_argument("--stop-after", type=int, help="train at most this many epochs in this run; the next run resumes")


def load_vae(path: str, device: str = "cpu"):
    """(model in eval mode, meta) from a vae-train checkpoint."""
    import torch

    from cryopipe.vae.model import build_vae

    ck = torch.load(path, map_location=device, weights_only=False)
    model = build_vae(**ck["meta"]["model"])
    model.load_state_dict(ck["model"])
    return model.to(device).eval(), ck["meta"]


def hartley_scale(dataset, model, n: int = 1000) -> float:
    """The std of the images' Hartley values at the VAE's box (an evenly spaced sample of up to n images)."""
    import torch

    from cryopipe.imaging.hartley import hartley

    rows = torch.linspace(0, len(dataset) - 1, min(n, len(dataset))).long().tolist()
    images = torch.stack([dataset[i][0] for i in rows])
    return float(hartley(model.crop(images), 2).std())


def encode_all(model, dataset, batch_size: int, device: str):
    """(n, zdim) encoder means for every item of `dataset`, in order."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm import tqdm

    from cryopipe.nn.engine import collate

    out = []
    with torch.no_grad():
        for imgs, targets, _ in tqdm(
            DataLoader(dataset, batch_size=batch_size, collate_fn=collate), desc="encode", mininterval=5
        ):
            out.append(model.encode(imgs.to(device), {k: v.to(device) for k, v in targets.items()})[0].float().cpu())
    return torch.cat(out).numpy()


def main(args: argparse.Namespace) -> None:
    from pathlib import Path

    import numpy as np
    import pandas as pd
    import torch
    from torch.utils.data import Subset

    from cryopipe.device import pick_device
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.star import write_star
    from cryopipe.nn.data import ParticleDataset
    from cryopipe.nn.engine import TrainSettings, fit, publish
    from cryopipe.vae.data import posed_particles, vae_optics, vae_targets
    from cryopipe.vae.model import build_vae

    params = resolve_params(args, params_from_config)
    particles, optics = posed_particles(args.star, args.poses)
    box = params["size"]
    optics_vae, flipped = vae_optics(optics, box, args.star)
    dataset = ParticleDataset(particles, args.star, vae_targets(particles))
    rng = np.random.default_rng(params["seed"])
    n_val = int(round(params["validation_fraction"] * len(particles)))
    order = rng.permutation(len(particles))
    val_rows, train_rows = np.sort(order[:n_val]), np.sort(order[n_val:])
    zdim = params["zdim"]
    settings_model = {
        "box": box,
        "zdim": zdim,
        "encoder": params["encoder"],
        "hidden": params["hidden"],
        "layers": params["layers"],
        "beta": 1.0 / zdim if params["beta"] is None else params["beta"],
        "optics": optics_vae,
        "phase_flipped": flipped,
        "n_freqs": params["n_freqs"] or box // 2,
    }
    torch.manual_seed(params["seed"])
    model = build_vae(**settings_model, scale=1.0)
    model.scale = scale = hartley_scale(dataset, model)  # the Fourier crop it measures at does not need it
    meta = {"model": {**settings_model, "scale": scale}, "poses": params["poses"], "n_particles": len(particles)}
    device = pick_device(params["device"])
    settings = TrainSettings.from_params(
        {**params, "lr_step": params["epochs"] + 1, "augment_inplane": False}, device=device
    )
    print(
        f"vae-train: {len(train_rows)} training + {len(val_rows)} held-out particles at {box} px "
        f"({optics_vae['pixel_size']:.3g} Å/px, {'|CTF|, phase-flipped' if flipped else 'CTF'}), poses: "
        f"{params['poses']}, zdim {zdim}, β {settings_model['beta']:.3g}, encoder {params['encoder']}, device {device}"
    )
    out_dir = Path(args.out_model).parent
    history = fit(
        model,
        Subset(dataset, train_rows.tolist()),
        Subset(dataset, val_rows.tolist()),
        settings,
        out_dir,
        meta=meta,
        resume=True,
        stop_after=args.stop_after,
    )
    history = publish(out_dir, history, args.out_model, args.out_history, args.out_curve)

    best, _ = load_vae(args.out_model, device)
    z = encode_all(best, dataset, params["batch_size"] * 4, device)
    latent = pd.DataFrame({"particle": particles["particle"].to_numpy()})
    latent["subset"] = np.where(np.isin(np.arange(len(particles)), val_rows), "validation", "train")
    for k in range(zdim):
        latent[f"z{k + 1}"] = z[:, k]
    with atomic_path(args.out_latent) as tmp:
        latent.to_csv(tmp, index=False, float_format="%.6f")
    write_star(args.out_star, particles.drop(columns="particle"), optics)
    seconds = history["seconds"].median() if len(history) else float("nan")
    print(
        f"vae-train: {len(history)} epochs ({seconds:.1f} s per epoch, median), best held-out loss "
        f"{history['val_loss'].min():.4f}; z std per dimension {np.round(z.std(0), 3).tolist()}"
    )
