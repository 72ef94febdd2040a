"""What two half maps share: their correlation where there is no signal, for each way of regularising them.

Takes a group STAR (poses, CTF, images; e.g. `results/analysis/<dataset>/groups/group0.star` of a default
run), reconstructs its two half sets, and prints the mean unmasked and masked (soft sphere 0.45·L) half-map
FSC over the shells beyond `--beyond` Å, where a map of that group has no signal left (its FSC against the
truth is ~0 there), for:

- "FSC Wiener in both halves": the pipeline before issue 15: a pass with a tiny constant regulariser gives
  the half-map FSC, then both halves are made with the per-shell Wiener term W̄·(1 − FSC)/FSC from it;
- "constant 1.0": both halves with the constant `wiener: 1.0`;
- "each half its own": each half with `UNFILTERED` × its own mean CTF² per shell (the pipeline now).

With `--noise` the images are replaced by white noise of the same variance (same poses and CTFs): there is
no signal to leak, so what stays positive there comes from the regularisation step itself (its choice
depends on the halves' own FSC); what appears only with signal is leakage of the shared low-resolution
signal into the shells the Wiener term has damped (the crop from the padded box, the mask).
The 3σ line for uncorrelated maps (mean over those shells) is printed beside.

    python benchmarks/half_maps.py --star results/analysis/snr0.1_df0.5-2/groups/group0.star
    python benchmarks/half_maps.py --star ... --noise
    python benchmarks/half_maps.py --star ... --pad 1          # no crop from a padded box
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--star", required=True)
    ap.add_argument("--pad", type=int, default=2)
    ap.add_argument("--beyond", type=float, default=4.0, help="Å: shells at higher resolution than this")
    ap.add_argument("--noise", action="store_true", help="white noise instead of the images, same poses/CTFs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import numpy as np
    import torch

    from cryopipe.analysis.backproject import Backprojector, fsc_regulariser
    from cryopipe.analysis.fsc import fsc, noise_fsc_line, soft_sphere
    from cryopipe.analysis.reconstruct import UNFILTERED, insert_particles
    from cryopipe.io.mrc import write_mrc
    from cryopipe.io.star import image_names, load_images, read_star, write_star

    torch.set_num_threads(args.threads)
    particles, optics = read_star(args.star)
    row = optics.iloc[0].to_dict()
    L, apix = int(row["rlnImageSize"]), float(row["rlnImagePixelSize"])
    star = Path(args.star)
    with tempfile.TemporaryDirectory() as tmp:
        if args.noise:
            sd = float(load_images(particles, star, np.arange(min(len(particles), 200))).std())
            g = np.random.default_rng(args.seed)
            noise = (sd * g.standard_normal((len(particles), L, L))).astype(np.float32)
            write_mrc(Path(tmp) / "noise.mrcs", noise, apix)
            particles = particles.assign(rlnImageName=image_names(Path(tmp) / "noise.mrcs", len(particles)))
            star = Path(tmp) / "noise.star"
            write_star(star, particles, optics)
        t0 = time.perf_counter()
        bps = {1: Backprojector(L, args.pad), 2: Backprojector(L, args.pad)}
        insert_particles(bps, particles, row, star)
        dt = time.perf_counter() - t0
        print(f"{len(particles)} images, {L} px, {apix} Å/px, pad {args.pad}: inserted in {dt:.1f} s"
              f"{' (white noise instead of the images)' if args.noise else ''}")  # fmt: skip
    w1, w2 = bps[1].shell_mean_weight(), bps[2].shell_mean_weight()
    sphere = soft_sphere(L, 0.45 * L, 3.0)
    eps = 1e-3 * float(0.5 * (w1 + w2)[1:].mean())
    _, f0 = fsc(bps[1].reconstruct(eps) * sphere, bps[2].reconstruct(eps) * sphere)
    shared = fsc_regulariser(f0, 0.5 * (w1 + w2))
    const = torch.full((L // 2,), 1.0, dtype=torch.float64)
    variants = {
        "FSC Wiener in both halves (before)": (shared, shared),
        "constant 1.0": (const, const),
        "each half its own (now)": (UNFILTERED * w1, UNFILTERED * w2),
    }
    shells = np.arange(L // 2)
    beyond = (shells > 0) & (L * apix / np.maximum(shells, 1) < args.beyond)
    line = noise_fsc_line(L)[beyond] / 3
    sigma_mean = 3 * np.sqrt(np.mean(line**2) / beyond.sum())
    line_m = noise_fsc_line(L, mask=sphere)[beyond] / 3
    sigma_mean_m = 3 * np.sqrt(np.mean(line_m**2) / beyond.sum())
    print(f"mean half-map FSC over the {beyond.sum()} shells beyond {args.beyond} Å "
          f"(3σ of that mean for uncorrelated maps: {sigma_mean:.4f} unmasked, {sigma_mean_m:.4f} masked)")  # fmt: skip
    print(f"{'regularisation':<36} {'unmasked':>9} {'masked':>8} {'max shell':>9}")
    for name, (r1, r2) in variants.items():
        h1, h2 = bps[1].reconstruct(r1), bps[2].reconstruct(r2)
        _, fu = fsc(h1, h2)
        _, fm = fsc(h1 * sphere, h2 * sphere)
        print(f"{name:<36} {fu[beyond].mean():>+9.4f} {fm[beyond].mean():>+8.4f} {fu[beyond].max():>+9.4f}")


if __name__ == "__main__":
    main()
