"""Import: check a user's RELION 3.0/3.1 STAR + MRCS and write it as RELION 3.1 for `preprocess`."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_star"]


def params_from_config(cfg: dict) -> dict:
    return dict(cfg["data"]["import"])


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--out-star", required=True, help="output RELION 3.1 particles.star")


def main(args: argparse.Namespace) -> None:
    from cryopipe.errors import CryopipeError
    from cryopipe.io.checks import check_particle_set
    from cryopipe.io.star import read_star, resolve_stack_path, write_star

    params = resolve_params(args, params_from_config)
    if not params.get("star"):
        raise CryopipeError("config key 'data.import.star' is required when data.source is import")
    particles, optics = read_star(params["star"], pixel_size=params.get("pixel_size"))
    particles, optics = check_particle_set(particles, optics, params["star"], params["allow_subset"])
    # The user's own names (RELION's rlnImageOriginalName) key the exported coordinates for joining back.
    if "rlnImageOriginalName" not in particles.columns:
        particles["rlnImageOriginalName"] = particles["rlnImageName"].astype(str)
    # Rewrite stack paths so the new STAR works from the project directory (one lookup per stack).
    parts = particles["rlnImageName"].astype(str).str.partition("@")
    index = parts[0].str.strip().astype(int)
    stack = parts[2].str.strip()
    resolved = {s: str(resolve_stack_path(s, params["star"])) for s in stack.unique()}
    particles["rlnImageName"] = [f"{i:06d}@{resolved[s]}" for i, s in zip(index, stack)]
    write_star(args.out_star, particles, optics)
    print(f"import: {len(particles)} particles from {params['star']}, pixel {optics['rlnImagePixelSize'].iloc[0]} Å")
