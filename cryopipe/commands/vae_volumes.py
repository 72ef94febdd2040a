"""VAE-volumes: maps decoded by the VAE at each group's centre in z and along PC1 of z (MRC, voxel size set).

A group's centre is the mean z of its particles (`cluster`'s groups over the VAE's space); PC1 frames run
from −2σ to +2σ along the first principal axis of z (`reduce`'s pca.json over the VAE's latent.csv).
"""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_groups", "out_pc1", "out_plot"]


def params_from_config(cfg: dict) -> dict:
    return {**cfg["vae"]["volumes"], "device": cfg["device"]}


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--model", required=True, help="vae/<dataset>/model.pt from `vae-train`")
    p.add_argument("--latent", required=True, help="vae/<dataset>/latent.csv from `vae-train`")
    p.add_argument("--groups-table", required=True, help="groups.csv from `cluster` over the VAE's space")
    p.add_argument("--pca", required=True, help="pca.json from `reduce` over the VAE's latent.csv")
    p.add_argument("--out-groups", nargs="+", required=True, help="one .mrc per group, in group order")
    p.add_argument("--out-pc1", nargs="+", required=True, help="the PC1 frames (.mrc), −2σ … +2σ")
    p.add_argument("--out-plot", required=True, help="output figure (.png): central sections of every map")


def latent_points(latent, groups, pca: dict, n_groups: int, frames: int):
    """(z at each group's centre (n_groups, zdim), z along PC1 (frames, zdim), PC1 positions in σ)."""
    import numpy as np

    from cryopipe.errors import CryopipeError

    names = pca["modes"]
    joined = latent.merge(groups[["particle", "group"]], on="particle", validate="one_to_one")
    centres = []
    for g in range(n_groups):
        rows = joined[joined["group"] == g]
        if rows.empty:
            raise CryopipeError(f"group {g} has no particle in the latent table")
        centres.append(rows[names].to_numpy(np.float64).mean(0))
    t = np.linspace(-2.0, 2.0, frames)
    axis, sd = np.asarray(pca["axes"][0]), float(np.sqrt(pca["variance"][0]))
    return np.stack(centres), np.asarray(pca["mean"]) + (t * sd)[:, None] * axis, t


def main(args: argparse.Namespace) -> None:
    import json

    import numpy as np
    import pandas as pd
    import torch

    from cryopipe.commands.vae_train import load_vae
    from cryopipe.device import pick_device
    from cryopipe.errors import CryopipeError
    from cryopipe.io.mrc import write_mrc
    from cryopipe.plots import save_montage
    from cryopipe.vae.decoder import decode_map

    params = resolve_params(args, params_from_config)
    if len(args.out_pc1) != params["pc1_frames"]:
        raise CryopipeError(f"--out-pc1: {len(args.out_pc1)} files for vae.volumes.pc1_frames {params['pc1_frames']}")
    device = pick_device(params["device"])
    model, meta = load_vae(args.model, device)
    pca = json.loads(open(args.pca).read())
    centres, path, t = latent_points(
        pd.read_csv(args.latent), pd.read_csv(args.groups_table), pca, len(args.out_groups), len(args.out_pc1)
    )
    voxel = meta["model"]["optics"]["pixel_size"]
    sections = []
    for _label, points, outs in (("group", centres, args.out_groups), ("PC1", path, args.out_pc1)):
        for _k, (z, out) in enumerate(zip(points, outs)):
            vol = decode_map(model.decoder, torch.tensor(z, dtype=torch.float32, device=device), model.scale).cpu()
            write_mrc(out, vol.numpy().astype(np.float32), voxel)
            sections.append(vol.sum(0).numpy())  # the projection along z
    save_montage(
        args.out_plot,
        np.stack(sections),
        f"VAE maps projected along z: {len(centres)} group centres, then PC1 {t[0]:+.0f}σ … {t[-1]:+.0f}σ",
        ncols=len(centres) + len(path),
    )
    print(
        f"vae-volumes: {len(centres)} group maps, {len(path)} PC1 frames at {meta['model']['box']} px, {voxel:.3g} Å/px"
    )
