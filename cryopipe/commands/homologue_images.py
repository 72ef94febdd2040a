"""Homologue images: one SNR's data set of the classification benchmark (RELION STAR + MRCS).

The noiseless images of `homologue-signal` plus noise of one level per stack (SNR = mean signal variance in
the particle disc / noise variance, as `simulate` defines it). The STAR carries the poses, defoci and
rlnClassNumber (1-based, the class in truth.csv + 1): the labels a supervised classifier learns from.
"""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_star", "out_mrcs", "out_preview"]


def params_from_config(cfg: dict) -> dict:
    from cryopipe.commands import homologue_signal

    return homologue_signal.params_from_config(cfg)


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--snr", type=float, required=True, help="signal-to-noise ratio of this data set")
    p.add_argument("--classes", required=True, help="classification/classes.npz")
    p.add_argument("--signal", required=True, help="classification/signal.mrcs")
    p.add_argument("--truth", required=True, help="classification/truth.csv")
    p.add_argument("--out-star", required=True)
    p.add_argument("--out-mrcs", required=True)
    p.add_argument("--out-preview", required=True, help="output: montage of the first images (.png)")


def main(args: argparse.Namespace) -> None:
    import pandas as pd
    from tqdm import tqdm

    from cryopipe.commands.homologue_signal import STREAM, load_renderer
    from cryopipe.errors import CryopipeError
    from cryopipe.imaging.simulate import noise_variance_for_snr
    from cryopipe.io.mrc import StackReader, StackWriter
    from cryopipe.io.star import DEFOCUS, POSE, image_names, make_optics, write_star
    from cryopipe.plots import save_montage

    params = resolve_params(args, params_from_config)
    if not args.snr > 0:
        raise CryopipeError(f"--snr must be positive, got {args.snr}")
    renderer, _ = load_renderer(params, args.classes)
    truth = pd.read_csv(args.truth)
    signal = StackReader(args.signal)
    if signal.shape[0] != len(truth):
        raise CryopipeError(f"{args.signal}: {signal.shape[0]} images, but {args.truth} has {len(truth)} rows")
    noise_var = noise_variance_for_snr(truth["signal_variance"].to_numpy(), args.snr)
    n, bs = len(truth), params["batch_size"]
    stream = f"{STREAM}_snr{args.snr:g}"  # every SNR its own noise
    with StackWriter(args.out_mrcs, n, params["box"], params["pixel_size"]) as out:
        for i in tqdm(range(0, n, bs), desc=f"homologue images SNR {args.snr:g}", mininterval=2):
            b = truth.iloc[i : i + bs]
            noise = renderer.noise(b, noise_var, params["noise_before_ctf"], params["seed"], stream).cpu().numpy()
            noisy = signal.read(list(range(i, i + len(b)))) + noise
            out.write(i, noisy)
            if i == 0:
                preview = noisy[:16]
    particles = pd.concat([truth[POSE], truth[DEFOCUS]], axis=1)
    particles.insert(0, "rlnImageName", image_names(args.out_mrcs, n))
    particles["rlnClassNumber"] = truth["class"] + 1
    particles["rlnOpticsGroup"] = 1
    optics = make_optics(
        params["pixel_size"],
        params["box"],
        params["voltage"],
        params["spherical_aberration"],
        params["amplitude_contrast"],
    )
    write_star(args.out_star, particles, optics)
    save_montage(args.out_preview, preview, f"SNR {args.snr:g}: first {len(preview)} of {n} particles")
    print(f"homologue-images: SNR {args.snr:g}: {n} images, noise variance {noise_var:.4g}")
