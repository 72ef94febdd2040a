"""Reduce: the conformational space — PCA (and UMAP) of the predicted amplitudes (or of a VAE's z), with plots."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_space", "out_pca", "out_plot"]


def params_from_config(cfg: dict) -> dict:
    a = cfg["analysis"]
    return {
        "pool_alignment": a["pool_alignment"],
        "umap": a["umap"],
        "umap_neighbors": a["umap_neighbors"],
        "umap_min_dist": a["umap_min_dist"],
        "seed": cfg["seed"],
    }


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--infer-star", required=True, help="infer/<dataset>/particles.star (image set 2, predicted poses)")
    p.add_argument(
        "--infer-amplitudes", required=True, help="infer/<dataset>/amplitudes.csv (or vae/<dataset>/latent.csv)"
    )
    p.add_argument("--infer-source", default="network", help="what the space calls those images (vae for a VAE's z)")
    p.add_argument("--align-star", help="align/<dataset>/particles.star (pooled when analysis.pool_alignment)")
    p.add_argument("--align-amplitudes", help="align/<dataset>/amplitudes.csv")
    p.add_argument("--truth", help="ground truth (simulated data): colours the plots")
    p.add_argument("--out-space", required=True, help="output table: particle, source, amplitudes, pose, pc*, umap*")
    p.add_argument("--out-pca", required=True, help="output PCA model (.json: mean, axes, variance)")
    p.add_argument("--out-plot", required=True, help="output figure (.png)")


def space_table(
    params: dict, infer_star, infer_amplitudes, align_star=None, align_amplitudes=None, infer_source="network"
):
    """One row per image in the space: set-2 predictions, plus kept set-1 alignment estimates if pooled."""
    import pandas as pd

    from cryopipe.analysis.space import embedding_columns
    from cryopipe.errors import CryopipeError
    from cryopipe.io.star import EULER, ORIGIN, read_star, split_image_name

    def load(star, amps, source):
        particles, _ = read_star(star)
        table = pd.read_csv(amps)
        names = embedding_columns(table.columns)
        if "particle" not in table.columns or not names:
            raise CryopipeError(
                f"{amps}: needs a 'particle' column and mode amplitude (mode7 …) or latent (z1 …) columns"
            )
        particles["particle"] = [split_image_name(n)[0] for n in particles["rlnImageName"]]
        if "kept" in table.columns:
            table = table[table["kept"].astype(bool)]
        merged = particles[["particle"] + EULER + ORIGIN].merge(
            table[["particle"] + names], on="particle", validate="one_to_one"
        )
        merged.insert(1, "source", source)
        return merged, names

    net, names = load(infer_star, infer_amplitudes, infer_source)
    parts = [net]
    if params["pool_alignment"]:
        if not (align_star and align_amplitudes):
            raise CryopipeError("analysis.pool_alignment needs --align-star and --align-amplitudes")
        ali, names_a = load(align_star, align_amplitudes, "alignment")
        if names_a != names:
            raise CryopipeError(f"{align_amplitudes}: modes {names_a} differ from the network's {names}")
        parts.append(ali)
    return pd.concat(parts, ignore_index=True).sort_values("particle", kind="stable").reset_index(drop=True), names


def main(args: argparse.Namespace) -> None:
    import json

    import pandas as pd

    from cryopipe.analysis.space import fit_pca, fit_umap
    from cryopipe.errors import CryopipeError
    from cryopipe.io.atomic import atomic_path
    from cryopipe.plots import save_space

    params = resolve_params(args, params_from_config)
    table, names = space_table(
        params, args.infer_star, args.infer_amplitudes, args.align_star, args.align_amplitudes, args.infer_source
    )
    if len(table) < 3:
        raise CryopipeError(f"{args.infer_amplitudes}: {len(table)} images; the conformational space needs at least 3")
    pca = fit_pca(table[names].to_numpy())
    scores = pca.transform(table[names].to_numpy())
    for k in range(scores.shape[1]):
        table[f"pc{k + 1}"] = scores[:, k]
    if params["umap"]:
        emb = fit_umap(table[names].to_numpy(), params["seed"], params["umap_neighbors"], params["umap_min_dist"])
        table["umap1"], table["umap2"] = emb[:, 0], emb[:, 1]
    color = None
    if args.truth:
        truth = pd.read_csv(args.truth).set_index("particle")
        if "label" in truth.columns:
            table["true_label"] = truth.loc[table["particle"], "label"].to_numpy()
            color = table["true_label"].to_numpy()
    with atomic_path(args.out_space) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    with atomic_path(args.out_pca) as tmp:
        tmp.write_text(json.dumps({"modes": names, **pca.to_dict()}, indent=1))
    save_space(
        args.out_plot,
        table,
        color,
        pca.explained,
        title=f"{len(table)} images ({', '.join(f'{s}: {n}' for s, n in table['source'].value_counts().items())})",
    )
    ev = ", ".join(f"PC{k + 1} {100 * e:.0f}%" for k, e in enumerate(pca.explained))
    print(f"reduce: {len(table)} images, modes {names}; explained variance {ev}")
