"""Backproject: two half maps and the full map of a group from its STAR subset (original-size images)."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_half1", "out_half2", "out_map"]


def params_from_config(cfg: dict) -> dict:
    return {**cfg["analysis"]["backproject"], "device": cfg["device"]}


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--star", required=True, help="particles with poses, CTF and original images (a group STAR)")
    p.add_argument("--out-half1", required=True, help="output half map 1 (.mrc)")
    p.add_argument("--out-half2", required=True, help="output half map 2 (.mrc)")
    p.add_argument("--out-map", required=True, help="output full map (.mrc)")


def main(args: argparse.Namespace) -> None:
    import time

    import numpy as np
    from tqdm import tqdm

    from cryopipe.analysis.reconstruct import reconstruct_halves
    from cryopipe.device import pick_device
    from cryopipe.errors import CryopipeError
    from cryopipe.io.mrc import write_mrc
    from cryopipe.io.star import POSE, read_star

    params = resolve_params(args, params_from_config)
    particles, optics = read_star(args.star)
    if len(optics) > 1:
        raise CryopipeError(f"{args.star}: {len(optics)} optics groups; only one is supported")
    optics_row = optics.iloc[0].to_dict()
    missing = [c for c in POSE if c not in particles.columns]
    if missing:
        raise CryopipeError(f"{args.star}: column '{missing[0]}' missing (poses are needed to backproject)")
    L, apix = int(optics_row["rlnImageSize"]), float(optics_row["rlnImagePixelSize"])
    if len(particles) < params["min_images"]:
        # Too few images for a map (e.g. an empty polygon): write zeros so the group stays visible downstream.
        for path in (args.out_half1, args.out_half2, args.out_map):
            write_mrc(path, np.zeros((L, L, L), np.float32), apix)
        print(
            f"backproject: {len(particles)} images < analysis.backproject.min_images "
            f"({params['min_images']}); empty maps"
        )
        return
    t0 = time.perf_counter()
    with tqdm(total=len(particles), desc="backproject", mininterval=2) as bar:
        out = reconstruct_halves(
            particles,
            optics_row,
            args.star,
            pad=params["pad"],
            wiener=params["wiener"],
            batch_size=params["batch_size"],
            device=pick_device(params["device"]),
            progress=bar,
        )
    for key, path in (("half1", args.out_half1), ("half2", args.out_half2), ("full", args.out_map)):
        write_mrc(path, out[key].numpy().astype(np.float32), apix)
    dt = time.perf_counter() - t0
    print(
        f"backproject: {len(particles)} images {L} px ({apix:.3g} Å/px) in {dt:.1f} s "
        f"({len(particles) / dt:.1f} images/s)"
    )
