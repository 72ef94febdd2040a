"""Simulate: one SNR × defocus grid point → particles.mrcs + RELION 3.1 particles.star + ground truth."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_star", "out_mrcs", "out_truth", "out_preview"]


def dataset_name(snr: float, defocus: list[float]) -> str:
    """Grid point → folder name, e.g. snr0.1_df0.5-2.0 (parsed back by `parse_dataset_name`)."""
    return f"snr{snr:g}_df{defocus[0]:g}-{defocus[1]:g}"


def parse_dataset_name(name: str) -> tuple[float, tuple[float, float]]:
    import re

    from cryopipe.errors import CryopipeError

    m = re.fullmatch(r"snr([0-9.eE+-]+)_df([0-9.eE+]+)-([0-9.eE+]+)", name)
    if not m:
        raise CryopipeError(f"dataset '{name}' is not a simulated grid point (snr<S>_df<lo>-<hi>)")
    return float(m.group(1)), (float(m.group(2)), float(m.group(3)))


def params_from_config(cfg: dict) -> dict:
    from cryopipe.commands.reference import model_resolution

    s = {k: v for k, v in cfg["simulate"].items() if k != "grid"}  # grid values come from the dataset name
    if s["density"] != "scattering":
        s.pop("atom_b_factor")
    return {
        **s,
        "seed": cfg["seed"],
        "resolution": model_resolution(cfg),
        **motion_params(cfg),
        "device": cfg["device"],
    }


def motion_params(cfg: dict) -> dict:
    """What moves the simulated atoms (`truth_motion`): the modes, or the morph between two structures."""
    c = cfg["conformations"]
    return {
        "distribution": c["distribution"],
        "modes": c["modes"],
        **({"morph": c["morph"]} if c["distribution"] == "morph" else {}),
    }


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--dataset", required=True, help="grid point name, e.g. snr0.1_df0.5-2.0")
    p.add_argument("--atoms", required=True)
    p.add_argument("--modes", required=True)
    p.add_argument("--conformations", required=True, help="ground-truth table from `conformations`")
    p.add_argument("--out-star", required=True, help="output particles.star")
    p.add_argument("--out-mrcs", required=True, help="output particles.mrcs")
    p.add_argument("--out-truth", required=True, help="output ground truth of this grid point (.csv)")
    p.add_argument("--out-preview", required=True, help="output montage of the first images (.png)")


def main(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd
    from tqdm import tqdm

    from cryopipe.device import pick_device
    from cryopipe.errors import CryopipeError
    from cryopipe.imaging.project import sigma_for_resolution
    from cryopipe.imaging.simulate import Optics, Simulator, consensus_poses, draw_defocus, noise_variance_for_snr
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.mrc import StackWriter
    from cryopipe.io.star import DEFOCUS, POSE, image_names, make_optics, write_star
    from cryopipe.io.structure import Atoms, element_symbols
    from cryopipe.plots import save_montage
    from cryopipe.structure.conformations import truth_motion
    from cryopipe.structure.modes import Modes

    params = resolve_params(args, params_from_config)
    snr, defocus = parse_dataset_name(args.dataset)
    if not snr > 0:
        raise CryopipeError(f"dataset {args.dataset}: SNR must be positive")
    atoms, modes = Atoms.load(args.atoms), Modes.load(args.modes)
    truth = pd.read_csv(args.conformations)
    motion, cols = truth_motion(params, atoms, modes)
    missing = [c for c in cols + ["particle", "rlnAngleRot", "rlnOriginXAngst"] if c not in truth.columns]
    if missing:
        raise CryopipeError(f"{args.conformations}: missing column {missing[0]}")
    n = len(truth)
    du, dv, ang = draw_defocus(n, defocus, params["astigmatism"], params["seed"], args.dataset)
    truth["rlnDefocusU"], truth["rlnDefocusV"], truth["rlnDefocusAngle"] = du, dv, ang
    truth["snr"] = snr
    optics = Optics.from_params(params)
    bfactors = None
    if params["density"] == "scattering":
        bfactors = (
            atoms.bfactors if params["atom_b_factor"] is None else np.full(len(atoms.coords), params["atom_b_factor"])
        )
        if bfactors is None:
            raise CryopipeError(
                f"{args.atoms}: no B-factors (made by an older version); rerun `reference` or set "
                "simulate.atom_b_factor"
            )
    sim = Simulator(
        atoms.coords,
        atoms.weights,
        motion,
        optics,
        sigma=sigma_for_resolution(params["resolution"]),
        ctf=params["ctf"],
        pad_factor=params["pad_factor"],
        device=pick_device(params["device"]),
        density=params["density"],
        elements=element_symbols(atoms.elements, atoms.names),
        bfactors=bfactors,
    )
    bs = params["batch_size"]
    batches = [(i, truth.iloc[i : i + bs]) for i in range(0, n, bs)]
    with StackWriter(args.out_mrcs, n, params["box"], params["pixel_size"]) as out:
        # Pass 1: noiseless signal into the stack, and its variance over each particle.
        var = np.zeros(n)
        for i, b in tqdm(batches, desc=f"{args.dataset} signal", mininterval=2):
            sig = sim.signal(b, cols)
            var[i : i + len(b)] = sim.signal_variance(sig, b)
            out.write(i, sig.cpu().numpy())
        # One noise level for the whole stack (as on a micrograph) from the mean signal variance.
        noise_var = noise_variance_for_snr(var, snr)
        # Pass 2: add the noise in place.
        for i, b in tqdm(batches, desc=f"{args.dataset} noise", mininterval=2):
            noisy = (
                out.read(i, len(b))
                + sim.noise(b, noise_var, params["noise_before_ctf"], params["seed"], args.dataset).cpu().numpy()
            )
            out.write(i, noisy)
            if i == 0:
                preview = noisy[:16]
    particles = truth[DEFOCUS].copy()
    err = params["star_pose_error"]
    poses = consensus_poses(truth, err["angle"], err["shift"], params["seed"], args.dataset)
    particles = pd.concat([poses[POSE], particles], axis=1)
    particles.insert(0, "rlnImageName", image_names(args.out_mrcs, n))
    particles["rlnOpticsGroup"] = 1
    write_star(
        args.out_star,
        particles,
        make_optics(
            params["pixel_size"],
            params["box"],
            params["voltage"],
            params["spherical_aberration"],
            params["amplitude_contrast"],
        ),
    )
    truth["noise_variance"] = noise_var
    with atomic_path(args.out_truth) as tmp:
        truth.to_csv(tmp, index=False, float_format="%.6f")
    save_montage(args.out_preview, preview, f"{args.dataset}: first {len(preview)} of {n} particles")
    print(
        f"simulate: {args.dataset}: {n} images {params['box']}² px, mean signal var {var.mean():.4g}, "
        f"noise var {noise_var:.4g}"
    )
