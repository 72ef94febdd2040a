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


def check_particles(particles, optics, star_path, allow_subset: bool = False) -> None:
    """Every image exists, stacks hold as many images as the STAR lists, CTF columns are present."""
    from cryopipe.errors import CryopipeError
    from cryopipe.io.mrc import open_stack
    from cryopipe.io.star import stack_index

    for path, rows, _ in stack_index(particles, star_path):
        n = open_stack(path).shape[0]
        if not allow_subset and len(rows) != n:
            raise CryopipeError(
                f"{star_path}: lists {len(rows)} images of {path}, but the stack holds {n} "
                "(set data.import.allow_subset to accept a subset)"
            )
    if "rlnDefocusU" not in particles.columns:
        raise CryopipeError(f"{star_path}: particle table lacks column rlnDefocusU")


def main(args: argparse.Namespace) -> None:
    from cryopipe.errors import CryopipeError
    from cryopipe.io.star import read_star, resolve_stack_path, split_image_name, write_star

    params = resolve_params(args, params_from_config)
    if not params.get("star"):
        raise CryopipeError("config key 'data.import.star' is required when data.source is import")
    particles, optics = read_star(params["star"], pixel_size=params.get("pixel_size"))
    check_particles(particles, optics, params["star"], params["allow_subset"])
    if "rlnDefocusV" not in particles.columns:
        particles["rlnDefocusV"] = particles["rlnDefocusU"]
    if "rlnDefocusAngle" not in particles.columns:
        particles["rlnDefocusAngle"] = 0.0
    # Rewrite stack paths so the new STAR works from the project directory.
    names = []
    for name in particles["rlnImageName"]:
        i, stack = split_image_name(name)
        names.append(f"{i + 1:06d}@{resolve_stack_path(stack, params['star'])}")
    particles["rlnImageName"] = names
    write_star(args.out_star, particles, optics)
    print(f"import: {len(particles)} particles from {params['star']}, pixel {optics['rlnImagePixelSize'].iloc[0]} Å")
