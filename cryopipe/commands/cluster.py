"""Cluster: group images of similar conformation; each group → a RELION STAR subset of the original images."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_table", "out_groups", "out_plot", "out_coordinates"]


def params_from_config(cfg: dict) -> dict:
    return {**cfg["analysis"]["cluster"], "seed": cfg["seed"]}


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--space", required=True, help="analysis/<dataset>/space.csv from `reduce`")
    p.add_argument(
        "--raw-star", required=True, help="the original-size particles (simulate/ or import/ particles.star)"
    )
    p.add_argument("--out-table", required=True, help="output table: particle, source, group, pc1, pc2")
    p.add_argument("--out-groups", required=True, nargs="+", help="output STAR per group (group0.star ...), in order")
    p.add_argument(
        "--out-coordinates",
        help="output CSV: each particle's conformational coordinates (amplitudes, PCs, UMAP), group and pose, "
        "keyed by rlnImageName as the user's own STAR spells it (to join back onto it)",
    )
    p.add_argument("--out-plot", required=True, help="output figure (.png)")


def rebase_image_names(names, star_path) -> list[str]:
    """Image names whose stack paths resolve from the current directory (RELION's project-directory rule)."""
    import os

    from cryopipe.io.star import resolve_stack_path, split_image_name

    cache, out = {}, []
    for name in names:
        idx, stack = split_image_name(name)
        if stack not in cache:
            cache[stack] = os.path.relpath(resolve_stack_path(stack, star_path))
        out.append(f"{idx + 1:06d}@{cache[stack]}")
    return out


def group_star(raw, space_rows):
    """Original-size particles of `space_rows` with their estimated poses (origins in Å: pixel-size free)."""
    from cryopipe.io.star import POSE

    out = raw.iloc[space_rows["particle"].to_numpy()].copy()
    out[POSE] = space_rows[POSE].to_numpy()
    # Half sets by particle parity: the same particle is in the same half in every group and run.
    out["rlnRandomSubset"] = space_rows["particle"].to_numpy() % 2 + 1
    out["rlnClassNumber"] = space_rows["group"].to_numpy() + 1
    return out


def coordinates(table, raw):
    """Per particle: its name in the user's own STAR (rlnImageOriginalName, kept by `import`; else the name in
    `raw`), group (−1: in none; rlnClassNumber = group + 1 in the group STARs), the conformational coordinates
    and the pose, one row per particle of the space."""
    from cryopipe.io.star import POSE

    names = raw["rlnImageOriginalName"] if "rlnImageOriginalName" in raw.columns else raw["rlnImageName"]
    out = table.drop(columns=[c for c in ("true_label",) if c in table.columns]).copy()
    out.insert(0, "rlnImageName", names.to_numpy()[table["particle"].to_numpy()])
    first = ["rlnImageName", "particle", "source", "group"]
    return out[first + [c for c in out.columns if c not in first and c not in POSE] + POSE]


def main(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd

    from cryopipe.analysis.groups import assign_groups, n_groups
    from cryopipe.errors import CryopipeError
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.star import EULER, read_star, write_star
    from cryopipe.plots import save_groups

    params = resolve_params(args, params_from_config)
    k = n_groups(params)
    if len(args.out_groups) != k:
        raise CryopipeError(f"--groups: {len(args.out_groups)} files given for {k} groups (analysis.cluster)")
    table = pd.read_csv(args.space)
    need = ["particle", "pc1"] + (["umap1", "umap2"] if params["space"] == "umap" else [])
    missing = [c for c in need if c not in table.columns]
    if missing:
        raise CryopipeError(f"{args.space}: column '{missing[0]}' missing (analysis.cluster.space: {params['space']})")
    if "pc2" not in table.columns:
        table["pc2"] = 0.0
    raw, optics = read_star(args.raw_star)
    if table["particle"].max() >= len(raw):
        raise CryopipeError(
            f"{args.raw_star}: has {len(raw)} particles, {args.space} refers to particle {table['particle'].max()}"
        )
    raw["rlnImageName"] = rebase_image_names(raw["rlnImageName"], args.raw_star)
    xy = table[["umap1", "umap2"] if params["space"] == "umap" else ["pc1", "pc2"]].to_numpy()
    try:
        table["group"] = assign_groups(xy, table["pc1"].to_numpy(), params, params["seed"])
    except ValueError as e:
        raise CryopipeError(f"{args.space}: {e}") from None
    for g, path in enumerate(args.out_groups):
        write_star(path, group_star(raw, table[table["group"] == g]), optics)
    cols = (
        ["particle", "source", "group", "pc1", "pc2"] + (["umap1", "umap2"] if "umap1" in table.columns else []) + EULER
    )
    with atomic_path(args.out_table) as tmp:
        table[cols].to_csv(tmp, index=False, float_format="%.6f")
    if args.out_coordinates:
        with atomic_path(args.out_coordinates) as tmp:
            coordinates(table, raw).to_csv(tmp, index=False, float_format="%.6f")
    edges = None
    if params["method"] == "pc1_bins":
        pc1 = table["pc1"].to_numpy()
        edges = params["bins"] or np.quantile(pc1, np.linspace(0, 1, k + 1))[1:-1]
    counts = [int((table["group"] == g).sum()) for g in range(k)]
    save_groups(
        args.out_plot,
        table,
        "umap" if params["space"] == "umap" and params["method"] != "pc1_bins" else "pca",
        edges,
        title=f"{params['method']}: {k} groups, images {counts}",
    )
    print(f"cluster: {params['method']} → {k} groups of {counts} images ({int((table['group'] < 0).sum())} in none)")
