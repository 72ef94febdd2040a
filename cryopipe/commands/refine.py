"""Refine: re-fit the poses of image set 2 after the network (rigid fit against the predicted conformation).

DeepHEMNMA (§4) proposes this for small image sets, where a network trained on few images predicts
conformations better than poses: each image is aligned again, rigidly, against the reference deformed
by the network's amplitudes (`refine.mode: rigid`), or with the amplitudes refined too (`elastic`).
`refine.search: global` adds an SO(3) grid search (the alignment's `grid_spacing`) to the network's
pose as candidates; `local` starts from the network's pose alone (enough when the network is close), or,
for a network with several orientation hypotheses (`train.hypotheses`), from the `candidates` of them that
correlate best with the image (every hypothesis is screened with one projection on the search grid; the
network's scores only order them): the semi-amortised re-fit, no global search.
The best-correlating candidate wins, so a refined pose never fits worse than the network's.
"""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_star", "out_amplitudes", "out_plot"]


# What a local re-fit (`refine.search: local`) uses where the config leaves a key null. The network's hypotheses
# start 10-20° from the pose, farther than a global search's grid candidates; Adam moves a parameter by about its
# rate per step, so the coarse stage takes 3x the alignment's rates, and then needs only a short fine stage
# (measured: README, "Re-fitting set 2").
LOCAL_REFIT = {"coarse_steps": 40, "fine_steps": 5, "coarse_lr_scale": 3.0}


def params_from_config(cfg: dict) -> dict:
    from cryopipe.commands import align

    r = cfg["refine"]
    a = align.params_from_config(cfg)
    a.pop("outlier_threshold")  # set 1's filters; set 2 keeps every image
    a.pop("cc_threshold")
    unset = LOCAL_REFIT if r["search"] == "local" else {**a, "coarse_lr_scale": 1.0}
    steps = {k: r[k] if r[k] is not None else unset[k] for k in ("coarse_steps", "fine_steps", "coarse_lr_scale")}
    return {
        **a,
        **steps,
        "candidates": r["candidates"] or a["candidates"],
        "mode": r["mode"],
        "search": r["search"],
        "fine_grid": r["fine_grid"],
    }
    # a["start"] (align.start): star | both add each image's STAR pose (--prior-star) to the network's starts.


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument(
        "--star", required=True, help="the network's predictions for image set 2 (infer/<dataset>/particles.star)"
    )
    p.add_argument("--amplitudes", required=True, help="the network's amplitudes (infer/<dataset>/amplitudes.csv)")
    p.add_argument("--atoms", required=True)
    p.add_argument("--modes", required=True)
    p.add_argument(
        "--reference",
        help="align/<dataset>/second_reference.npz: the second reference the alignment used "
        "(default: align.second_reference.pdb, if set)",
    )
    p.add_argument(
        "--prior-star",
        help="image set 2 with the STAR's own poses (preprocess/<dataset>/set2.star): with align.start star or both, "
        "each image's STAR pose is one more start of its re-fit",
    )
    p.add_argument("--truth", help="ground truth (simulated data): errors before and after, in the plot and the log")
    p.add_argument("--out-star", required=True, help="output STAR with the refined angles and origins")
    p.add_argument(
        "--out-amplitudes",
        required=True,
        help="output table: particle, amplitudes, cc, angle change, whether the network's prediction won",
    )
    p.add_argument("--out-plot", required=True, help="output figure (.png)")


def with_star_pose(starts, origins, amplitudes, particles, prior_star):
    """The network's starts (rotations (n, 3, 3) or (n, H, 3, 3)) plus each image's pose in `prior_star` (matched by
    rlnImageName) as the last start, with per-start origins (n, H+1, 2) and the network's amplitudes (n, H+1, M)."""
    import numpy as np

    from cryopipe.commands.align import star_poses
    from cryopipe.errors import CryopipeError
    from cryopipe.io.star import read_star

    prior, _ = read_star(prior_star)
    index = prior.reset_index().set_index("rlnImageName")["index"]
    absent = ~particles["rlnImageName"].isin(index.index)
    if absent.any():
        raise CryopipeError(f"{prior_star}: no row for {particles['rlnImageName'][absent].iloc[0]}")
    R, o = star_poses(prior.iloc[index.loc[particles["rlnImageName"]].to_numpy()], prior_star)
    starts = starts[:, None] if starts.ndim == 3 else starts
    H = starts.shape[1]
    return (
        np.concatenate([starts, R[:, None]], 1),
        np.concatenate([np.repeat(origins[:, None], H, 1), o[:, None]], 1),
        np.repeat(amplitudes[:, None], H + 1, 1),
    )


def main(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd

    from cryopipe.analysis.errors import angle_errors, rotation_matrices
    from cryopipe.commands.align import fine_size, load_reference, make_aligner
    from cryopipe.commands.infer import hypothesis_rotations
    from cryopipe.errors import CryopipeError
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.star import DEFOCUS, EULER, ORIGIN, ParticleImages, read_star, split_image_name, write_star
    from cryopipe.io.structure import Atoms
    from cryopipe.plots import save_refinement
    from cryopipe.structure.conformations import amplitude_columns
    from cryopipe.structure.modes import Modes

    params = resolve_params(args, params_from_config)
    if params["mode"] == "none":
        raise CryopipeError("config key 'refine.mode' is none: there is nothing to refine")
    particles, optics = read_star(args.star)
    cols = amplitude_columns(params["modes"])
    amps = pd.read_csv(args.amplitudes)
    missing = [c for c in ["particle"] + cols if c not in amps.columns]
    if missing:
        raise CryopipeError(f"{args.amplitudes}: missing column {missing[0]}")
    ids = [split_image_name(n)[0] for n in particles["rlnImageName"]]
    amps = amps.set_index("particle")
    absent = [i for i in ids if i not in amps.index]
    if absent:
        raise CryopipeError(f"{args.amplitudes}: no row for particle {absent[0]} of {args.star}")
    a_net = amps.loc[ids, cols].to_numpy(dtype=np.float64)
    R_net = rotation_matrices(particles)
    # A network with several orientation hypotheses: in a local re-fit all are screened by their cc and the best
    # `candidates` refined; a global search adds its grid candidates to the best-scored one (the STAR's pose).
    hypotheses = hypothesis_rotations(amps.loc[ids]) if params["search"] == "local" else None
    starts = R_net.numpy() if hypotheses is None else hypotheses
    o_net = particles[ORIGIN].to_numpy(dtype=np.float64)
    n_net = 1 if starts.ndim == 3 else starts.shape[1]  # the network's starts per image
    if params["start"] != "search":
        if not args.prior_star:
            raise CryopipeError("config key 'align.start': star | both needs refine --prior-star (set 2's STAR poses)")
        starts, o_net, a_net = with_star_pose(starts, o_net, a_net, particles, args.prior_star)

    second = load_reference(args.reference) if args.reference else None
    params = {**params, "fine_size": fine_size(params["fine_grid"], params["fine_lowpass"], optics.iloc[0])}
    aligner = make_aligner(params, Atoms.load(args.atoms), Modes.load(args.modes), optics.iloc[0], second=second)
    for stage in aligner.settings.coarse:  # what the aligner will use, not what was asked for
        print(f"refine: the coarse stage {stage.steps} steps at {params['coarse_lr_scale']:g}x the alignment's rates")
    for stage in aligner.settings.fine:
        print(f"refine: the fine stage {stage.steps} steps on {stage.size} of {aligner.image_size} px "
              f"({params['fine_grid']})")  # fmt: skip
    images = ParticleImages(particles, args.star)  # read batch by batch: memory flat in the number of images
    res = aligner.align(
        images,
        particles[DEFOCUS].to_numpy(),
        start={"rotations": starts, "origins": o_net, "amplitudes": a_net},
        search=params["search"] == "global",
        elastic=params["mode"] == "elastic",
        keep=params["candidates"] if hypotheses is not None else None,
    )

    out = particles.copy()
    out[EULER] = res["euler"]
    out[ORIGIN] = res["origins"]
    table = pd.DataFrame(res["amplitudes"], columns=cols)
    table.insert(0, "particle", ids)
    table["cc"] = res["cc"]
    table["angle_change"] = angle_errors(res["rotations"], R_net)
    # the network's prediction was the best-fitting start, and which (1 = best-scored; 0 = a global-search
    # candidate; n_net + 1 = the STAR's pose)
    table["network_start_won"] = res["from_start"] & (res["start"] < n_net)
    table["hypothesis"] = res["start"] + 1
    table["margin"] = res["margin"]
    if second is not None or params["second_reference"]["pdb"]:
        table["second_reference"] = res["second"]
    errors = None
    if args.truth:
        truth = pd.read_csv(args.truth).set_index("particle").loc[ids]
        errors = {"network": angle_errors(R_net, truth), "refined": angle_errors(res["rotations"], truth)}
        print(
            f"refine: median angular error vs truth {np.median(errors['network']):.2f}° (network) → "
            f"{np.median(errors['refined']):.2f}° (refined)"
        )
    title = f"{len(table)} images of set 2, {params['mode']} refinement, {params['search']} search"
    save_refinement(args.out_plot, table["angle_change"].to_numpy(), table["cc"].to_numpy(), errors, title=title)
    write_star(args.out_star, out, optics)
    with atomic_path(args.out_amplitudes) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    if params["start"] != "search":
        print(f"refine: the STAR's pose was the best start for {np.mean(res['start'] == n_net):.0%} of the images")
    if hypotheses is not None:
        won = np.bincount(table["hypothesis"].to_numpy(), minlength=hypotheses.shape[1] + 2)[: hypotheses.shape[1] + 1]
        print(
            f"refine: the winning start was hypothesis 1..{hypotheses.shape[1]} (by score) for "
            + ", ".join(f"{n / len(table):.0%}" for n in won[1:])
            + f" of the images; a global-search candidate for {won[0] / len(table):.0%}"
        )
    print(
        f"refine: {title}; median pose change {table['angle_change'].median():.1f}°, mean cc {table['cc'].mean():.3f}, "
        f"the network's prediction was the best start for {table['network_start_won'].mean():.0%} of the images"
    )
