"""Our VAE beside cryoDRGN 4.3.1's `train_vae` on the same particles, the same settings and the same scores.

cryoDRGN runs as a separate program (the optional `.[compare]` extra, or a venv: `--cryodrgn PATH`), never
imported. Both see one stack: the simulated particles of a finished run (`<results>/simulate/<dataset>/`)
preprocessed by `cryopipe preprocess` *without* phase flip (cryoDRGN multiplies by the signed CTF) at the
VAE's size (`vae.size`), with the STAR's poses (the simulation's consensus poses) or the truth (`--poses
truth`). Matching: box, zdim, epochs, batch size, learning rate, β, hidden width and depth of encoder and
decoder, positional-encoding frequencies (geometric, L/2 of them), Hartley domain, the data's sign kept.

Scores for both: |Spearman ρ| of PC1 of z with the true trajectory position, k-means accuracy with the true
states (discrete), the pipeline's own groups over z (`analysis.cluster`) backprojected and scored against their
true maps (mean FSC-0.5 resolution, Å), median seconds per epoch (the same 2 threads). Not a test; prints a
table and writes `<out>/compare.csv`.

    python benchmarks/vae_compare.py --results results --dataset snr1_df0.5-2 --cryodrgn /tmp/cryodrgn-venv/bin/cryodrgn
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path


def run(cmd: list, log: Path, env: dict) -> float:
    """Run a program, its output to `log`; seconds of wall time. A failure stops the benchmark naming the log."""
    t0 = time.perf_counter()
    with open(log, "w") as f:
        proc = subprocess.run([str(c) for c in cmd], stdout=f, stderr=subprocess.STDOUT, env=env)
    if proc.returncode:
        sys.exit(f"{cmd[0]} {cmd[1]} failed (exit {proc.returncode}); see {log}")
    return time.perf_counter() - t0


def cryodrgn_epoch_seconds(log: Path) -> list[float]:
    """Per-epoch times from cryoDRGN's log lines '... Finished in H:MM:SS.ffffff'."""
    out = []
    for h, m, s in re.findall(r"=====> Epoch.*?Finished in (\d+):(\d+):([\d.]+)", log.read_text()):
        out.append(3600 * int(h) + 60 * int(m) + float(s))
    return out


def group_maps_vs_truth(cfg: dict, results: Path, dataset: str, latent, star: Path, work: Path, env: dict) -> float:
    """The pipeline's own downstream on one latent table: reduce → cluster (`analysis.cluster`) → backproject
    each group at the STAR's poses → evaluate; the groups' mean resolution vs their true maps (FSC 0.5, Å)."""
    from cryopipe.analysis.groups import n_groups
    from cryopipe.commands import backproject, cluster, evaluate, reduce

    work.mkdir(parents=True, exist_ok=True)
    latent.to_csv(work / "latent.csv", index=False)
    sim = results / "simulate" / dataset
    py = [sys.executable, "-m", "cryopipe"]
    run([*py, "reduce", "--params", json.dumps({**reduce.params_from_config(cfg), "pool_alignment": False}),
         "--infer-star", star, "--infer-amplitudes", work / "latent.csv", "--truth", sim / "truth.csv",
         "--out-space", work / "space.csv", "--out-pca", work / "pca.json", "--out-plot", work / "space.png"],
        work / "reduce.log", env)  # fmt: skip
    k = n_groups(cfg["analysis"]["cluster"])
    stars = [work / f"group{g}.star" for g in range(k)]
    run([*py, "cluster", "--params", json.dumps(cluster.params_from_config(cfg)), "--space", work / "space.csv",
         "--raw-star", sim / "particles.star", "--out-table", work / "groups.csv", "--out-groups", *stars,
         "--out-plot", work / "groups.png"], work / "cluster.log", env)  # fmt: skip
    maps = {h: [work / f"group{g}_{h}.mrc" for g in range(k)] for h in ("half1", "half2", "map")}
    for g in range(k):
        run([*py, "backproject", "--params", json.dumps(backproject.params_from_config(cfg)), "--star", stars[g],
             "--out-half1", maps["half1"][g], "--out-half2", maps["half2"][g], "--out-map", maps["map"][g]],
            work / f"backproject{g}.log", env)  # fmt: skip
    run([*py, "evaluate", "--params", json.dumps(evaluate.params_from_config(cfg)), "--groups-table",
         work / "groups.csv", "--half1", *maps["half1"], "--half2", *maps["half2"], "--maps", *maps["map"],
         "--atoms", results / "reference" / "atoms.npz", "--modes", results / "modes" / "modes.npz",
         "--truth", sim / "truth.csv", "--out-fsc", work / "fsc.csv", "--out-resolutions", work / "resolutions.csv",
         "--out-plot", work / "fsc.png"], work / "evaluate.log", env)  # fmt: skip
    import pandas as pd

    return float(pd.read_csv(work / "resolutions.csv")["resolution vs truth @0.5 (Å)"].mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", required=True, help="a finished run's results folder")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--config", default="config.yaml", help="the run's config (vae, preprocess settings)")
    ap.add_argument("--cryodrgn", default="cryodrgn", help="the cryodrgn program (4.3.1)")
    ap.add_argument("--poses", choices=["star", "truth"], default="star")
    ap.add_argument("--epochs", type=int, help="default: vae.epochs")
    ap.add_argument("--out", default="bench-vae", help="scratch folder")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import pandas as pd

    from cryopipe.analysis.errors import to_markdown
    from cryopipe.analysis.separation import kmeans_accuracy, trajectory_spearman
    from cryopipe.analysis.space import fit_pca
    from cryopipe.commands import preprocess, vae_train
    from cryopipe.config import load_config
    from cryopipe.io.star import read_star

    cfg = load_config(args.config)
    v = cfg["vae"]
    epochs = args.epochs or v["epochs"]
    size = v["size"] or cfg["preprocess"]["size"]
    zdim, beta = v["zdim"], (1.0 / v["zdim"] if v["beta"] is None else v["beta"])
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    sim = Path(args.results) / "simulate" / args.dataset
    truth = pd.read_csv(sim / "truth.csv")

    # 1. One stack for both: not phase-flipped, Fourier-cropped to the VAE's size, normalised.
    pre = out / "stack"
    pre.mkdir(exist_ok=True)
    pp = {**preprocess.params_from_config(cfg), "phase_flip": False, "size": size, "device": "cpu"}
    star = pre / "particles.star"
    if not star.exists():
        run([sys.executable, "-m", "cryopipe", "preprocess", "--params", json.dumps(pp),
             "--star", sim / "particles.star", "--out-star", star, "--out-mrcs", pre / "particles.mrcs",
             "--out-split", pre / "split.csv",
             "--out-set1", pre / "set1.star", "--out-set2", pre / "set2.star", "--out-preview", pre / "preview.png"],
            out / "preprocess.log", env)  # fmt: skip
    poses_star = star
    if args.poses == "truth":  # the truth's poses written into the STAR both programs read
        particles, optics = read_star(star)
        cols = ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi", "rlnOriginXAngst", "rlnOriginYAngst"]
        particles[cols] = truth[cols].to_numpy()
        from cryopipe.io.star import write_star

        poses_star = pre / "particles_truth_poses.star"
        write_star(poses_star, particles, optics)
    apix = float(read_star(star)[1]["rlnImagePixelSize"].iloc[0])

    # 2. Ours.
    ours = out / "ours"
    params = {**vae_train.params_from_config(cfg), "epochs": epochs, "device": "cpu", "validation_fraction": 0.0}
    params["patience"] = epochs + 1
    run([sys.executable, "-m", "cryopipe", "vae-train", "--params", json.dumps(params), "--star", poses_star,
         "--out-model", ours / "model.pt", "--out-history", ours / "history.csv",
         "--out-curve", ours / "curve.png", "--out-latent", ours / "latent.csv",
         "--out-star", ours / "particles.star"], out / "ours.log", env)  # fmt: skip
    z_ours = pd.read_csv(ours / "latent.csv")[[f"z{k + 1}" for k in range(zdim)]].to_numpy()
    sec_ours = pd.read_csv(ours / "history.csv")["seconds"].to_numpy()

    # 3. cryoDRGN, the same settings.
    drgn = out / "cryodrgn"
    drgn.mkdir(exist_ok=True)
    log = out / "cryodrgn_train.log"
    done = log.exists() and "Training complete" in log.read_text()  # kept from an earlier run: delete to redo
    if not done:
        run([args.cryodrgn, "parse_pose_star", poses_star, "-o", drgn / "pose.pkl", "-D", size, "--Apix", apix],
            out / "cryodrgn_pose.log", env)  # fmt: skip
        run([args.cryodrgn, "parse_ctf_star", poses_star, "-o", drgn / "ctf.pkl", "-D", size, "--Apix", apix],
            out / "cryodrgn_ctf.log", env)  # fmt: skip
        run([args.cryodrgn, "train_vae", pre / "particles.mrcs", "--poses", drgn / "pose.pkl",
             "--ctf", drgn / "ctf.pkl", "--zdim", zdim, "-n", epochs, "-b", v["batch_size"],
             "--lr", v["lr"], "--beta", beta,
             "--wd", v["weight_decay"],
             "--enc-dim", v["hidden"], "--enc-layers", v["layers"],
             "--dec-dim", v["hidden"], "--dec-layers", v["layers"],
             "--pe-type", "geom_lowf", "--pe-dim", v["n_freqs"] or size // 2, "--domain", "hartley",
             "--uninvert-data",
             "--seed", cfg["seed"],
             "--no-amp", "--no-analysis", "--max-threads", args.threads, "-o", drgn / "train"], log, env)  # fmt: skip
    import pickle

    zfiles = sorted((drgn / "train").glob("z.*.pkl"), key=lambda p: int(p.stem.split(".")[1]))
    final = drgn / "train" / "z.pkl"
    with open(final if final.exists() else zfiles[-1], "rb") as f:
        z_drgn = np.asarray(pickle.load(f))
    sec_drgn = np.asarray(cryodrgn_epoch_seconds(log))

    # 4. The same scores.
    label = truth["label"].to_numpy()
    discrete = cfg["conformations"]["distribution"] == "discrete"
    rows = []
    particles = pd.read_csv(ours / "latent.csv")["particle"].to_numpy()
    for name, z, sec in (("cryopipe VAE", z_ours, sec_ours), ("cryoDRGN 4.3.1 train_vae", z_drgn, sec_drgn)):
        pc1 = fit_pca(z).transform(z)[:, 0]
        latent = pd.DataFrame(z, columns=[f"z{k + 1}" for k in range(zdim)])
        latent.insert(0, "particle", particles)
        work = out / ("maps_ours" if name.startswith("cryopipe") else "maps_cryodrgn")
        resolution = group_maps_vs_truth(cfg, Path(args.results), args.dataset, latent, poses_star, work, env)
        rows.append(
            {
                "method": name,
                "dataset": args.dataset,
                "poses": args.poses,
                "particles": len(z),
                "box": size,
                "zdim": zdim,
                "epochs": epochs,
                "spearman_pc1": trajectory_spearman(pc1, label),
                "kmeans_accuracy": kmeans_accuracy(z, label, cfg["seed"]) if discrete else float("nan"),
                "group_maps_vs_truth_A": resolution,
                "seconds_per_epoch": float(np.median(sec)) if len(sec) else float("nan"),
            }
        )
    table = pd.DataFrame(rows)
    table.to_csv(out / "compare.csv", index=False)
    print(to_markdown(table, floatfmt=".3f"))


if __name__ == "__main__":
    main()
