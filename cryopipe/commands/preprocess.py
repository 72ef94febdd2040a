"""Preprocess: phase flip, Fourier-crop downsampling, normalisation; split into image set 1 / set 2."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_star", "out_mrcs", "out_split", "out_set1", "out_set2", "out_preview"]


def params_from_config(cfg: dict) -> dict:
    p = {
        **cfg["preprocess"],
        "seed": cfg["seed"],
        "allow_subset": cfg["data"]["import"]["allow_subset"],
        "device": cfg["device"],
    }
    # Images simulated without a CTF have nothing to flip.
    p["phase_flip"] = p["phase_flip"] and (cfg["simulate"]["ctf"] or cfg["data"]["source"] == "import")
    return p


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--star", required=True, help="input RELION 3.1 particles.star (from simulate or import)")
    p.add_argument("--out-star", required=True)
    p.add_argument("--out-mrcs", required=True)
    p.add_argument("--out-split", required=True, help="output table particle → image_set (1/2), subset")
    p.add_argument("--out-set1", required=True, help="output STAR of image set 1")
    p.add_argument("--out-set2", required=True, help="output STAR of image set 2")
    p.add_argument("--out-preview", required=True, help="output montage (.png)")


def main(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from tqdm import tqdm

    from cryopipe.device import pick_device
    from cryopipe.errors import CryopipeError
    from cryopipe.imaging.preprocess import preprocess_batch, split_sets
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.checks import check_particle_set
    from cryopipe.io.mrc import StackWriter
    from cryopipe.io.star import image_names, load_images, read_star, write_star
    from cryopipe.plots import save_montage

    params = resolve_params(args, params_from_config)
    particles, optics = read_star(args.star)
    # Every check of the STAR and the stacks' headers (cryopipe/io/checks.py), before any output.
    particles, optics = check_particle_set(particles, optics, args.star, params["allow_subset"])
    optics_row = optics.iloc[0].to_dict()
    L, size = int(optics_row["rlnImageSize"]), params["size"]
    if size > L:
        raise CryopipeError(f"config key 'preprocess.size': {size} px is larger than the images ({L} px)")
    device = pick_device(params["device"])
    bs, n = params["batch_size"], len(particles)
    with StackWriter(args.out_mrcs, n, size, optics_row["rlnImagePixelSize"] * L / size) as out:
        for lo in tqdm(range(0, n, bs), desc="preprocess", mininterval=2):
            rows = np.arange(lo, min(lo + bs, n))
            raw = load_images(particles, args.star, rows)
            bad = np.nonzero(~np.isfinite(raw).all(axis=(1, 2)))[0]
            if len(bad):
                raise CryopipeError(
                    f"{args.star}: particle row {rows[bad[0]] + 1} "
                    f"({particles['rlnImageName'].iloc[rows[bad[0]]]}) has NaN/Inf pixels"
                )
            imgs = preprocess_batch(
                torch.as_tensor(raw, dtype=torch.float64, device=device),
                particles.iloc[rows],
                optics_row,
                size=size,
                do_phase_flip=params["phase_flip"],
                background_radius=params["background_radius"],
            )
            out.write(lo, imgs.cpu().numpy().astype(np.float32))
            if lo == 0:
                preview = imgs[:16].cpu().numpy()
    new = particles.copy()
    new["rlnImageName"] = image_names(args.out_mrcs, n)
    new_optics = optics.copy()
    new_optics["rlnImagePixelSize"] = optics_row["rlnImagePixelSize"] * L / size
    new_optics["rlnImageSize"] = size
    new_optics["rlnCtfDataArePhaseFlipped"] = int(params["phase_flip"])
    split = split_sets(
        n, params["seed"], params["set1_fraction"], params["validation_fraction"], params["test_fraction"]
    )
    write_star(args.out_star, new, new_optics)
    write_star(args.out_set1, new[split["image_set"].to_numpy() == 1], new_optics)
    write_star(args.out_set2, new[split["image_set"].to_numpy() == 2], new_optics)
    with atomic_path(args.out_split) as tmp:
        split.to_csv(tmp, index=False)
    save_montage(
        args.out_preview, preview, f"preprocessed ({size} px, {new_optics['rlnImagePixelSize'].iloc[0]:.3g} Å/px)"
    )
    counts = split["subset"].value_counts().to_dict()
    print(f"preprocess: {n} images {L}→{size} px; split {counts}")
