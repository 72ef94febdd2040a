"""Train: ResNet + MLP on image set 1 (targets from the alignment, or the ground truth as an ablation), on
images simulated on the fly from the reference, the modes and a noise model measured on set 1
(`train.source: simulation`), or on both in turn (`both`: simulation, then set 1)."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_model", "out_history", "out_curve"]
KIND_CHOICES = ("amplitudes", "orientation", "shifts", "combined")


def params_from_config(cfg: dict) -> dict:
    from cryopipe.commands import align

    t = dict(cfg["train"])
    a = align.params_from_config(cfg)
    out = {**t, "seed": cfg["seed"], "device": cfg["device"], "modes": a["modes"]}
    if t["source"] != "alignment":  # what the training simulator renders with, as the alignment fits
        out.update(resolution=a["resolution"], ctf=a["ctf"], background_radius=cfg["preprocess"]["background_radius"])
    return out


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--kind", required=True, choices=KIND_CHOICES, help="what this network predicts")
    p.add_argument("--star", required=True, help="aligned image set 1 (align/<dataset>/particles.star)")
    p.add_argument("--amplitudes", required=True, help="align/<dataset>/amplitudes.csv (amplitudes, kept)")
    p.add_argument("--split", required=True, help="preprocess/<dataset>/split.csv (train/validation/test)")
    p.add_argument("--truth", help="ground truth, for targets: ground_truth")
    p.add_argument("--atoms", help="reference atoms (reference/atoms.npz): needed by train.source simulation/both")
    p.add_argument("--modes", help="normal modes (modes/modes.npz): needed by train.source simulation/both")
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


def training_simulator(params: dict, args: argparse.Namespace, optics, std, kinds, cols, device: str):
    """The on-the-fly simulator for these settings; everything it draws from comes from set 1's STAR and
    the alignment's estimates (`cryopipe.nn.simulated`), never from a ground truth."""
    import numpy as np
    import torch

    from cryopipe.align.model import heavy_atom_reference
    from cryopipe.errors import CryopipeError
    from cryopipe.imaging.project import sigma_for_resolution
    from cryopipe.imaging.simulate import particle_radius
    from cryopipe.io.star import DEFOCUS, ORIGIN, load_images, read_star
    from cryopipe.io.structure import Atoms
    from cryopipe.nn.simulated import (
        NoiseModel,
        TrainingPrior,
        TrainingSimulator,
        fitted_projections,
        particle_discs,
    )
    from cryopipe.structure.modes import Modes

    if not args.atoms or not args.modes:
        raise CryopipeError(f"config key 'train.source' {params['source']}: give --atoms and --modes")
    sim = params["simulation"]
    # The alignment's estimates of the kept training images (also under targets: ground_truth).
    table, _, _ = training_tables({**params, "targets": "alignment"}, args.star, args.amplitudes, args.split, None)
    fits = table[table["subset"] == "train"].reset_index(drop=True)
    if len(fits) < 2:
        raise CryopipeError(f"{args.amplitudes}: fewer than 2 kept training images to measure the noise on")
    particles, _ = read_star(args.star)  # defocus: every set-1 row (the CTF estimates, outliers too; not a truth)
    atoms, modes = Atoms.load(args.atoms), Modes.load(args.modes)
    sigma = sigma_for_resolution(params["resolution"])
    # Hydrogens merged into their heavy atoms: the alignment's fine model, half the Gaussians to render.
    ref = heavy_atom_reference(atoms.coords, atoms.weights, modes.select(params["modes"]), atoms.elements, sigma)
    optics_row = optics.iloc[0].to_dict()
    L, px = int(optics_row["rlnImageSize"]), float(optics_row["rlnImagePixelSize"])
    sample = fits.iloc[np.linspace(0, len(fits) - 1, min(len(fits), 2000)).astype(int)].reset_index(drop=True)
    images = torch.as_tensor(np.asarray(load_images(sample, args.star), dtype=np.float32))
    fitted = fitted_projections(ref, sample, sample[cols].to_numpy(dtype=np.float64), optics_row, ctf=params["ctf"])
    radius = particle_radius(ref.coords.numpy(), sigma) / px
    noise = NoiseModel.from_fits(images, fitted, particle_discs(sample, radius, L, px))
    measured = noise.snr
    if sim["snr"] is not None:
        noise.snr = float(sim["snr"])
    box = None if sim["amplitude_box"] is None else np.asarray(sim["amplitude_box"], dtype=np.float64)
    if box is not None and box.shape != (len(cols), 2):
        raise CryopipeError(f"config key 'train.simulation.amplitude_box': needs one [lo, hi] per mode of {cols}")
    shifts = np.linalg.norm(fits[ORIGIN].to_numpy(dtype=np.float64), axis=1)
    prior = TrainingPrior(
        amplitudes=fits[cols].to_numpy(dtype=np.float64),
        broadening=sim["amplitude_broadening"],
        max_shift=float(np.percentile(shifts, 99)),
        defocus=particles[DEFOCUS].to_numpy(dtype=np.float64),
        noise=noise,
        box=box,
    )
    print(
        f"train: simulator: SNR {noise.snr:.3g} in the preprocessed images (measured on {len(sample)} set-1 fits: "
        f"{measured:.3g}), origins within {prior.max_shift:.2f} Å, amplitudes "
        + ("uniform in the config's box" if box is not None else f"set-1 estimates ± {sim['amplitude_broadening']}σ")
        + f", rendered at {sim['oversample']}× {L} px"
    )
    return TrainingSimulator(
        ref.coords.numpy(),
        ref.weights.numpy(),
        ref.modes.numpy(),
        sigma,
        prior,
        optics_row,
        cols,
        kinds=kinds,
        standardise=std.forward,
        seed=params["seed"],
        batch_size=params["batch_size"],
        images_per_epoch=sim["images_per_epoch"],
        oversample=sim["oversample"],
        background_radius=params["background_radius"],
        ctf=params["ctf"],
        device=device,
    )


def phase_finished(history, epochs: int, patience: int) -> bool:
    """Whether a training phase with this history ran all its `epochs` or stopped early (`patience` epochs
    without a better validation loss, as the engine stops), rather than being cut short by --stop-after."""
    since_best = len(history) - 1 - int(history["val_loss"].to_numpy().argmin())
    return len(history) >= epochs or since_best >= patience


def main(args: argparse.Namespace) -> None:
    from pathlib import Path

    import pandas as pd
    import torch

    from cryopipe.device import pick_device
    from cryopipe.errors import CryopipeError
    from cryopipe.nn.data import ParticleDataset
    from cryopipe.nn.engine import TrainSettings, distributed, fit, publish
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
    model = Regressor(
        kinds,
        len(cols),
        depth=params["depth"],
        dropout=params["dropout"],
        image_size=size,
        hypotheses=params["hypotheses"],
        width=params["width"],
        input_size=params["input_size"],
        orientation_bins=params["bin_spacing"] if params["orientation"] == "bins" else None,
        bin_weight=params["bin_weight"],
    )
    meta = {
        "kinds": list(kinds),
        "n_modes": len(cols),
        "modes": cols,
        "depth": params["depth"],
        "dropout": params["dropout"],
        "standardiser": std.state(),
        "image_size": size,
        "targets": params["targets"],
        "architecture": model.config(),
        "source": params["source"],
    }
    settings = TrainSettings.from_params(params, device=pick_device(params["device"]))
    out_dir = Path(args.out_model).parent
    source = params["source"]
    print(
        f"train: {args.kind}, ResNet{params['depth']} (width {params['width']}, input "
        f"{model.input_size or size} px, {model.hypotheses} orientation hypotheses"
        f"{'' if model.orientation_bins is None else f' from {len(model.orientation_bins)} bins'}), source {source}: "
        f"{len(train)} training / {len(val)} validation images of set 1, targets from {params['targets']}, "
        f"device {settings.device}"
    )
    phases = []
    state = None
    if source in ("simulation", "both"):
        # Each torchrun process renders on its own GPU (the engine trains rank r on cuda:<local rank>).
        render_device = f"cuda:{distributed()[2]}" if settings.device == "cuda" else settings.device
        simulator = training_simulator(params, args, optics, std, kinds, cols, render_device)
        sim = params["simulation"]
        sim_settings = TrainSettings.from_params(
            {**params, "epochs": sim["epochs"], "lr": sim["lr"] or params["lr"]}, device=settings.device
        )
        # Validated on real set-1 images with the alignment's labels: the gap from simulation to data shows.
        sim_dir = out_dir if source == "simulation" else out_dir / "pretrain"
        phases.append(
            fit(
                model,
                simulator,
                dataset(val),
                sim_settings,
                sim_dir,
                meta={**meta, "phase": "simulation", "simulation": sim},
                resume=True,
                stop_after=args.stop_after,
            ).assign(phase="simulation")
        )
        if source == "both" and not phase_finished(phases[-1], sim["epochs"], params["patience"]):
            # --stop-after ended the run inside the simulation phase: the next run resumes it, then fine-tunes.
            print(f"train: stopped after {len(phases[-1])} of {sim['epochs']} simulation epochs; run again to resume")
            return
        state = torch.load(sim_dir / "best.pt", map_location="cpu", weights_only=False)["model"]
    if source in ("alignment", "both"):
        # Resumes from out_dir/last.pt when it was written with the same settings (e.g. after a killed job).
        phases.append(
            fit(
                model,
                dataset(train),
                dataset(val),
                settings,
                out_dir,
                meta={**meta, "phase": "alignment", "simulation": params["simulation"] if state else None},
                resume=True,
                stop_after=args.stop_after,
                initial_state=state,
            ).assign(phase="alignment")
        )
    history = pd.concat(phases, ignore_index=True)
    history["phase_epoch"] = history["epoch"]
    history["epoch"] = range(1, len(history) + 1)
    history["presentations"] = (history["train_images_per_s"] * history["seconds"]).round().cumsum().astype(int)
    history = publish(out_dir, history, args.out_model, args.out_history, args.out_curve)
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
