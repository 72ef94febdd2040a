# Helpers shared by all rule files (schema validation of the config with defaults filled in,
# output paths, the grid of datasets, the per-stage params that decide re-runs, input functions).
import importlib
import json
import os
import sys

from snakemake.exceptions import WorkflowError

import cryopipe
from cryopipe.analysis.groups import n_groups
from cryopipe.config import validate_config
from cryopipe.config.resources import check_resources
from cryopipe.errors import CryopipeError

try:
    _validated = validate_config(config, source="config")
    # Disk and memory the run will need, refused before anything runs when they cannot fit. On a cluster the
    # machine Snakemake runs on is not where the jobs run: its memory says nothing (disk still counts).
    check_resources(_validated, source="config", memory=not any("slurm" in str(a) for a in sys.argv))
except CryopipeError as e:
    raise WorkflowError(str(e))
config.clear()
config.update(_validated)

RESULTS = config["results"]

# The conda env files (envs/*.yaml) pip-install cryopipe from ${CRYOPIPE_SRC}: this checkout by default.
os.environ.setdefault("CRYOPIPE_SRC", workflow.basedir)


def res(path):
    return f"{RESULTS}/{path}"


def stage_params(stage, **overrides):
    """The exact config subset a stage depends on, as stable JSON (changing it re-runs the stage); `overrides`
    replace keys of it (a rule reused for another input, e.g. the VAE's space is never pooled).

    cryopipe's version is part of it: results made by another release re-run (Snakemake cannot see
    edits to the package's code; during development use `--forcerun <rule>`, see the README).
    """
    command = importlib.import_module(f"cryopipe.commands.{stage}")
    return json.dumps(
        {**command.params_from_config(config), **overrides, "cryopipe_version": cryopipe.__version__}, sort_keys=True
    )


def datasets():
    """Simulated grid points (one Snakemake branch each), or the single imported dataset."""
    if config["data"]["source"] == "import":
        return [config["data"]["import"]["name"]]
    from cryopipe.commands.simulate import dataset_name

    grid = config["simulate"]["grid"]
    return [dataset_name(snr, df) for snr in grid["snr"] for df in grid["defocus"]]


def raw_star(wildcards):
    stage = "import" if config["data"]["source"] == "import" else "simulate"
    return res(f"{stage}/{wildcards.dataset}/particles.star")


def raw_stars():
    """Every dataset's particle STAR (simulated or imported), in grid order."""
    stage = "import" if config["data"]["source"] == "import" else "simulate"
    return [res(f"{stage}/{ds}/particles.star") for ds in datasets()]


def all_targets():
    targets = [res("reference/map.mrc"), res("modes/modes.nmd")]
    for ds in datasets():
        targets += expand(
            res("preprocess/{dataset}/{name}"),
            dataset=ds,
            name=["particles.star", "set1.star", "set2.star", "split.csv"],
        )
        targets += expand(res("align/{dataset}/{name}"), dataset=ds, name=["kept.star", "amplitudes.csv"])
        targets += expand(res("infer/{dataset}/{name}"), dataset=ds, name=["particles.star", "amplitudes.csv"])
        if refining():
            targets += expand(res("refine/{dataset}/{name}"), dataset=ds, name=["particles.star", "amplitudes.csv"])
        targets += expand(
            res("analysis/{dataset}/{name}"), dataset=ds, name=["space.csv", "groups.csv", "resolutions.csv"]
        )
        targets += expand(res("analysis/{dataset}/maps/group{group}.mrc"), dataset=ds, group=GROUPS)
        targets += [f for g in GROUPS for f in improved_maps(ds, g)]
        targets += expand(res("analysis/{dataset}/trajectory_pc{pc}.pdb"), dataset=ds, pc=TRAJECTORY_PCS)
    targets.append(res("benchmark/summary.csv"))
    return targets


def truth_table(wildcards):
    """Ground truth of a simulated dataset (scores the alignment); none for imported data."""
    if config["data"]["source"] == "import":
        return []
    return res(f"simulate/{wildcards.dataset}/truth.csv")


def train_kinds():
    """One network per parameter type (DeepHEMNMA), or one combined network."""
    return ["combined"] if config["train"]["models"] == "combined" else ["amplitudes", "orientation", "shifts"]


# More than one GPU per training job: DistributedDataParallel, one process per GPU, via torchrun.
TRAIN_GPUS = config["train"]["gpus"]
TRAIN_LAUNCH = "python -m" if TRAIN_GPUS == 1 else f"torchrun --standalone --nproc_per_node {TRAIN_GPUS} -m"


GROUPS = list(range(n_groups(config["analysis"]["cluster"])))
TRAJECTORY_PCS = config["analysis"]["trajectory"]["components"]


def backproject_mem_mb(wildcards):
    """Two half-map accumulators (the non-redundant half, float32) + the inverse FFT's work space on the
    (pad × box)³ grid: measured peak ~26 bytes/voxel + ~0.6 GB (`benchmarks/backproject.py --memory`)."""
    box = config["simulate"]["box"] if config["data"]["source"] == "simulate" else 256
    n = box * config["analysis"]["backproject"]["pad"]
    return max(2000, int(n**3 * 28 / 1e6) + 1000)


def refining():
    return config["refine"]["mode"] != "none"


def set2_estimates(wildcards):
    """Image set 2's poses and amplitudes for the analysis: the network's, or their re-fit (refine.mode)."""
    stage = "refine" if refining() else "infer"
    return {
        "star": res(f"{stage}/{wildcards.dataset}/particles.star"),
        "amplitudes": res(f"{stage}/{wildcards.dataset}/amplitudes.csv"),
    }


def pooled_alignment(wildcards):
    """Set-1 alignment estimates join the space when analysis.pool_alignment is on."""
    if not config["analysis"]["pool_alignment"]:
        return {}
    return {
        "align_star": res(f"align/{wildcards.dataset}/particles.star"),
        "align_amplitudes": res(f"align/{wildcards.dataset}/amplitudes.csv"),
    }


def benchmark_inputs(wildcards):
    files = [res("reference/atoms.npz"), res("modes/modes.npz")]
    for ds in datasets():
        files += [
            res(f"analysis/{ds}/resolutions.csv"),
            res(f"align/{ds}/particles.star"),
            res(f"align/{ds}/amplitudes.csv"),
            res(f"infer/{ds}/particles.star"),
            res(f"infer/{ds}/amplitudes.csv"),
            res(f"infer/{ds}/test.star"),
            res(f"infer/{ds}/test_amplitudes.csv"),
        ]
        if refining():
            files += [res(f"refine/{ds}/particles.star"), res(f"refine/{ds}/amplitudes.csv")]
        if config["data"]["source"] != "import":
            files.append(res(f"simulate/{ds}/truth.csv"))
    return files


def classification_snrs():
    """The classification benchmark's data sets, one per SNR (folder snr<value>)."""
    return [f"{s:g}" for s in config["classification"]["snr"]]


def classification_networks():
    return config["classification"]["networks"]


VAE_PC1_FRAMES = list(range(config["vae"]["volumes"]["pc1_frames"]))


def vae_pose_files(wildcards):
    """The pose source of the VAE (vae.poses): none (the STAR's own), the truth, or the pipeline's estimates
    (set 1's alignment with set 2's network predictions or their re-fit)."""
    source, ds = config["vae"]["poses"], wildcards.dataset
    if source == "star":
        return []
    if source == "truth":
        return [res(f"simulate/{ds}/truth.csv")]
    set2 = "infer" if source == "network" else "refine"
    return [res(f"align/{ds}/particles.star"), res(f"{set2}/{ds}/particles.star")]


def vae_targets():
    """`snakemake vae`: per data set the VAE's groups, maps and decoded volumes; on simulated data the summary
    beside DeepHEMNMA's amplitudes."""
    targets = []
    for ds in datasets():
        targets += [res(f"vae/{ds}/analysis/resolutions.csv"), res(f"vae/{ds}/volumes/volumes.png")]
    if config["data"]["source"] != "import":
        targets.append(res("vae/summary.csv"))
    return targets


def improved_kinds():
    """The improved maps of every group (analysis.improve.method), in the order `evaluate` is told."""
    method = config["analysis"]["improve"]["method"]
    return {"off": [], "classical": ["fsc_weighted", "sharpened"]}.get(method, ["fsc_weighted", "sharpened", "network"])


def improved_maps(dataset, group):
    return [res(f"analysis/{dataset}/maps/group{group}_{kind}.mrc") for kind in improved_kinds()]


def improved_info(dataset, group):
    """The `improve` jobs' info files of a group: the classical job's, then the network's."""
    method = config["analysis"]["improve"]["method"]
    sources = {"off": [], "classical": ["classical"]}.get(method, ["classical", "network"])
    return [res(f"analysis/{dataset}/maps/group{group}_{s}.json") for s in sources]


def evaluate_improved(wildcards):
    """`evaluate`'s improved maps and their info, group by group."""
    return {
        "improved": [f for g in GROUPS for f in improved_maps(wildcards.dataset, g)],
        "improved_info": [f for g in GROUPS for f in improved_info(wildcards.dataset, g)],
    }
