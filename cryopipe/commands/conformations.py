"""Conformations: draw the ground truth (mode amplitudes, orientations, shifts) for N particles."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_truth", "out_plot"]


def params_from_config(cfg: dict) -> dict:
    c = dict(cfg["conformations"])
    # Only the chosen distribution's settings matter; the others must not trigger re-runs.
    for kind in ("helix", "uniform", "discrete", "interpolate", "morph"):
        if kind != c["distribution"]:
            c.pop(kind)
    return {**c, "seed": cfg["seed"], "pixel_size": cfg["simulate"]["pixel_size"]}


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--modes", required=True, help="modes .npz")
    p.add_argument("--atoms", required=True, help="reference atoms .npz (for the interpolate distribution)")
    p.add_argument("--out-truth", required=True, help="output ground-truth table (.csv)")
    p.add_argument("--out-plot", required=True, help="output plot of the amplitudes (.png)")


def target_amplitudes(params: dict, atoms, mode_vectors):
    """Least-squares amplitudes of (superposed target − reference), the target of `interpolate` or `morph`."""
    from cryopipe.structure.modes import project_displacement
    from cryopipe.structure.target import target_displacement

    kind = params["distribution"]
    spec = params[kind]
    moved = target_displacement(atoms, spec["target"], spec["selection"], key=f"conformations.{kind}.target")
    print(
        f"conformations: {spec['target']} is {moved.rmsd:.2f} Å RMSD from the reference over "
        f"{len(moved.matched)} matched atoms"
    )
    return project_displacement(moved.displacement, mode_vectors)


def main(args: argparse.Namespace) -> None:
    import numpy as np

    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.structure import Atoms
    from cryopipe.plots import save_amplitude_pairs
    from cryopipe.structure.conformations import amplitude_columns, draw_conformations
    from cryopipe.structure.modes import Modes

    params = resolve_params(args, params_from_config)
    modes = Modes.load(args.modes)
    vectors = modes.select(params["modes"])
    target = None
    if params["distribution"] in ("interpolate", "morph"):
        target = target_amplitudes(params, Atoms.load(args.atoms), vectors)
        print(f"conformations: target amplitudes {np.round(target, 2).tolist()} Å RMSD")
    table = draw_conformations(params, params["seed"], params["modes"], target)
    with atomic_path(args.out_truth) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    cols = amplitude_columns(params["modes"])
    save_amplitude_pairs(
        args.out_plot,
        table[cols].to_numpy(),
        cols,
        color=table["label"].to_numpy(),
        title=f"ground truth: {params['distribution']}, {len(table)} particles",
    )
    print(f"conformations: {len(table)} particles, distribution {params['distribution']}, modes {params['modes']}")
