"""What each training source buys: set-2 errors vs truth against training presentations and CPU minutes.

One pool of AdK images is simulated and preprocessed as `benchmarks/align.py` does (128 → 64 px, SNR and
defocus as given); set 1 (`--n1`) is aligned globally with the default alignment settings, giving the HEMNMA
labels, and set 2 (`--n2`) is what every network is scored on, against the truth. For each source of
`--sources` one network (the combined ResNet + MLP of `train`, with `--hypotheses` orientation hypotheses)
is trained for `--minutes` of wall time on 2 cores, and scored on set 2 after every `--chunk` epochs:

- alignment:  the set-1 images with their alignment labels (DeepHEMNMA), in-plane augmented;
- simulation: images drawn on the fly (`cryopipe.nn.simulated`); prior and noise from set 1's estimates;
- both:       simulation for `--pretrain-share` of the minutes, then the set-1 labels for the rest.

Beside each curve, the best constant prediction (what a network that learnt nothing scores). Then, for the
last network of each source, set 2 is re-fitted locally from its hypotheses (`refine.search: local`,
elastic) and globally aligned from scratch (what `refine.search: global` costs), both timed in this run.

Data made another way than the training simulator's: `--motion morph` (the real 4AKE → 1AKE path, no mode
made it) and `--density scattering` (electron form factors and the PDB's B-factors instead of the
simulator's Gaussians). For the morph, the amplitude error is against the truth's projection on the fitted
modes (the best the model can do).

    python benchmarks/network_sources.py --snr 0.1 --minutes 15                       # ~55 min on 2 cores
    python benchmarks/network_sources.py --snr 1 --minutes 10 --sources simulation both
    python benchmarks/network_sources.py --snr 0.1 --motion morph --density scattering --minutes 10
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--snr", type=float, default=0.1)
    ap.add_argument("--n1", type=int, default=600, help="set-1 images (aligned; their labels train `alignment`)")
    ap.add_argument("--n2", type=int, default=300, help="set-2 images (scored against the truth)")
    ap.add_argument("--sources", nargs="+", default=["alignment", "simulation", "both"])
    ap.add_argument("--minutes", type=float, default=10.0, help="wall minutes of training per source")
    ap.add_argument("--pretrain-share", type=float, default=0.75, help="both: share of the minutes on simulation")
    ap.add_argument("--chunk", type=int, default=1, help="epochs between evaluations")
    ap.add_argument("--images-per-epoch", type=int, default=2048, help="simulation epochs")
    ap.add_argument("--hypotheses", type=int, default=4)
    ap.add_argument(
        "--bins",
        type=float,
        default=None,
        metavar="DEG",
        help="orientation as a classifier over an SO(3) grid of this spacing (train.orientation: bins)",
    )
    ap.add_argument("--bin-weight", type=float, default=1.0, help="weight of the bins' cross-entropy")
    ap.add_argument("--width", type=int, default=32)
    ap.add_argument("--input-size", type=int, default=32)
    ap.add_argument("--depth", type=int, default=18)
    ap.add_argument("--dropout", type=float, default=0.0)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument(
        "--lr-decay",
        type=float,
        default=None,
        metavar="SHARE",
        help="divide the learning rate by 10 after this share of each set-1 phase's minutes (default: constant)",
    )
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--oversample", type=int, default=2)
    ap.add_argument("--motion", choices=["helix", "morph"], default="helix")
    ap.add_argument("--density", choices=["gaussian", "scattering"], default="gaussian")
    ap.add_argument("--defocus", type=float, nargs=2, default=[0.5, 2.0], metavar=("LO", "HI"), help="µm")
    ap.add_argument("--no-refit", action="store_true", help="skip the local re-fit and the global alignment of set 2")
    ap.add_argument(
        "--refit-steps",
        type=int,
        nargs=2,
        action="append",
        metavar=("COARSE", "FINE"),
        help="Adam steps of the local re-fit's coarse and fine stages (repeatable; default: the alignment's)",
    )
    ap.add_argument(
        "--refit-keep",
        type=int,
        nargs="+",
        default=None,
        metavar="N",
        help="also re-fit only the N best of all hypotheses by their cc (one projection each; refine.candidates)",
    )
    ap.add_argument(
        "--refit-settle",
        type=int,
        nargs="+",
        default=[0],
        metavar="N",
        help="coarse steps of the winning candidate alone, between the coarse and the fine stage (at the alignment's "
        "rates; no config key: measured as no better than as many more coarse steps of 2 candidates)",
    )
    ap.add_argument(
        "--refit-coarse-grid",
        choices=["search", "band"],
        nargs="+",
        default=["search"],
        help="the re-fit's coarse stage on the search grid (align.search_size, as the alignment) or on the smallest "
        "grid that holds align.coarse_lowpass",
    )
    ap.add_argument(
        "--refit-lr-scale",
        nargs="+",
        default=["1"],
        metavar="S[,F]",
        help="the re-fit's Adam learning rates (rotation, shift, amplitudes) times S, those of its fine stage times F "
        "(default S); refine.coarse_lr_scale is S with F = 1",
    )
    ap.add_argument(
        "--refit-fine-grid",
        choices=["image", "band"],
        nargs="+",
        default=["image"],
        help="the re-fit's fine stage on the full image (default, as the README's earlier tables were measured) or "
        "on the band-limited grid (refine.fine_grid: band, the pipeline's default); with band, the global alignment "
        "of set 2 is also measured with it",
    )
    ap.add_argument(
        "--refit-keep-only", action="store_true", help="with --refit-keep, only that re-fit (not 1, 4, all hypotheses)"
    )
    ap.add_argument(
        "--timing-repeats",
        type=int,
        default=1,
        metavar="N",
        help="run the global alignment of set 2 and each re-fit N times; their CPU-s per image are the medians",
    )
    ap.add_argument(
        "--timing-threads",
        type=int,
        default=None,
        metavar="N",
        help="torch threads for the set-2 alignments (default --threads); 1 makes CPU-s the work itself, without the "
        "time idle threads spin, which varies with the batch sizes and the machine's load",
    )
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--cache",
        default=None,
        help="folder keeping the set-1 alignment between runs of the same data, and each trained network's set-2 "
        "predictions between runs with the same training options (the re-fit options may then change)",
    )
    args = ap.parse_args()
    if args.refit_keep_only and not args.refit_keep:
        ap.error("--refit-keep-only needs --refit-keep N")

    import hashlib
    import json
    import tempfile
    from pathlib import Path

    import numpy as np
    import pandas as pd
    import torch
    from align import simulate_preprocessed  # benchmarks/align.py: the same simulation + preprocessing

    from cryopipe.align.model import heavy_atom_reference, residue_beads
    from cryopipe.align.run import Aligner, AlignSettings, band_size
    from cryopipe.analysis.errors import angle_errors, shift_errors_px
    from cryopipe.commands.align import params_from_config as align_params
    from cryopipe.commands.train import params_from_config as train_params
    from cryopipe.config import default_config
    from cryopipe.geometry import quaternion_to_matrix
    from cryopipe.imaging.simulate import particle_radius
    from cryopipe.io.star import DEFOCUS, EULER, ORIGIN
    from cryopipe.nn.engine import TrainSettings, fit
    from cryopipe.nn.heads import KINDS, Regressor
    from cryopipe.nn.hypotheses import ranked
    from cryopipe.nn.simulated import NoiseModel, TrainingPrior, TrainingSimulator, fitted_projections, particle_discs
    from cryopipe.nn.targets import Standardiser, constant_prediction, targets_from_tables

    torch.set_num_threads(args.threads)
    size, n = 64, args.n1 + args.n2
    apix = 0.65 * 128 / size
    t0 = time.perf_counter()
    imgs, truth, atoms, modes, sigma, _field, _ = simulate_preprocessed(
        n, size, args.snr, True, args.defocus, args.seed, args.motion, args.density
    )
    cols = ["mode7", "mode8", "mode9"]
    s1, s2 = np.arange(args.n1), np.arange(args.n1, n)
    truth2 = truth.iloc[s2].reset_index(drop=True)
    print(
        f"AdK 4AKE, {n} images ({args.n1} set 1, {args.n2} set 2), {size} px, SNR {args.snr}, data: {args.motion}, "
        f"{args.density} density; simulated in {time.perf_counter() - t0:.0f} s"
    )

    # --- the alignment of set 1 (labels, prior, noise) and, later, of set 2 (the global re-fit it replaces)
    vectors = modes.select([7, 8, 9])
    keys = [f"{c}{r}" for c, r in zip(atoms.chains, atoms.resnums)]
    optics = {"voltage": 200.0, "spherical_aberration": 2.0, "amplitude_contrast": 0.1, "pixel_size": apix}
    cfg = default_config()
    aligner = Aligner(
        heavy_atom_reference(atoms.coords, atoms.weights, vectors, atoms.elements, sigma),
        residue_beads(atoms.coords, atoms.weights, vectors, keys, sigma),
        AlignSettings.from_params(align_params(cfg), size),
        optics,
        size,
        device="cpu",
    )
    defocus = truth[DEFOCUS].to_numpy()
    t0 = time.perf_counter()
    key = f"{args.snr}_{args.n1}_{args.n2}_{args.seed}_{args.motion}_{args.density}_{args.defocus[0]}_{args.defocus[1]}"
    cached = Path(args.cache) / f"set1_{key}.npz" if args.cache else None
    if cached is not None and cached.exists():
        res1 = dict(np.load(cached))
    else:
        res1 = aligner.align(imgs[s1].numpy(), defocus[s1], progress=False)
        if cached is not None:
            cached.parent.mkdir(parents=True, exist_ok=True)
            np.savez(cached, **res1)
    print(f"set-1 alignment: {time.perf_counter() - t0:.0f} s, median angle error "
          f"{np.median(angle_errors(res1['rotations'], truth.iloc[s1])):.2f}°")  # fmt: skip
    set1 = pd.DataFrame(res1["amplitudes"], columns=cols)
    set1[EULER], set1[ORIGIN] = res1["euler"], res1["origins"]
    set1[DEFOCUS] = defocus[s1]  # the CTF estimate: known for real data too
    n_val = max(args.n1 // 10, 2)
    train_rows, val_rows = set1.iloc[: args.n1 - n_val], set1.iloc[args.n1 - n_val :]
    kinds = KINDS
    std = Standardiser.fit(targets_from_tables(train_rows, train_rows, cols))

    ref = heavy_atom_reference(atoms.coords, atoms.weights, vectors, atoms.elements, sigma)
    optics_row = {
        "rlnImageSize": size,
        "rlnImagePixelSize": apix,
        "rlnVoltage": 200.0,
        "rlnSphericalAberration": 2.0,
        "rlnAmplitudeContrast": 0.1,
        "rlnCtfDataArePhaseFlipped": 1,
    }
    fitted = fitted_projections(ref, train_rows, train_rows[cols].to_numpy(), optics_row)
    discs = particle_discs(train_rows, particle_radius(ref.coords.numpy(), sigma) / apix, size, apix)
    noise = NoiseModel.from_fits(imgs[train_rows.index.to_numpy()], fitted, discs)
    shifts = np.linalg.norm(train_rows[ORIGIN].to_numpy(), axis=1)
    prior = TrainingPrior(train_rows[cols].to_numpy(), 0.5, float(np.percentile(shifts, 99)), defocus[s1], noise)
    print(f"noise measured on set 1 against the alignment's fits: SNR {noise.snr:.3g} (preprocessed images)")

    class Images(torch.utils.data.Dataset):
        def __init__(self, rows):
            self.idx = rows.index.to_numpy()
            raw = targets_from_tables(rows, rows, cols)
            self.targets = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in std.forward(raw).items()}

        def __len__(self):
            return len(self.idx)

        def __getitem__(self, i):
            return imgs[self.idx[i]][None], {k: v[i] for k, v in self.targets.items()}, i

    true_amps = truth2.reindex(columns=cols).to_numpy(dtype=np.float64)
    if args.motion == "morph" and np.isnan(true_amps).any():
        raise SystemExit("the morph truth has no mode columns to score amplitudes against")

    def errors(rotations, origins, amplitudes) -> dict:
        ang = angle_errors(torch.as_tensor(rotations, dtype=torch.float64), truth2)
        sh = shift_errors_px(np.asarray(origins), truth2, apix)
        rmsd = np.sqrt(((np.asarray(amplitudes) - true_amps) ** 2).mean(1))
        return {"angle_median": np.median(ang), "angle_mean": ang.mean(), "shift": sh.mean(), "amp_rmsd": rmsd.mean()}

    raw_train = targets_from_tables(train_rows, train_rows, cols)
    const = constant_prediction({k: torch.as_tensor(v) for k, v in raw_train.items()})
    const_err = errors(
        quaternion_to_matrix(const["orientation"].double()).expand(args.n2, 3, 3),
        np.tile(const["shifts"].numpy(), (args.n2, 1)),
        np.tile(const["amplitudes"].numpy(), (args.n2, 1)),
    )

    def predict(model):
        model.eval()
        with torch.no_grad():
            outs = [model(imgs[s2][i : i + 256, None]) for i in range(0, args.n2, 256)]
        out = {k: torch.cat([o[k] for o in outs]) for k in outs[0]}
        raw = std.inverse({k: out[k].double().numpy() for k in KINDS})
        hyp = out.get("hypotheses", out["orientation"][:, None])
        q, _ = ranked(hyp.double(), out.get("scores", torch.zeros(len(hyp), 1)).double())
        return raw, quaternion_to_matrix(q)

    header = (
        f"{'source':>10} {'phase':>16} {'epoch':>5} {'presented':>9} {'wall min':>8} {'CPU min':>7} | "
        f"{'angle med':>9} {'mean':>6} {'shift px':>8} {'amp RMSD':>8} | best of 4: angle med, any of {args.hypotheses}"
    )
    line = lambda e: f"{e['angle_median']:>8.1f}° {e['angle_mean']:>5.1f}° {e['shift']:>8.2f} {e['amp_rmsd']:>8.2f}"
    print(f"\nconstant prediction (set-1 labels' L1-best constant): {line(const_err)}")
    print(header)
    base = {
        **train_params(cfg),
        "batch_size": args.batch,
        "lr": args.lr,
        "lr_step": 10**6,
        "patience": 10**6,
        "seed": args.seed,
        "augment_inplane": True,
    }
    finals = {}
    not_training = ("no_refit", "cache", "timing_repeats", "timing_threads")
    training = {k: v for k, v in vars(args).items() if not k.startswith("refit") and k not in not_training}
    for source in args.sources:
        digest = hashlib.sha1(json.dumps({**training, "sources": source}, sort_keys=True).encode()).hexdigest()[:12]
        saved = Path(args.cache) / f"network_{source}_{digest}.npz" if args.cache else None
        if saved is not None and saved.exists():
            kept = np.load(saved)
            raw, R = {"shifts": kept["shifts"], "amplitudes": kept["amplitudes"]}, torch.as_tensor(kept["rotations"])
            print(f"{source:>10} predictions of the network trained with these options: {saved}")
            print(f"{'':>63} | {line(errors(R[:, 0], raw['shifts'], raw['amplitudes']))}")
            finals[source] = (None, raw, R)
            continue
        torch.manual_seed(args.seed)
        model = Regressor(
            kinds,
            len(cols),
            depth=args.depth,
            dropout=args.dropout,
            image_size=size,
            hypotheses=args.hypotheses,
            width=args.width,
            input_size=args.input_size,
            orientation_bins=args.bins,
            bin_weight=args.bin_weight,
        )
        share = args.pretrain_share
        phases = {"alignment": [("alignment", args.minutes)], "simulation": [("simulation", args.minutes)]}.get(
            source, [("simulation", args.minutes * share), ("alignment", args.minutes * (1 - share))]
        )
        staged = []  # (phase, minutes, learning rate); a decay is a second stage with fresh Adam moments
        for phase, minutes in phases:
            if phase == "alignment" and args.lr_decay is not None:
                decay = args.lr_decay
                staged += [(phase, minutes * decay, args.lr), (phase, minutes * (1 - decay), args.lr / 10)]
            else:
                staged.append((phase, minutes, args.lr))
        presented, wall, cpu = 0, 0.0, 0.0
        for phase, minutes, lr in staged:
            if phase == "simulation":
                train_ds = TrainingSimulator(
                    ref.coords.numpy(), ref.weights.numpy(), ref.modes.numpy(), sigma, prior, optics_row, cols,
                    kinds=kinds, standardise=std.forward, seed=args.seed, batch_size=args.batch,
                    images_per_epoch=args.images_per_epoch, oversample=args.oversample,
                )  # fmt: skip
            else:
                train_ds = Images(train_rows)
            settings = TrainSettings.from_params({**base, "lr": lr, "epochs": 10**6}, device="cpu")
            with tempfile.TemporaryDirectory() as out:
                epoch, spent = 0, 0.0
                while spent < minutes * 60:
                    w0, c0 = time.perf_counter(), time.process_time()
                    hist = fit(model, train_ds, Images(val_rows), settings, Path(out), meta={"phase": phase},
                               resume=True, stop_after=args.chunk, progress=False)  # fmt: skip
                    model.load_state_dict(torch.load(f"{out}/last.pt", weights_only=False)["model"])
                    dw, dc = time.perf_counter() - w0, time.process_time() - c0
                    spent, wall, cpu = spent + dw, wall + dw, cpu + dc
                    epoch = len(hist)
                    presented += int(round(hist["train_images_per_s"].iloc[-args.chunk :].mul(
                        hist["seconds"].iloc[-args.chunk :]).sum()))  # fmt: skip
                    raw, R = predict(model)
                    e = errors(R[:, 0], raw["shifts"], raw["amplitudes"])
                    ang_k = np.stack([angle_errors(R[:, k], truth2) for k in range(R.shape[1])], 1)
                    label = phase + (" lr/10" if lr < args.lr else "")
                    print(f"{source:>10} {label:>16} {epoch:>5} {presented:>9} {wall / 60:>8.1f} {cpu / 60:>7.1f} | "
                          f"{line(e)} | {np.median(ang_k[:, :4].min(1)):.1f}°  within 20°: "
                          f"{(ang_k.min(1) < 20).mean():.0%}", flush=True)  # fmt: skip
        finals[source] = (model, raw, R)
        if saved is not None:
            np.savez(saved, shifts=raw["shifts"], amplitudes=raw["amplitudes"], rotations=R.numpy())

    if args.no_refit:
        return
    torch.set_num_threads(args.timing_threads or args.threads)
    print(f"\nset 2 re-fitted (elastic) against the truth; CPU-s per image measured here (median of "
          f"{args.timing_repeats} runs, {args.timing_threads or args.threads} threads):")  # fmt: skip

    def timed(run):
        """(the result, median CPU-s per set-2 image over --timing-repeats runs): the fits are deterministic, so
        only the time differs between runs; the median is what the ratios are taken of (this machine is noisy)."""
        cpu = []
        for _ in range(args.timing_repeats):
            c0 = time.process_time()
            out = run()
            cpu.append((time.process_time() - c0) / args.n2)
        return out, float(np.median(cpu))

    glob, glob_cpu = timed(lambda: aligner.align(imgs[s2].numpy(), defocus[s2], progress=False))
    print(f"{'global alignment':>52}: {line(errors(glob['rotations'], glob['origins'], glob['amplitudes']))}  "
          f"{glob_cpu:.3f} CPU-s/image")  # fmt: skip
    from copy import copy
    from dataclasses import replace

    band = band_size(size, apix, cfg["align"]["fine_lowpass"])
    grids = {"image": size, "band": band}
    if "band" in args.refit_fine_grid and aligner.settings.fine:  # what the same grid would save the global alignment
        glob_band = copy(aligner)
        glob_band.settings = replace(aligner.settings, fine=[replace(st, size=band) for st in aligner.settings.fine])
        gb, gb_cpu = timed(lambda: glob_band.align(imgs[s2].numpy(), defocus[s2], progress=False))
        print(f"{f'global alignment, fine stage on {band} px':>52}: "
              f"{line(errors(gb['rotations'], gb['origins'], gb['amplitudes']))}  {gb_cpu:.3f} CPU-s/image "
              f"({gb_cpu / glob_cpu:.2f}×)")  # fmt: skip
    refitters = []
    steps = args.refit_steps or [(aligner.settings.coarse[0].steps, aligner.settings.fine[0].steps)]
    coarse_grids = {
        "search": aligner.settings.coarse[0].size,
        "band": band_size(size, apix, cfg["align"]["coarse_lowpass"]),
    }
    for grid, (coarse, fine), spec, settle, coarse_grid in [
        (g, st, sc, se, cg)
        for g in args.refit_fine_grid
        for st in steps
        for sc in args.refit_lr_scale
        for se in args.refit_settle
        for cg in args.refit_coarse_grid
    ]:
        parts = [float(x) for x in spec.split(",")]
        scale, fine_scale = parts[0], parts[-1]  # "S": both stages; "S,F": the fine stage's own
        local = copy(aligner)  # the same model and search grid; only the refinement's steps, rates, fine grid differ
        local.settings = replace(
            aligner.settings,
            coarse=[
                replace(st.scaled_rates(scale), steps=coarse, size=coarse_grids[coarse_grid])
                for st in aligner.settings.coarse
            ],
            fine=[replace(st, steps=settle) for st in aligner.settings.coarse][: 1 if settle else 0]
            + [replace(st.scaled_rates(fine_scale), steps=fine, size=grids[grid]) for st in aligner.settings.fine][
                : 1 if fine else 0
            ],
        )
        label = f"{coarse}+{settle}+{fine} steps" if settle else f"{coarse}+{fine} steps"
        label += f", fine {band} px" if grid == "band" else ""
        label += f", coarse {coarse_grids['band']} px" if coarse_grid == "band" else ""
        refitters.append((label + (f", lr ×{spec}" if spec != "1" else ""), local))
    for source, (_model, raw, R) in finals.items():
        K = R.shape[1]
        keeps = [(K, keep) for keep in args.refit_keep or []]
        plans = keeps if args.refit_keep_only else [(k, None) for k in sorted({1, min(K, 4), K})] + keeps
        for (steps, local), (k, keep) in [(r, p) for r in refitters for p in plans]:
            start = {"rotations": R[:, :k].numpy(), "origins": raw["shifts"], "amplitudes": raw["amplitudes"]}
            loc, loc_cpu = timed(lambda local=local, keep=keep, start=start: local.align(
                imgs[s2].numpy(), defocus[s2], progress=False, search=False, elastic=True, keep=keep, start=start,
            ))  # fmt: skip
            won = np.bincount(loc["start"], minlength=k)[: max(4, keep or 0)] / args.n2
            frm = f"{k}" if keep is None else f"best {keep} of {k} by cc"
            print(f"{source + f' + local re-fit from {frm}, {steps}':>52}: "
                  f"{line(errors(loc['rotations'], loc['origins'], loc['amplitudes']))}  {loc_cpu:.3f} CPU-s/image "
                  f"({loc_cpu / glob_cpu:.2f}× the global); winning hypothesis by rank: "
                  + " ".join(f"{w:.0%}" for w in won))  # fmt: skip
            # Could a global search be kept for the misses alone? Only if the re-fit's cc tells them apart.
            miss = angle_errors(torch.as_tensor(loc["rotations"]), truth2) > 10.0
            low = loc["cc"] <= np.quantile(loc["cc"], 0.2)
            print(f"{'':>52}  misses (> 10°): {miss.mean():.0%}; the lowest-cc 20% of images hold "
                  f"{(miss & low).sum() / max(miss.sum(), 1):.0%} of them")  # fmt: skip


if __name__ == "__main__":
    main()
