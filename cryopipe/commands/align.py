"""Align: elastic + rigid fit of image set 1 → estimated angles/shifts (STAR), amplitudes, outlier filter."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_star", "out_amplitudes", "out_kept", "out_plot", "out_reference"]


def params_from_config(cfg: dict) -> dict:
    from cryopipe.commands.reference import model_resolution

    a = dict(cfg["align"])
    a["modes"] = a["modes"] or cfg["conformations"]["modes"]
    a["resolution"] = a["resolution"] or model_resolution(cfg)
    # Simulated data without CTF (simulate.ctf: false) is fitted without CTF.
    a["ctf"] = cfg["simulate"]["ctf"] or cfg["data"]["source"] == "import"
    return {**a, "device": cfg["device"]}


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--star", required=True, help="image set 1 STAR (from preprocess)")
    p.add_argument("--atoms", required=True)
    p.add_argument("--modes", required=True)
    p.add_argument("--truth", help="ground truth (simulated data): adds errors and the comparison plot")
    p.add_argument("--out-star", required=True, help="output STAR with the estimated angles and shifts")
    p.add_argument("--out-amplitudes", required=True, help="output table: particle, amplitudes, cc, mahalanobis, kept")
    p.add_argument("--out-kept", required=True, help="output STAR of the images kept by the outlier filter")
    p.add_argument("--out-plot", required=True, help="output figure (.png)")
    p.add_argument(
        "--out-reference",
        help="output .npz: the second reference's displacement field (N, 3) that the fit used "
        "(align.second_reference or re-centred; empty without one), for `refine`",
    )


def star_optics(optics_row) -> dict:
    """The optics the alignment needs, from one optics row of a STAR file."""
    return {
        "voltage": float(optics_row["rlnVoltage"]),
        "spherical_aberration": float(optics_row["rlnSphericalAberration"]),
        "amplitude_contrast": float(optics_row["rlnAmplitudeContrast"]),
        "pixel_size": float(optics_row["rlnImagePixelSize"]),
    }


def star_poses(particles, star_path) -> tuple:
    """(rotations (n, 3, 3), origins (n, 2) Å) of a STAR's particles, for `align.start: star | both`: the
    Euler angles are required; a STAR without origins means centred particles."""
    import numpy as np

    from cryopipe.analysis.errors import rotation_matrices
    from cryopipe.errors import CryopipeError
    from cryopipe.io.star import EULER, ORIGIN

    missing = [c for c in EULER if c not in particles.columns]
    if missing:
        raise CryopipeError(
            f"{star_path}: config key 'align.start' needs the STAR's poses, but column {missing[0]} is missing "
            "(use align.start: search)"
        )
    origins = particles.reindex(columns=ORIGIN).fillna(0.0).to_numpy(np.float64)
    return rotation_matrices(particles).numpy(), origins


def local_params(params: dict, optics_row) -> dict:
    """The align params of the fit from the STAR's poses (`align.start: star`, `align.local`): its amplitude
    starts (all combinations, scored by one projection each), its steps, and its fine stage's grid."""
    loc = params["local"]
    return {
        **params,
        "search_amplitudes": loc["amplitudes"],
        "search_combinations": "grid",
        "coarse_steps": loc["coarse_steps"],
        "fine_steps": loc["fine_steps"],
        "fine_size": fine_size(loc["fine_grid"], params["fine_lowpass"], optics_row),
    }


def fine_size(fine_grid: str, fine_lowpass: float, optics_row) -> int | None:
    """px of the fine stage's grid: `band`, the smallest that holds `fine_lowpass` Å (the images Fourier-cropped
    to it: nothing the stage uses is lost); `image`, None (the full image)."""
    from cryopipe.align.run import band_size

    if fine_grid == "image":
        return None
    return band_size(int(optics_row["rlnImageSize"]), float(optics_row["rlnImagePixelSize"]), fine_lowpass)


def phase_flipped(optics_row) -> bool:
    return bool(int(optics_row.get("rlnCtfDataArePhaseFlipped", 0)))


def make_aligner(params: dict, atoms, modes, optics_row, second=None):
    """The Aligner for these settings, reference atoms + modes (`Atoms`, `Modes`) and one optics row of a STAR
    file. `second`: the displacement (N, 3) of a second reference (default: align.second_reference.pdb, if set)."""
    from cryopipe.align.model import heavy_atom_reference, residue_beads
    from cryopipe.align.run import Aligner, AlignSettings
    from cryopipe.device import pick_device
    from cryopipe.imaging.project import sigma_for_resolution

    L = int(optics_row["rlnImageSize"])
    vectors = modes.select(params["modes"])
    sigma = sigma_for_resolution(params["resolution"])
    keys = [f"{c}:{r}" for c, r in zip(atoms.chains, atoms.resnums)]
    offset, second_amplitudes = second_reference(params["second_reference"], atoms, vectors, second)
    return Aligner(
        heavy_atom_reference(atoms.coords, atoms.weights, vectors, atoms.elements, sigma, offset),
        residue_beads(atoms.coords, atoms.weights, vectors, keys, sigma, offset),
        AlignSettings.from_params(params, L),
        star_optics(optics_row),
        L,
        device=pick_device(params["device"]),
        ctf=params["ctf"],
        phase_flipped=phase_flipped(optics_row),
        second_amplitudes=second_amplitudes,
    )


def second_reference_displacement(spec: dict, atoms):
    """The displacement (N, 3) of `align.second_reference.pdb` from the reference, or None."""
    if not spec["pdb"]:
        return None
    from cryopipe.structure.target import target_displacement

    moved = target_displacement(atoms, spec["pdb"], spec["selection"], key="align.second_reference.pdb")
    print(
        f"align: second reference {spec['pdb']}: {moved.rmsd:.2f} Å RMSD from the reference "
        f"({len(moved.matched)} atoms matched)"
    )
    return moved.displacement


def second_reference(spec: dict, atoms, vectors, displacement=None):
    """(offset (N, 3), amplitudes (M,)) of the second reference for the fitted modes, or (None, None)."""
    import numpy as np

    from cryopipe.align.model import second_reference_offset

    if displacement is None:
        displacement = second_reference_displacement(spec, atoms)
    if displacement is None or not len(displacement):
        return None, None
    offset, amps = second_reference_offset(np.asarray(displacement, dtype=np.float64), vectors)
    print(
        f"align: second reference at amplitudes {np.round(amps, 2).tolist()}, "
        f"{np.sqrt((offset**2).sum(1).mean()):.2f} Å RMSD "
        "outside the fitted modes"
    )
    return offset, amps


def main(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd

    from cryopipe.align.outliers import fit_quality, mahalanobis
    from cryopipe.align.recentre import recentred_displacement
    from cryopipe.align.run import prior_starts
    from cryopipe.analysis.errors import angle_errors, shift_errors_px
    from cryopipe.errors import CryopipeError
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.star import DEFOCUS, EULER, ORIGIN, ParticleImages, read_star, split_image_name, write_star
    from cryopipe.io.structure import Atoms
    from cryopipe.plots import save_amplitude_pairs, save_estimates_vs_truth
    from cryopipe.structure.conformations import amplitude_columns
    from cryopipe.structure.modes import Modes

    params = resolve_params(args, params_from_config)
    particles, optics = read_star(args.star)
    if len(particles) < 2:
        raise CryopipeError(f"{args.star}: needs at least 2 particles to align and filter")
    optics_row = optics.iloc[0]
    atoms, modes = Atoms.load(args.atoms), Modes.load(args.modes)
    second = second_reference_displacement(params["second_reference"], atoms)
    images = ParticleImages(particles, args.star)  # read batch by batch: memory flat in the number of images
    defocus = particles[DEFOCUS].to_numpy()
    prior = star_poses(particles, args.star) if params["start"] != "search" else None

    def fit(aligner):
        """The global search, or the local fit from the STAR's poses (`align.start`)."""
        if prior is None:
            return aligner.align(images, defocus)
        starts = prior_starts(prior[0], prior[1], aligner.amp_starts.cpu().numpy())
        res = aligner.align(images, defocus, start=starts, search=params["start"] == "both", keep=1)
        print(f"align: the STAR's pose was the best start for {np.mean(res['from_start']):.0%} of the images")
        return res

    fit_params = local_params(params, optics_row) if params["start"] == "star" else params
    res = fit(make_aligner(fit_params, atoms, modes, optics_row, second=second))
    rc = params["recentre"]
    for p in range(rc["passes"]):
        second, used, cc = recentred_displacement(
            res,
            atoms,
            modes.vectors,
            modes.select(params["modes"]),
            second,
            images,
            defocus,
            star_optics(optics_row),
            fit_quality(res["cc"], params["cc_threshold"])[1],
            fraction=rc["fraction"],
            resolution=rc["resolution"],
            steps=rc["steps"],
            phase_flipped=phase_flipped(optics_row),
            ctf=params["ctf"],
        )
        print(
            f"align: re-centred on {used} far-end images: map fit cc {cc:.3f} with "
            f"{len(modes.vectors)} modes, new second "
            f"reference {np.sqrt((second**2).sum(1).mean()):.2f} Å RMSD from the reference; pass "
            f"{p + 2} of {rc['passes'] + 1}"
        )
        res = fit(make_aligner(fit_params, atoms, modes, optics_row, second=second))

    out = particles.copy()
    out[EULER] = res["euler"]
    out[ORIGIN] = res["origins"]
    cols = amplitude_columns(params["modes"])
    table = pd.DataFrame(res["amplitudes"], columns=cols)
    table.insert(0, "particle", [split_image_name(n)[0] for n in particles["rlnImageName"]])
    table["cc"] = res["cc"]
    table["cc_z"], cc_ok = fit_quality(res["cc"], params["cc_threshold"])
    table["margin"] = res["margin"]
    if second is not None:
        table["second_reference"] = res["second"]
    table["mahalanobis"] = mahalanobis(res["amplitudes"])
    table["kept"] = (table["mahalanobis"] <= params["outlier_threshold"]).to_numpy() & cc_ok
    cc_rule = "" if params["cc_threshold"] is None else f", cc ≥ median − {params['cc_threshold']}σ"
    title = (
        f"{len(table)} images, {int(table['kept'].sum())} kept (Mahalanobis ≤ {params['outlier_threshold']}{cc_rule})"
    )
    if args.truth:
        truth = pd.read_csv(args.truth).set_index("particle").loc[table["particle"]]
        table["angle_error"] = angle_errors(res["rotations"], truth)
        table["shift_error_px"] = shift_errors_px(res["origins"], truth, float(optics_row["rlnImagePixelSize"]))
        for c in cols:
            if c in truth.columns:
                table[f"{c}_true"] = truth[c].to_numpy()
        true_amps = truth.reindex(columns=cols).to_numpy(dtype=np.float64)  # NaN for a mode the truth lacks
        save_estimates_vs_truth(
            args.out_plot,
            table[cols].to_numpy(),
            true_amps,
            cols,
            table["angle_error"].to_numpy(),
            table["shift_error_px"].to_numpy(),
            title=title,
        )
        rs = [np.corrcoef(table[c], truth[c])[0, 1] if c in truth.columns else np.nan for c in cols]
        print(
            f"align: median angular error {table['angle_error'].median():.2f}°, median shift error "
            f"{table['shift_error_px'].median():.3f} px, amplitude r {np.round(rs, 3).tolist()}"
        )
    else:
        save_amplitude_pairs(args.out_plot, table[cols].to_numpy(), cols, color=table["cc"].to_numpy(), title=title)
    write_star(args.out_star, out, optics)
    write_star(args.out_kept, out[table["kept"].to_numpy()], optics)
    with atomic_path(args.out_amplitudes) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    if args.out_reference:
        save_reference(args.out_reference, second)
    print(f"align: {title}; mean cc {table['cc'].mean():.3f}")


def save_reference(path, displacement) -> None:
    """The second reference's displacement (N, 3), or an empty (0, 3) array when the fit had none."""
    import numpy as np

    from cryopipe.io.atomic import atomic_path

    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(
                fh,
                displacement=np.zeros((0, 3)) if displacement is None else np.asarray(displacement, dtype=np.float64),
            )


def load_reference(path):
    """The displacement saved by `save_reference`, or None when empty."""
    import os

    import numpy as np

    from cryopipe.errors import CryopipeError

    if not os.path.isfile(path):
        raise CryopipeError(f"{path}: second-reference file not found")
    with np.load(path) as z:
        d = z["displacement"]
    return d if len(d) else None
