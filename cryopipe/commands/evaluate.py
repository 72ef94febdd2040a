"""Evaluate: the half-map FSC of every group map (unmasked, masked, and corrected for the mask by phase
randomisation: the resolution reported) and, for simulated data, the FSC against its true mean map (what its
images average to) and against its mean conformation's map."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_fsc", "out_resolutions", "out_plot"]


def params_from_config(cfg: dict) -> dict:
    from cryopipe.commands.reference import model_resolution
    from cryopipe.commands.simulate import motion_params

    return {
        **cfg["analysis"]["evaluate"],
        "resolution": model_resolution(cfg),
        "seed": cfg["seed"],
        **motion_params(cfg),
    }


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--groups-table", required=True, help="analysis/<dataset>/groups.csv from `cluster`")
    p.add_argument("--half1", required=True, nargs="+", help="half map 1 of each group, in group order")
    p.add_argument("--half2", required=True, nargs="+", help="half map 2 of each group")
    p.add_argument("--maps", required=True, nargs="+", help="full map of each group")
    p.add_argument("--atoms", required=True, help="reference/atoms.npz (the FSC mask; ground-truth maps)")
    p.add_argument("--modes", required=True, help="modes/modes.npz (ground-truth maps)")
    p.add_argument("--truth", help="ground truth (simulated data): FSC against each group's true maps")
    p.add_argument(
        "--improved",
        nargs="*",
        default=[],
        help="improved maps (`improve`), group by group, each group's in --improved-kinds order",
    )
    p.add_argument("--improved-kinds", nargs="*", default=[], help="what each group's improved maps are")
    p.add_argument("--improved-info", nargs="*", default=[], help="`improve` info files (.json), group by group")
    p.add_argument(
        "--out-fsc",
        required=True,
        help="curves (.csv: group, shell, frequency, fsc_unmasked, fsc_masked, fsc_randomised, fsc_half (corrected), "
        "fsc_truth (vs the group's true mean map), fsc_centroid (vs its mean conformation's map))",
    )
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


def group_mean_map(truth, particles, atoms, motion, names, size, pixel_size, resolution, members: int, seed: int):
    """The map a group's images actually average to: the mean of its members' true maps (over a seeded sample
    of `members` of them; the mean converges fast, the maps differ only in fine detail).

    Not the map of the mean conformation (`centroid_map`): moving atoms blur the average, so a group spread
    along a mode reproduces (and its half maps agree on) a blurred map that the centroid map does not match at
    high resolution. The half-map FSC estimates the resolution of the former.
    """
    import numpy as np
    import torch

    from cryopipe.imaging.project import atoms_to_map, sigma_for_resolution
    from cryopipe.structure.modes import deform

    pick = np.asarray(particles)
    if len(pick) > members:
        pick = np.sort(np.random.default_rng(seed).choice(pick, members, replace=False))
    total = torch.zeros(size, size, size, dtype=torch.float64)
    for p in pick:
        coords = deform(atoms.coords, motion, truth.loc[p, names].to_numpy(dtype=np.float64))
        total += atoms_to_map(
            torch.as_tensor(coords),
            torch.as_tensor(atoms.weights),
            pixel_size=pixel_size,
            size=size,
            sigma=sigma_for_resolution(resolution),
        )
    return total / len(pick)


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


def fsc_mask(params: dict, coords, size: int, pixel_size: float):
    """The half maps' FSC mask (`analysis.evaluate.mask`): around every reference atom (`molecule`) or a sphere
    around the farthest one (`sphere`), `mask_margin` Å beyond the atoms, a soft edge `mask_edge` Å wide."""
    import numpy as np

    from cryopipe.analysis.fsc import molecule_mask, soft_sphere

    if params["mask"] == "molecule":
        return molecule_mask(coords, size, pixel_size, params["mask_margin"], params["mask_edge"])
    radius = (np.linalg.norm(coords, axis=1).max() + params["mask_margin"]) / pixel_size
    edge = params["mask_edge"] / pixel_size
    return soft_sphere(size, min(radius, size / 2 - edge), edge)


def standardised(vol, weight):
    """(vol − its weighted mean) / its weighted sd, over the voxels `weight` (a soft mask) covers."""
    import torch

    v = torch.as_tensor(vol).double()
    w = torch.as_tensor(weight).double()
    mean = (v * w).sum() / w.sum()
    sd = torch.sqrt(((v - mean) ** 2 * w).sum() / w.sum())
    return (v - mean) / sd.clamp(min=1e-30)


def weighted_corr(a, b, weight) -> float:
    """Pearson correlation of two maps over a soft mask (each voxel counted by its weight)."""
    import torch

    w = torch.as_tensor(weight).double()
    return float((standardised(a, w) * standardised(b, w) * w).sum() / w.sum())


def improvement_scores(raw, improved, truth, sphere, L: int, apix: float) -> dict:
    """How an improved map compares with the raw one against a truth, under a soft sphere: its FSC-0.5 resolution,
    its real-space correlation, and the correlation of its change (improved − raw, each standardised) with the
    truth's residual (truth − raw): ≤ 0 when what the method adds is not what the raw map lacks."""
    import torch

    from cryopipe.analysis.fsc import fsc, resolution_at

    imp, ref = torch.as_tensor(improved).double(), torch.as_tensor(truth).double()
    w = torch.as_tensor(sphere).double()
    change = standardised(imp, w) - standardised(raw, w)
    residual = standardised(ref, w) - standardised(raw, w)
    return {
        "vs centroid conformation @0.5 (Å)": resolution_at(fsc(imp * w, ref * w)[1], L, apix, 0.5),
        "real-space CC vs centroid": weighted_corr(imp, ref, w),
        "change·truth residual r": weighted_corr(change, residual, w),
    }


def main(args: argparse.Namespace) -> None:
    import json
    from pathlib import Path

    import numpy as np
    import pandas as pd
    import torch

    from cryopipe.analysis.fsc import corrected_fsc, crossing_shell, fsc, resolution_at, soft_sphere
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
    kinds = list(args.improved_kinds)
    if len(args.improved) != len(kinds) * len(args.maps):
        raise CryopipeError(
            f"--improved lists {len(args.improved)} maps; {len(args.maps)} groups × {len(kinds)} kinds expected"
        )
    if len(args.improved_info) % len(args.maps):
        raise CryopipeError("--improved-info must list the same number of files for every group")
    infos_per_group = len(args.improved_info) // len(args.maps)
    groups = pd.read_csv(args.groups_table)
    atoms, modes = Atoms.load(args.atoms), Modes.load(args.modes)
    truth = pd.read_csv(args.truth).set_index("particle") if args.truth else None
    motion, names = truth_motion(params, atoms, modes) if truth is not None else (None, [])
    curves, rows, plot_curves = [], [], {}
    masks: dict = {}
    for g, (p1, p2, pm) in enumerate(zip(args.half1, args.half2, args.maps)):
        h1, apix = read_mrc(p1)
        h2, _ = read_mrc(p2)
        full, _ = read_mrc(pm)
        L = h1.shape[-1]
        if L not in masks:
            # The truth FSC keeps a loose sphere (all conformations inside, next to no leakage to correct).
            radius = (np.linalg.norm(atoms.coords, axis=1).max() + params["mask_margin"]) / apix
            masks[L] = (
                fsc_mask(params, atoms.coords, L, apix).float(),
                soft_sphere(L, min(radius, L / 2 - 3), 3.0).float(),
            )
        mask, sphere = masks[L]
        members = groups.loc[groups["group"] == g, "particle"].to_numpy()
        freq = np.arange(L // 2) / (L * apix)
        row: dict[str, float] = {"group": g, "images": len(members)}
        if set(EULER) <= set(groups.columns):
            sel = groups.loc[groups["group"] == g, EULER].to_numpy()
            row["view concentration"] = view_concentration(sel)
        empty = not np.any(h1) or not np.any(h2)
        nan = np.full(L // 2, np.nan)
        half = None if empty else corrected_fsc(torch.as_tensor(h1), torch.as_tensor(h2), mask, seed=params["seed"] + g)
        fh = half.corrected if half else nan
        row["resolution half-maps @0.143 (Å)"] = half.resolution(L, apix) if half else np.nan
        row["unmasked @0.143 (Å)"] = resolution_at(half.unmasked, L, apix, 0.143) if half else np.nan
        row["masked, uncorrected @0.143 (Å)"] = resolution_at(half.masked, L, apix, 0.143) if half else np.nan
        row["phases randomised from (Å)"] = L * apix / half.randomise_from if half else np.nan
        ft, fc = nan, nan
        if truth is not None and len(members):
            ref, centroid = centroid_map(truth, members, atoms, motion, names, L, apix, params["resolution"])
            if not empty:
                mean = group_mean_map(truth, members, atoms, motion, names, L, apix, params["resolution"],
                                      params["truth_members"], params["seed"] + g)  # fmt: skip
                # Against what the images average to, under the half maps' mask: the check of their estimate.
                ft = fsc(torch.as_tensor(full) * mask, mean.float() * mask)[1]
                fc = fsc(torch.as_tensor(full) * sphere, ref * sphere)[1]
            row["resolution vs truth @0.5 (Å)"] = np.nan if empty else resolution_at(ft, L, apix, 0.5)
            row["resolution vs truth @0.143 (Å)"] = np.nan if empty else resolution_at(ft, L, apix, 0.143)
            # > 0: the half maps claim more than the truth gives (shells of 1/(L·apix) Å⁻¹).
            row["half-map − truth (shells)"] = np.nan if empty else crossing_shell(fh, 0.143) - crossing_shell(ft, 0.5)
            row["resolution vs centroid conformation @0.5 (Å)"] = np.nan if empty else resolution_at(fc, L, apix, 0.5)
            if not empty:
                row["raw real-space CC vs centroid"] = weighted_corr(full, ref, sphere)
                for j, kind in enumerate(kinds):
                    improved, _ = read_mrc(args.improved[g * len(kinds) + j])
                    scores = improvement_scores(full, improved, ref, sphere, L, apix)
                    row.update({f"{kind} {k}": v for k, v in scores.items()})
            row.update({f"true centroid {k}": v for k, v in centroid.items()})
        if infos_per_group:
            info: dict = {}
            for path in args.improved_info[g * infos_per_group : (g + 1) * infos_per_group]:
                info.update(json.loads(Path(path).read_text()))
            row["sharpening B (Å²)"] = info.get("bfactor", np.nan)
            for kind in kinds:
                row[f"{kind} CPU s"] = info.get("network_cpu_s" if kind == "network" else "classical_cpu_s", np.nan)
        rows.append(row)
        curves.append(
            pd.DataFrame(
                {
                    "group": g,
                    "shell": np.arange(L // 2),
                    "frequency": freq,
                    "fsc_unmasked": half.unmasked if half else nan,
                    "fsc_masked": half.masked if half else nan,
                    "fsc_randomised": half.randomised if half else nan,
                    "fsc_half": fh,
                    "fsc_truth": ft,
                    "fsc_centroid": fc,
                }
            )
        )
        if half:
            plot_curves[f"group {g} half maps, corrected"] = (freq, fh)
            plot_curves[f"group {g} half maps, unmasked"] = (freq, half.unmasked)
            if truth is not None:
                plot_curves[f"group {g} vs truth"] = (freq, ft)
    table = pd.DataFrame(rows)
    with atomic_path(args.out_fsc) as tmp:
        pd.concat(curves, ignore_index=True).to_csv(tmp, index=False, float_format="%.5f")
    with atomic_path(args.out_resolutions) as tmp:
        table.to_csv(tmp, index=False, float_format="%.3f")
    save_fsc(
        args.out_plot,
        plot_curves,
        title=f"FSC per group: half maps ({params['mask']} mask, corrected; dotted: unmasked)\n"
        "dashed: full map vs the group's true mean map (simulated data)",
    )
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table.to_string(index=False))
