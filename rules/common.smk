# Helpers shared by all rule files: schema validation of the config (defaults filled in),
# output paths, the grid of datasets, and the per-stage params that decide re-runs.
import importlib
import json

from snakemake.exceptions import WorkflowError

import cryopipe
from cryopipe.config import validate_config
from cryopipe.errors import CryopipeError

try:
    _validated = validate_config(config, source="config")
except CryopipeError as e:
    raise WorkflowError(str(e))
config.clear()
config.update(_validated)

RESULTS = config["results"]


wildcard_constraints:
    dataset=r"[A-Za-z0-9_.+-]+",


def res(path):
    return f"{RESULTS}/{path}"


def stage_params(stage):
    """The exact config subset a stage depends on, as stable JSON (changing it re-runs the stage).

    cryopipe's version is part of it: results made by another release re-run (Snakemake cannot see
    edits to the package's code; during development use `--forcerun <rule>`, see the README).
    """
    command = importlib.import_module(f"cryopipe.commands.{stage}")
    return json.dumps({**command.params_from_config(config), "cryopipe_version": cryopipe.__version__}, sort_keys=True)


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


def all_targets():
    targets = [res("reference/map.mrc"), res("modes/modes.nmd")]
    for ds in datasets():
        targets += expand(res("preprocess/{dataset}/{name}"), dataset=ds,
                          name=["particles.star", "set1.star", "set2.star", "split.csv"])
        targets += expand(res("align/{dataset}/{name}"), dataset=ds, name=["kept.star", "amplitudes.csv"])
        targets += expand(res("infer/{dataset}/{name}"), dataset=ds, name=["particles.star", "amplitudes.csv"])
        targets += expand(res("analysis/{dataset}/{name}"), dataset=ds, name=["space.csv", "groups.csv", "resolutions.csv"])
        targets += expand(res("analysis/{dataset}/maps/group{group}.mrc"), dataset=ds, group=GROUPS)
        targets += expand(res("analysis/{dataset}/trajectory_pc{pc}.pdb"), dataset=ds, pc=TRAJECTORY_PCS)
    targets.append(res("benchmark/summary.csv"))
    return targets


# Threads for torch in each job: Snakemake's `threads` become OMP/MKL threads.
TORCH_ENV = "OMP_NUM_THREADS={threads} MKL_NUM_THREADS={threads}"
