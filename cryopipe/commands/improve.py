"""Improve: a group map's classical improvements (FSC-weighted; B-factor-sharpened: `--out-fsc-weighted`,
`--out-sharpened`) and/or, with a trained network (`improve-train`, `--model`), the network's map (`--out-network`),
each written beside the raw map at its grid and voxel size."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_fsc_weighted", "out_sharpened", "out_network", "out_info"]


def params_from_config(cfg: dict) -> dict:
    imp = cfg["analysis"]["improve"]
    ev = cfg["analysis"]["evaluate"]
    return {
        **{k: imp[k] for k in ("stride", "min_density", "batch_size")},
        **{k: ev[k] for k in ("mask", "mask_margin", "mask_edge")},  # the half-map FSC's mask, as `evaluate`'s
        "seed": cfg["seed"],
        "device": cfg["device"],
    }


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--map", required=True, help="the group's full map (`backproject`)")
    p.add_argument("--half1", required=True, help="its unfiltered half map 1")
    p.add_argument("--half2", required=True, help="its unfiltered half map 2")
    p.add_argument("--atoms", required=True, help="reference/atoms.npz (the FSC mask)")
    p.add_argument("--model", help="improve-train's model (method network)")
    p.add_argument("--out-fsc-weighted", help="output: the FSC-weighted map (.mrc)")
    p.add_argument("--out-sharpened", help="output: FSC-weighted, B-factor-sharpened, low-passed (.mrc)")
    p.add_argument("--out-network", help="output: the network's map (.mrc; with --model)")
    p.add_argument("--out-info", required=True, help="output: B-factor, resolution, CPU seconds per map (.json)")


def main(args: argparse.Namespace) -> None:
    import json
    import time

    import numpy as np
    import torch
    from tqdm import tqdm

    from cryopipe.analysis.fsc import corrected_fsc
    from cryopipe.commands.evaluate import fsc_mask
    from cryopipe.commands.improve_train import load_improver
    from cryopipe.device import pick_device
    from cryopipe.errors import CryopipeError
    from cryopipe.improve.apply import improve_map
    from cryopipe.improve.sharpen import classical_maps
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.mrc import read_mrc, write_mrc
    from cryopipe.io.structure import Atoms

    params = resolve_params(args, params_from_config)
    torch.set_flush_denormal(True)  # Gaussian tails underflow to denormals: 3-D conv backward ~8× slower on CPU
    classical = bool(args.out_fsc_weighted or args.out_sharpened)
    if bool(args.model) != bool(args.out_network):
        raise CryopipeError("--model and --out-network go together (the network's map)")
    if not classical and not args.model:
        raise CryopipeError("nothing to do: give --out-fsc-weighted/--out-sharpened and/or --model/--out-network")
    full, apix = read_mrc(args.map)
    h1, _ = read_mrc(args.half1)
    h2, _ = read_mrc(args.half2)
    if not (full.shape == h1.shape == h2.shape):
        raise CryopipeError(f"{args.map}: {full.shape} voxels, its half maps {h1.shape} and {h2.shape}")
    info: dict = {"voxel_size": apix}
    empty = not np.any(h1) or not np.any(h2)  # a group too small for a map (`backproject` wrote zeros)
    if classical:
        t0 = time.process_time()
        if empty:
            maps = {"fsc_weighted": torch.zeros(full.shape), "sharpened": torch.zeros(full.shape)}
            info.update(bfactor=float("nan"), resolution=float("nan"))
        else:
            mask = fsc_mask(params, Atoms.load(args.atoms).coords, full.shape[-1], apix).float()
            half = corrected_fsc(torch.as_tensor(h1), torch.as_tensor(h2), mask, seed=params["seed"])
            maps = classical_maps(torch.as_tensor(h1), torch.as_tensor(h2), half, apix)
            info.update(bfactor=maps["bfactor"], resolution=maps["resolution"])
        info["classical_cpu_s"] = time.process_time() - t0
        for key, path in (("fsc_weighted", args.out_fsc_weighted), ("sharpened", args.out_sharpened)):
            if path:
                write_mrc(path, maps[key].numpy(), apix)
    if args.model:
        device = pick_device(params["device"])
        model, meta = load_improver(args.model, device)
        t0 = time.process_time()
        if empty:
            out = torch.zeros(full.shape)
        else:
            with tqdm(desc="boxes", mininterval=5) as bar:
                out = improve_map(
                    model,
                    torch.as_tensor(full),
                    apix,
                    net_voxel=meta["voxel_size"],
                    box=meta["box"],
                    stride=params["stride"],
                    batch_size=params["batch_size"],
                    min_density=params["min_density"],
                    device=device,
                    progress=bar,
                )
        info["network_cpu_s"] = time.process_time() - t0
        write_mrc(args.out_network, out.numpy(), apix)
    with atomic_path(args.out_info) as tmp:
        tmp.write_text(json.dumps(info, indent=1))
    print("improve: " + ", ".join(f"{k} {v:.3g}" for k, v in info.items()))
