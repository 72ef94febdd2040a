"""Evaluate: half-map FSC of every group map and, for simulated data, FSC against its ground-truth centroid map."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_fsc", "out_resolutions", "out_plot"]


def params_from_config(cfg: dict) -> dict:
    from cryopipe.commands.simulate import motion_params

    return {**cfg["analysis"]["evaluate"], "resolution": cfg["reference"]["resolution"], **motion_params(cfg)}


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--groups-table", required=True, help="analysis/<dataset>/groups.csv from `cluster`")
    p.add_argument("--half1", required=True, nargs="+", help="half map 1 of each group, in group order")
    p.add_argument("--half2", required=True, nargs="+", help="half map 2 of each group")
    p.add_argument("--maps", required=True, nargs="+", help="full map of each group")
    p.add_argument("--atoms", required=True, help="reference/atoms.npz (the FSC mask; ground-truth maps)")
    p.add_argument("--modes", required=True, help="modes/modes.npz (ground-truth maps)")
    p.add_argument("--truth", help="ground truth (simulated data): FSC against each group's centroid conformation")
    p.add_argument("--out-fsc", required=True, help="curves (.csv: group, shell, frequency, fsc_half, fsc_truth)")
    p.add_argument("--out-resolutions", required=True, help="output table per group (.csv)")
    p.add_argument("--out-plot", required=True, help="output FSC figure (.png)")


def centroid_map(truth, particles, atoms, motion, names, size: int, pixel_size: float, resolution: float):
    """Map of the mean true conformation of `particles`: reference + Σ mean(truth column) · motion field
    (`truth_motion`: the modes, or the morph), with the Gaussians of the alignment's model."""
    import numpy as np
    import torch

    from cryopipe.imaging.project import atoms_to_map, sigma_for_resolution
    from cryopipe.structure.modes import deform

    centroid = truth.loc[particles, names].to_numpy().mean(0)
    coords = deform(atoms.coords, motion, centroid)
    vol = atoms_to_map(
        torch.as_tensor(coords),
        torch.as_tensor(atoms.weights),
        pixel_size=pixel_size,
        size=size,
        sigma=sigma_for_resolution(resolution),
    )
    return vol, dict(zip(names, np.round(centroid, 3)))


def view_concentration(euler) -> float:
    """|mean viewing direction|: ≈ 0 for views spread over the sphere, 1 when every image has the same view.

    A half-map FSC only measures agreement between halves: when predicted poses collapse onto few
    views, both halves converge to the same rotational average and agree to high resolution without
    being right. A high value here flags that.
    """
    import numpy as np
    import torch

    from cryopipe.geometry import euler_to_matrix

    if len(euler) == 0:
        return float("nan")
    A = euler_to_matrix(torch.as_tensor(np.asarray(euler, dtype=np.float64)))
    return float(A[:, 2, :].mean(0).norm())  # the beam direction in the volume frame is A's third row


def main(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd
    import torch

    from cryopipe.analysis.fsc import fsc, resolution_at, soft_sphere
    from cryopipe.errors import CryopipeError
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.mrc import read_mrc
    from cryopipe.io.star import EULER
    from cryopipe.io.structure import Atoms
    from cryopipe.plots import save_fsc
    from cryopipe.structure.conformations import truth_motion
    from cryopipe.structure.modes import Modes

    params = resolve_params(args, params_from_config)
    if not len(args.half1) == len(args.half2) == len(args.maps):
        raise CryopipeError("--half1, --half2 and --maps must list the same number of groups")
    groups = pd.read_csv(args.groups_table)
    atoms, modes = Atoms.load(args.atoms), Modes.load(args.modes)
    truth = pd.read_csv(args.truth).set_index("particle") if args.truth else None
    motion, names = truth_motion(params, atoms, modes) if truth is not None else (None, [])
    curves, rows, plot_curves = [], [], {}
    for g, (p1, p2, pm) in enumerate(zip(args.half1, args.half2, args.maps)):
        h1, apix = read_mrc(p1)
        h2, _ = read_mrc(p2)
        full, _ = read_mrc(pm)
        L = h1.shape[-1]
        # Soft spherical mask around the reference (all conformations fit: modes move atoms a few Å).
        radius = (np.linalg.norm(atoms.coords, axis=1).max() + params["mask_margin"]) / apix
        mask = soft_sphere(L, min(radius, L / 2 - 3), 3.0)
        members = groups.loc[groups["group"] == g, "particle"].to_numpy()
        freq = np.arange(L // 2) / (L * apix)
        row: dict[str, float] = {"group": g, "images": len(members)}
        if set(EULER) <= set(groups.columns):
            sel = groups.loc[groups["group"] == g, EULER].to_numpy()
            row["view concentration"] = view_concentration(sel)
        empty = not np.any(h1) or not np.any(h2)
        fh = np.full(L // 2, np.nan) if empty else fsc(torch.as_tensor(h1) * mask, torch.as_tensor(h2) * mask)[1]
        row["resolution half-maps @0.143 (Å)"] = np.nan if empty else resolution_at(fh, L, apix, 0.143)
        ft = np.full(L // 2, np.nan)
        if truth is not None and len(members):
            ref, centroid = centroid_map(truth, members, atoms, motion, names, L, apix, params["resolution"])
            if not empty:
                ft = fsc(torch.as_tensor(full) * mask, ref * mask)[1]
            row["resolution vs truth @0.5 (Å)"] = np.nan if empty else resolution_at(ft, L, apix, 0.5)
            row["resolution vs truth @0.143 (Å)"] = np.nan if empty else resolution_at(ft, L, apix, 0.143)
            row.update({f"true centroid {k}": v for k, v in centroid.items()})
        rows.append(row)
        curves.append(
            pd.DataFrame({"group": g, "shell": np.arange(L // 2), "frequency": freq, "fsc_half": fh, "fsc_truth": ft})
        )
        if not empty:
            plot_curves[f"group {g} half maps"] = (freq, fh)
            if truth is not None:
                plot_curves[f"group {g} vs truth"] = (freq, ft)
    table = pd.DataFrame(rows)
    with atomic_path(args.out_fsc) as tmp:
        pd.concat(curves, ignore_index=True).to_csv(tmp, index=False, float_format="%.5f")
    with atomic_path(args.out_resolutions) as tmp:
        table.to_csv(tmp, index=False, float_format="%.3f")
    save_fsc(
        args.out_plot, plot_curves, title="FSC (soft spherical mask): half maps, and full map vs ground-truth centroid"
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(table.to_string(index=False))
