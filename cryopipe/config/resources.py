"""What a run will need, from the validated config alone: disk for every stage's main outputs and the
peak memory of the heaviest stage; refuse a run that cannot fit before any rule runs.

Cheap and pure: no writes, no image data read (for `data.source: import` the STAR is scanned line by
line for its particle count and image size, and a stack header is read if the STAR lacks the size).
The figures are estimates (within a factor of ~2), meant to catch a config that needs terabytes,
not to size a cluster job.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cryopipe.errors import CryopipeError

STAR_ROW = 300  # bytes per particle row of a STAR file (RELION 3.1, ~15 columns)
CSV_ROW = 200  # bytes per row of the per-particle CSV tables
GB = 1e9


def human(n: float) -> str:
    """Bytes in decimal units: 1.2 GB, 84 TB."""
    for unit in ("B", "kB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"


def _star_summary(path: str | os.PathLike) -> tuple[int, int] | None:
    """(particle rows, image size) of a RELION 3.0/3.1 STAR by a line scan; None if it cannot tell."""
    from cryopipe.io.mrc import read_stack_header
    from cryopipe.io.star import resolve_stack_path

    blocks: dict[str, list] = {}  # name -> [columns, rows, first row]
    name, in_loop = None, False
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            for line in f:
                s = line.strip()
                if not s or s.startswith("#"):
                    continue
                if s.startswith("data_"):
                    name, in_loop = s[5:], False
                    blocks[name] = [[], 0, None]
                elif s.startswith("loop_"):
                    in_loop = True
                elif s.startswith("_"):
                    if name is not None:
                        blocks[name][0].append(s.split()[0][1:])
                elif in_loop and name is not None:
                    b = blocks[name]
                    b[1] += 1
                    if b[2] is None:
                        b[2] = s.split()
    except OSError:
        return None
    if not blocks:
        return None
    particles = blocks.get("particles") or list(blocks.values())[-1]
    cols, n, first = particles
    if not n or first is None:
        return None
    size = None
    for cols_, _, row in (blocks.get("optics", [[], 0, None]), particles):
        if row is not None and "rlnImageSize" in cols_ and cols_.index("rlnImageSize") < len(row):
            try:
                size = int(float(row[cols_.index("rlnImageSize")]))
            except ValueError:
                size = None
            break
    if size is None and "rlnImageName" in cols and cols.index("rlnImageName") < len(first):
        try:
            stack = first[cols.index("rlnImageName")].split("@", 1)[-1]
            size = read_stack_header(resolve_stack_path(stack, path)).shape[-1]
        except CryopipeError:
            return None
    return (n, size) if size else None


def _network_params(cfg: dict) -> float:
    """Rough weight count of one network: ResNet stages (∝ width²) + the flattened feature map × 1000 MLP."""
    tr = cfg["train"]
    base = {18: 11.2e6, 34: 21.3e6, 50: 23.5e6}[tr["depth"]] * (tr["width"] / 64) ** 2
    channels = 8 * tr["width"] * (4 if tr["depth"] == 50 else 1)
    side = max(1, (tr["input_size"] or cfg["preprocess"]["size"]) // 32)
    return base + channels * side**2 * 1000


def estimate_resources(cfg: dict) -> dict:
    """Disk bytes of every stage's main outputs and the peak memory of the heaviest stage.

    Returns {"disk": {stage: bytes}, "disk_bytes": total, "memory": {stage: bytes}, "memory_bytes": peak,
    "memory_stage": name, "keys": {stage: "config keys that drive it"}, "note": str}.
    """
    simulated = cfg["data"]["source"] == "simulate"
    note = ""
    if simulated:
        grid = cfg["simulate"]["grid"]
        branches = len(grid["snr"]) * len(grid["defocus"])
        n, box = cfg["conformations"]["n_particles"], cfg["simulate"]["box"]
        n_keys, box_keys = "conformations.n_particles", "simulate.box"
        branch_keys = " × simulate.grid (snr × defocus)"
    else:
        branches, box_keys, branch_keys = 1, f"the images of {cfg['data']['import']['star']}", ""
        n_keys = f"the particles of {cfg['data']['import']['star']}"
        summary = _star_summary(cfg["data"]["import"]["star"]) if cfg["data"]["import"]["star"] else None
        if summary is None:
            # as rules/common.smk assumes for imported images
            n, box, note = 0, 256, "STAR not readable: its particles not counted, a 256-px box assumed"
        else:
            n, box = summary
    size = cfg["preprocess"]["size"]
    pad = cfg["analysis"]["backproject"]["pad"]
    n1 = n * cfg["preprocess"]["set1_fraction"]
    n2 = n - n1
    n_groups = max(1, cfg["analysis"]["cluster"]["k"])
    kinds = 1 if cfg["train"]["models"] == "combined" else 3
    refining = cfg["refine"]["mode"] != "none"

    disk = {
        "reference": cfg["simulate"]["box"] ** 3 * 4,
        "conformations": n * CSV_ROW if simulated else 0,
        "simulate": branches * n * (box * box * 4 + STAR_ROW + CSV_ROW) if simulated else 0,
        "import": 0 if simulated else n * STAR_ROW,
        "preprocess": branches * n * (size * size * 4 + 3 * STAR_ROW),
        "align": branches * n1 * (2 * STAR_ROW + CSV_ROW),
        "train": branches * kinds * _network_params(cfg) * 4 * 4,  # model.pt + last.pt with Adam's moments
        "infer": branches * n2 * (STAR_ROW + CSV_ROW),
        "refine": branches * n2 * (STAR_ROW + CSV_ROW) if refining else 0,
        "analysis": branches * (n * (STAR_ROW + CSV_ROW) * 2 + n_groups * 3 * box**3 * 4),
    }
    memory = {
        "simulate": cfg["simulate"]["batch_size"] * (cfg["simulate"]["pad_factor"] * box) ** 2 * 16 * 8 + 0.5 * GB,
        "preprocess": cfg["preprocess"]["batch_size"] * box * box * 8 * 6 + 0.5 * GB,
        "align": n1 * size * size * 4 * 2 + 2 * GB,  # set 1 in memory + the search
        "refine": (n2 * size * size * 4 * 2 + 2 * GB) if refining else 0,
        "backproject": (pad * box) ** 3 * 28 + 1 * GB,  # rules/common.smk backproject_mem_mb
        "evaluate": box**3 * 8 * 12 + 0.5 * GB,  # half maps, full map, masks, phase-randomised copies
    }
    stage = max(memory, key=lambda k: memory[k])
    keys = {
        "simulate": f"{box_keys}, {n_keys}{branch_keys}",
        "preprocess": f"preprocess.size, {n_keys}{branch_keys}",
        "analysis": f"{box_keys}, analysis.cluster.k{branch_keys}",
        "backproject": f"{box_keys}, analysis.backproject.pad",
        "evaluate": box_keys,
        "align": f"preprocess.size, {n_keys}, preprocess.set1_fraction",
        "refine": f"preprocess.size, {n_keys}, refine.mode",
        "reference": "simulate.box",
    }
    return {
        "disk": disk,
        "disk_bytes": float(sum(disk.values())),
        "memory": memory,
        "memory_bytes": float(memory[stage]),
        "memory_stage": stage,
        "keys": keys,
        "note": note,
    }


def describe(est: dict) -> str:
    """One line: 'disk 1.2 GB (simulate 0.8 GB, preprocess 0.2 GB, ...), peak memory 1.9 GB (backproject)'."""
    top = sorted(((v, k) for k, v in est["disk"].items() if v >= 0.05 * est["disk_bytes"]), reverse=True)
    parts = ", ".join(f"{k} {human(v)}" for v, k in top[:3])
    line = (
        f"disk {human(est['disk_bytes'])} ({parts}), peak memory {human(est['memory_bytes'])} ({est['memory_stage']})"
    )
    return f"{line}; {est['note']}" if est["note"] else line


def _nearest_existing(path: Path) -> Path:
    path = path.absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _bytes_under(path: Path) -> int:
    """Size of what a re-run would replace (outputs already there)."""
    if not path.is_dir():
        return 0
    total = 0
    for root, _, files in os.walk(path):
        for f in files:
            try:
                total += os.lstat(os.path.join(root, f)).st_size
            except OSError:
                pass
    return total


def total_memory() -> int:
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def check_resources(
    cfg: dict, results_dir: str | os.PathLike | None = None, source: str = "config", memory: bool = True
) -> dict:
    """Refuse (one-line CryopipeError naming the config keys) a run whose outputs would not fit on the results
    folder's file system, or (with `memory`) whose heaviest stage needs more memory than this machine has.
    Returns the estimate. `results_dir` defaults to the config's `results`; outputs already under it count
    as free (a re-run replaces them). On a cluster the jobs run elsewhere: pass memory=False there."""
    est = estimate_resources(cfg)
    results = Path(results_dir if results_dir is not None else cfg["results"])
    free = shutil.disk_usage(_nearest_existing(results)).free + _bytes_under(results)
    problems = []
    if est["disk_bytes"] > free:
        stage = max(est["disk"], key=lambda k: est["disk"][k])
        problems.append(
            f"the run needs about {human(est['disk_bytes'])} of disk under {results} "
            f"(most for {stage}: {human(est['disk'][stage])}, set by {est['keys'].get(stage, stage)}), "
            f"but only {human(free)} is free"
        )
    ram = total_memory()
    if memory and est["memory_bytes"] > ram:
        stage = est["memory_stage"]
        problems.append(
            f"{stage} needs about {human(est['memory_bytes'])} of memory (set by {est['keys'].get(stage, stage)}), "
            f"but this machine has {human(ram)}"
        )
    if problems:
        raise CryopipeError(f"{source}: " + "; ".join(problems) + "; reduce those config keys")
    return est
