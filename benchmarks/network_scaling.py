"""How the network's errors on unseen images fall with the number of training images.

The default config gives the network ~500 aligned training images and it does not learn
(issue 4); DeepHEMNMA trains on 20,000. This measures the curve in between. It simulates one
pool of AdK images exactly as `benchmarks/align.py` does (128 → 64 px by default, modes 7–9 on the
helix), holds out `--test` images, trains the combined ResNet + MLP (the training engine of the
`train` rule, in-plane augmentation on) on the first N of the rest for each N in `--train`, and
prints the mean angle / shift / amplitude errors on the held-out images. Targets are the ground
truth (the `train.targets: ground_truth` ablation: alignment targets can only be worse), so the
curve says how many images the network needs at best. Compare with the alignment's own errors
(`benchmarks/align.py`, or results/benchmark/summary.md: 1.5° / 0.08 px / 0.34 Å at SNR 1).

    python benchmarks/network_scaling.py --train 500 2000 5000 --epochs 15          # CPU, ~20 min
    python benchmarks/network_scaling.py --train 500 2000 8000 20000 --epochs 60 --device cuda
    python benchmarks/network_scaling.py --train 500 2000 5000 --epochs 0    # the constant prediction only

Beside each row it prints the errors of the best constant prediction (the L1-optimal single value
of the training targets for every image): a network that has learnt nothing scores exactly that.
"""

from __future__ import annotations

import argparse
import tempfile
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--train", type=int, nargs="+", default=[500, 2000, 5000], help="training-set sizes")
    ap.add_argument("--test", type=int, default=500, help="held-out images")
    ap.add_argument("--size", type=int, default=64, help="network image size (px)")
    ap.add_argument("--snr", type=float, default=1.0)
    ap.add_argument("--defocus", type=float, nargs=2, default=[0.5, 2.0], metavar=("LO", "HI"), help="µm")
    ap.add_argument("--epochs", type=int, default=15)
    ap.add_argument("--depth", type=int, default=18)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--kinds", nargs="+", default=["amplitudes", "orientation", "shifts"], help="what the one network predicts"
    )
    ap.add_argument("--no-augment", action="store_true", help="switch off the in-plane rotation augmentation")
    args = ap.parse_args()

    import numpy as np
    import torch
    from align import simulate_preprocessed  # benchmarks/align.py: the same simulation + preprocessing

    from cryopipe.analysis.errors import angle_errors, rotation_matrices
    from cryopipe.commands.train import params_from_config
    from cryopipe.config import default_config
    from cryopipe.geometry import quaternion_to_matrix
    from cryopipe.nn.engine import TrainSettings, fit
    from cryopipe.nn.heads import Regressor
    from cryopipe.nn.targets import Standardiser, constant_prediction, targets_from_tables

    torch.set_num_threads(args.threads)
    n_pool = max(args.train) + args.test
    t0 = time.perf_counter()
    imgs, truth, _, _, _ = simulate_preprocessed(n_pool, args.size, args.snr, True, args.defocus, seed=args.seed)
    print(
        f"simulated + preprocessed {n_pool} images at {args.size} px, SNR {args.snr} "
        f"in {time.perf_counter() - t0:.0f} s"
    )
    cols = ["mode7", "mode8", "mode9"]
    apix = 0.65 * 128 / args.size
    test = slice(n_pool - args.test, n_pool)
    R_true = rotation_matrices(truth.iloc[test])

    class Images(torch.utils.data.Dataset):
        def __init__(self, idx, targets):
            self.idx, self.targets = idx, {k: torch.as_tensor(v, dtype=torch.float32) for k, v in targets.items()}

        def __len__(self):
            return len(self.idx)

        def __getitem__(self, i):
            return imgs[self.idx[i]][None], {k: v[i] for k, v in self.targets.items()}, i

    print(
        f"{'train':>6} {'epochs':>6} {'minutes':>8} {'angle (°)':>10} {'shift (px)':>10} {'|Δa| (Å)':>9}   "
        f"constant prediction: {'angle':>6} {'shift':>6} {'|Δa|':>6}"
    )
    nan = float("nan")

    def held_out_errors(pred):
        angle = (
            angle_errors(quaternion_to_matrix(torch.as_tensor(pred["orientation"], dtype=torch.float64)), R_true).mean()
            if "orientation" in pred
            else nan
        )
        shift = np.linalg.norm(pred["shifts"] - raw["shifts"][test], axis=1).mean() / apix if "shifts" in pred else nan
        amp = np.abs(pred["amplitudes"] - raw["amplitudes"][test]).mean() if "amplitudes" in pred else nan
        return angle, shift, amp

    for n in args.train:
        n_val = max(n // 10, 1)
        tr, va = np.arange(n - n_val), np.arange(n - n_val, n)
        raw = {k: v for k, v in targets_from_tables(truth, truth, cols).items() if k in args.kinds}
        # what a network that learnt nothing predicts for every image (the L1-best constant of its targets)
        const = constant_prediction({k: torch.as_tensor(v[tr]) for k, v in raw.items()})
        const_err = held_out_errors({k: np.tile(v.numpy(), (args.test, 1)) for k, v in const.items()})
        std = Standardiser.fit({k: v[tr] for k, v in raw.items()})
        ds = {
            name: Images(idx, std.forward({k: v[idx] for k, v in raw.items()}))
            for name, idx in (("train", tr), ("val", va))
        }
        t1 = time.perf_counter()
        if args.epochs > 0:
            torch.manual_seed(args.seed)
            model = Regressor(tuple(args.kinds), len(cols), depth=args.depth, image_size=args.size)
            settings = TrainSettings.from_params(
                {
                    **params_from_config(default_config()),
                    "epochs": args.epochs,
                    "batch_size": args.batch,
                    "lr": args.lr,
                    "lr_step": max(args.epochs * 2 // 3, 1),
                    "patience": args.epochs,
                    "seed": args.seed,
                    "augment_inplane": not args.no_augment,
                },
                device=args.device,
            )
            with tempfile.TemporaryDirectory() as out:
                fit(model, ds["train"], ds["val"], settings, out, meta={}, progress=False)
                model.load_state_dict(torch.load(f"{out}/best.pt", weights_only=False)["model"])
            model.eval()
            dev = torch.device(args.device)
            with torch.no_grad():
                outs = [model(imgs[test][i : i + 256, None].to(dev)) for i in range(0, args.test, 256)]
            pred = std.inverse(
                {k: torch.cat([o[k] for o in outs]).float().cpu().numpy().astype(np.float64) for k in args.kinds}
            )
            err = held_out_errors(pred)
        else:  # --epochs 0: only the constant prediction's errors
            err = (nan, nan, nan)
        minutes = (time.perf_counter() - t1) / 60
        print(
            f"{n - n_val:>6} {args.epochs:>6} {minutes:>8.1f} {err[0]:>10.1f} {err[1]:>10.2f} {err[2]:>9.2f}   "
            f"{'':>20} {const_err[0]:>6.1f} {const_err[1]:>6.2f} {const_err[2]:>6.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
