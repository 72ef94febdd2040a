"""The Snakemake workflow: full DAG on the default config, a tiny end-to-end run, branch-only reruns."""

import re
import subprocess
import sys
from pathlib import Path

import mrcfile
import pandas as pd
import pytest
import yaml

from helpers import TINY

REPO = Path(__file__).resolve().parents[1]

TINY_WORKFLOW = {
    **TINY,
    "conformations": {"n_particles": 200, "max_shift": 2.0},
    "simulate": {
        "box": 48,
        "pixel_size": 1.8,
        "batch_size": 64,
        "grid": {"snr": [0.1, 1.0], "defocus": [[0.5, 1.5]]},
    },
    "preprocess": {"size": 32},
    "align": {"coarse_steps": 20, "fine_steps": 20, "grid_spacing": 20.0},
    "train": {
        "models": "combined",
        "depth": 18,
        "epochs": 2,
        "batch_size": 16,
        "source": "both",  # the simulator's inputs (atoms, modes) reach the rule
        "width": 16,
        "hypotheses": 2,
        "orientation": "bins",  # the classifier head, end to end
        "bin_spacing": 30.0,
        "simulation": {"epochs": 1, "images_per_epoch": 32},
    },
    "refine": {"mode": "elastic", "candidates": 2},
    "analysis": {"umap": False, "pool_alignment": True, "cluster": {"k": 2}, "trajectory": {"frames": 3}},
    "vae": {"size": 16, "zdim": 2, "hidden": 32, "layers": 2, "epochs": 2, "volumes": {"pc1_frames": 3}},
}
# Jobs downstream of one dataset's inference: reduce, cluster, trajectory, evaluate, and a map (and its classical
# improvement, the default analysis.improve.method) per group.
ANALYSIS = {"reduce": 1, "cluster": 1, "trajectory": 1, "backproject": 2, "improve_classical": 2, "evaluate": 1}


def per_dataset(n, **jobs):
    out = {k: v * n for k, v in jobs.items()}
    out.update({k: v * n for k, v in ANALYSIS.items()})
    out.update({"benchmark_tables": 1, "all": 1})
    return out


def snakemake(workdir, *args):
    cmd = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(workdir), *args]
    return subprocess.run(cmd, capture_output=True, text=True)


def planned_jobs(proc) -> dict:
    """{rule: count} from Snakemake's 'Job stats' table."""
    text = proc.stdout + proc.stderr
    assert "Job stats" in text, text[-2000:]
    table = text.split("Job stats:")[1]
    return {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.M) if m.group(1) != "total"}


def write_config(workdir, cfg):
    (workdir / "config.yaml").write_text(yaml.safe_dump(cfg))


def test_default_config_plans_full_dag(tmp_path):
    write_config(tmp_path, yaml.safe_load((REPO / "config.yaml").read_text()))
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr
    grid = 2  # 2 SNR × 1 defocus range in config.yaml
    assert planned_jobs(proc) == {
        "reference": 1,
        "modes": 1,
        "conformations": 1,
        "simulate": grid,
        "preprocess": grid,
        "align": grid,
        "train": grid,
        "infer": grid,
        "refine": grid,
        "reduce": grid,
        "cluster": grid,
        "trajectory": grid,
        "backproject": 3 * grid,
        "improve_classical": 3 * grid,
        "evaluate": grid,
        "benchmark_tables": 1,
        "all": 1,
    }


@pytest.mark.parametrize(
    "method, jobs",
    [
        ("off", {}),  # classical: the default, in test_default_config_plans_full_dag
        ("network", {"improve_classical": 6, "improve_train": 1, "improve_network": 6}),
    ],
)
def test_map_improvement_plans_one_training_per_run_and_a_job_per_group(tmp_path, method, jobs):
    """analysis.improve.method: the classical maps of every group, and for the network one training for the whole
    run (pairs from every dataset's optics) and one job per group; `evaluate` is handed every improved map."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["analysis"]["improve"] = {"method": method}
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr
    planned = planned_jobs(proc)
    assert {k: v for k, v in planned.items() if k.startswith("improve")} == jobs
    assert planned["evaluate"] == 2 and planned["backproject"] == 6
    if method == "network":
        proc = snakemake(tmp_path, "-n", "-p", "results/analysis/snr0.1_df0.5-2/resolutions.csv")
        evaluate = next(line for line in proc.stdout.splitlines() if "cryopipe evaluate" in line)
        assert "--improved-kinds fsc_weighted sharpened network" in evaluate
        assert evaluate.count("_network.mrc") == 3 and evaluate.count("_network.json") == 3


def test_classification_target_plans_its_own_dag_and_the_default_target_stays(tmp_path):
    """`snakemake classification`: the class builder, one image set, one data set per SNR, each network per SNR
    (GPU rules), an evaluation per SNR and one summary; none of the default target's rules."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    cfg["classification"] = {"snr": [0.5, 0.05], "networks": ["cnn2", "resnet50"]}
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "classification", "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr
    assert planned_jobs(proc) == {
        "homologues": 1,
        "homologue_signal": 1,
        "homologue_images": 2,
        "classify_train": 4,
        "classify_evaluate": 2,
        "classify_summary": 1,
        "classification": 1,
    }
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert "classify_train" not in planned_jobs(proc)


def test_vae_target_plans_the_vae_and_the_shared_analysis_rules(tmp_path):
    """`snakemake vae`: per data set the VAE (a GPU rule), its space, groups, maps and FSC through the analysis
    rules reused (`use rule`), decoded volumes; one summary beside DeepHEMNMA's analysis; pose sources."""
    cfg = yaml.safe_load((REPO / "config.yaml").read_text())
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "vae", "-n", "--quiet", "rules")
    assert proc.returncode == 0, proc.stderr
    jobs = planned_jobs(proc)
    grid = 2
    assert {k: jobs[k] for k in jobs if k.startswith("vae")} == {
        "vae_train": grid,
        "vae_reduce": grid,
        "vae_cluster": grid,
        "vae_backproject": 3 * grid,
        "vae_evaluate": grid,
        "vae_volumes": grid,
        "vae_summary": 1,
        "vae": 1,
    }
    assert jobs["reduce"] == grid and "trajectory" not in jobs  # DeepHEMNMA's space, for the summary
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert not any(k.startswith("vae") for k in planned_jobs(proc))
    # poses from the network: the VAE waits for set 1's alignment and set 2's inference
    cfg["vae"] = {"poses": "network"}
    write_config(tmp_path, cfg)
    proc = snakemake(tmp_path, "vae", "-n", "-p")
    assert proc.returncode == 0, proc.stderr
    train = next(b for b in proc.stdout.split("\n\n") if "rule vae_train:" in b)
    assert "align/snr1_df0.5-2/particles.star" in train or "align/snr0.1_df0.5-2/particles.star" in train
    assert "infer/" in train and "refine/" not in train


def test_import_source_plans_import_branch(tmp_path):
    (tmp_path / "user.star").write_text("data_\nloop_\n_rlnImageName\n1@x.mrcs\n")
    write_config(tmp_path, {**TINY, "data": {"source": "import", "import": {"star": "user.star", "name": "mydata"}}})
    proc = snakemake(tmp_path, "-n")
    assert proc.returncode == 0, proc.stderr
    assert planned_jobs(proc) == {
        "reference": 1,
        "modes": 1,
        "import_particles": 1,
        "preprocess": 1,
        "align": 1,
        "train": 3,
        "infer": 1,
        "reduce": 1,
        "cluster": 1,
        "trajectory": 1,
        "backproject": 3,
        "improve_classical": 3,
        "evaluate": 1,
        "benchmark_tables": 1,
        "all": 1,
    }  # separate networks by default
    assert "preprocess/mydata/particles.star" in proc.stdout + proc.stderr


def test_unknown_config_key_stops_snakemake(tmp_path):
    write_config(tmp_path, {**TINY, "preprocess": {"sise": 32}})
    proc = snakemake(tmp_path, "-n")
    assert proc.returncode != 0
    assert "preprocess.sise" in proc.stderr + proc.stdout


@pytest.mark.workflow
def test_tiny_end_to_end_and_partial_rerun(tmp_path):
    write_config(tmp_path, TINY_WORKFLOW)
    proc = snakemake(tmp_path, "all", "vae", "-c2", "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = tmp_path / "results"
    datasets = sorted(p.name for p in (results / "preprocess").iterdir())
    assert datasets == ["snr0.1_df0.5-1.5", "snr1_df0.5-1.5"]
    for ds in datasets:
        with mrcfile.open(results / "preprocess" / ds / "particles.mrcs") as mrc:
            assert mrc.data.shape == (200, 32, 32)
        assert (results / "logs" / "simulate" / f"{ds}.log").exists()
        assert (results / "benchmarks" / "preprocess" / f"{ds}.tsv").exists()
        amps = pd.read_csv(results / "align" / ds / "amplitudes.csv")
        assert len(amps) == 80 and {"mode7", "cc", "cc_z", "margin", "mahalanobis", "kept", "angle_error"} <= set(
            amps.columns
        )
        pred = pd.read_csv(results / "infer" / ds / "amplitudes.csv")
        assert len(pred) == 120 and pred["mode7"].notna().all()
        assert (results / "train" / ds / "combined" / "learning_curve.png").exists()
        space = pd.read_csv(results / "analysis" / ds / "space.csv")
        assert set(space["source"]) == {"network", "alignment"} and space["particle"].is_unique  # pooled
        groups = pd.read_csv(results / "analysis" / ds / "groups.csv")
        assert sorted(groups["group"].unique()) == [0, 1]
        with mrcfile.open(results / "analysis" / ds / "maps" / "group0.mrc") as mrc:
            assert mrc.data.shape == (48, 48, 48) and mrc.voxel_size.x == pytest.approx(1.8)  # original size
        res = pd.read_csv(results / "analysis" / ds / "resolutions.csv")
        assert res["images"].sum() == len(space) and res["resolution vs truth @0.5 (Å)"].notna().all()
        # The classical improvement (the default analysis.improve.method), scored beside the raw map.
        assert res["sharpened vs centroid conformation @0.5 (Å)"].notna().all() and "sharpening B (Å²)" in res.columns
        with mrcfile.open(results / "analysis" / ds / "maps" / "group0_sharpened.mrc") as mrc:
            assert mrc.data.shape == (48, 48, 48) and mrc.voxel_size.x == pytest.approx(1.8)
        # the VAE's z went through the same analysis: every particle, its own groups and maps
        vae_space = pd.read_csv(results / "vae" / ds / "analysis" / "space.csv")
        assert len(vae_space) == 200 and set(vae_space["source"]) == {"vae"} and {"z1", "z2"} <= set(vae_space.columns)
        vae_res = pd.read_csv(results / "vae" / ds / "analysis" / "resolutions.csv")
        assert vae_res["images"].sum() == 200 and vae_res["resolution vs truth @0.5 (Å)"].notna().all()
        with mrcfile.open(results / "vae" / ds / "volumes" / "pc1_frame2.mrc") as mrc:
            assert mrc.data.shape == (16, 16, 16) and mrc.voxel_size.x == pytest.approx(1.8 * 48 / 16)
    vae_summary = pd.read_csv(results / "vae" / "summary.csv")
    assert (
        set(vae_summary["source"]) == {"network", "alignment", "vae"}
        and vae_summary["spearman_pc1"].between(0, 1).all()
    )
    for name in ("parameters", "groups", "summary"):
        table = pd.read_csv(results / "benchmark" / f"{name}.csv")
        assert set(table["dataset"]) == set(datasets)
        assert (results / "benchmark" / f"{name}.md").read_text().startswith("| ")
    assert pd.read_csv(results / "benchmark" / "path.csv").empty  # helix data: no morph path to score
    params = pd.read_csv(results / "benchmark" / "parameters.csv")
    assert {
        "alignment vs truth",
        "network vs truth",
        "network vs alignment",
        "network + refinement vs truth",
        "constant prediction vs truth",
        "constant prediction vs alignment",
    } <= set(params["comparison"])
    set2 = params[params["images of"] == "set 2"]
    constant = set2[set2["comparison"] == "constant prediction vs truth"].set_index("dataset")
    assert (constant["angle (°) mean"] > 60).all()  # one orientation for every image cannot fit random poses
    refit = set2[set2["comparison"] == "network + refinement vs truth"].set_index("dataset")
    net = set2[set2["comparison"] == "network vs truth"].set_index("dataset")
    # Even on 32-px images the re-fit of the high-SNR branch beats the 2-epoch network by far.
    assert refit.loc["snr1_df0.5-1.5", "angle (°) mean"] < 0.5 * net.loc["snr1_df0.5-1.5", "angle (°) mean"]
    # Even on tiny 32-px images the high-SNR branch is aligned (a loose sanity bound; accuracy is benchmarked).
    amps = pd.read_csv(results / "align" / "snr1_df0.5-1.5" / "amplitudes.csv")
    assert amps["angle_error"].median() < 10.0

    # Nothing changed: nothing to do.
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert "Nothing to be done" in proc.stdout + proc.stderr

    # One SNR value changed: only that grid branch.
    changed = {
        **TINY_WORKFLOW,
        "simulate": {**TINY_WORKFLOW["simulate"], "grid": {"snr": [0.1, 2.0], "defocus": [[0.5, 1.5]]}},
    }
    write_config(tmp_path, changed)
    proc = snakemake(tmp_path, "-n")
    assert planned_jobs(proc) == per_dataset(1, simulate=1, preprocess=1, align=1, train=1, infer=1, refine=1)
    out = proc.stdout + proc.stderr
    assert "simulate/snr2_df0.5-1.5" in out
    assert "dataset=snr0.1_" not in out  # no job of the unchanged branches (the tables only read them)

    # A preprocessing parameter changed: preprocessing and alignment re-run, simulation does not.
    changed = {**TINY_WORKFLOW, "preprocess": {"size": 24}}
    write_config(tmp_path, changed)
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert planned_jobs(proc) == per_dataset(2, preprocess=1, align=1, train=1, infer=1, refine=1)

    # An alignment parameter changed: the alignment and what it feeds re-run. The outlier threshold
    # only filters set 1, so the set-2 re-fit (which shares the other alignment settings) re-runs
    # because its network inputs changed, not for the threshold itself.
    changed = {**TINY_WORKFLOW, "align": {**TINY_WORKFLOW["align"], "outlier_threshold": 2.5}}
    write_config(tmp_path, changed)
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert planned_jobs(proc) == per_dataset(2, align=1, train=1, infer=1, refine=1)

    # A training hyper-parameter changed: training and inference only.
    changed = {**TINY_WORKFLOW, "train": {**TINY_WORKFLOW["train"], "lr": 3e-4}}
    write_config(tmp_path, changed)
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert planned_jobs(proc) == per_dataset(2, train=1, infer=1, refine=1)

    # The set-2 re-fit changed: the re-fit and the analysis, not the network.
    changed = {**TINY_WORKFLOW, "refine": {"mode": "rigid", "candidates": 2}}
    write_config(tmp_path, changed)
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert planned_jobs(proc) == per_dataset(2, refine=1)

    # No re-fit: the analysis reads the network's predictions directly.
    changed = {**TINY_WORKFLOW, "refine": {"mode": "none"}}
    write_config(tmp_path, changed)
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert planned_jobs(proc) == per_dataset(2)

    # A reconstruction parameter changed: only the maps, their improvement, their evaluation and the tables.
    changed = {**TINY_WORKFLOW, "analysis": {**TINY_WORKFLOW["analysis"], "backproject": {"pad": 1}}}
    write_config(tmp_path, changed)
    proc = snakemake(tmp_path, "-n", "--quiet", "rules")
    assert planned_jobs(proc) == {
        "backproject": 4,
        "improve_classical": 4,
        "evaluate": 2,
        "benchmark_tables": 1,
        "all": 1,
    }


@pytest.mark.parametrize(
    "path", sorted((REPO / "configs").glob("*.yaml")) + [REPO / "config.yaml"], ids=lambda p: p.name
)
def test_shipped_configs_validate(path):
    from cryopipe.config import load_config

    cfg = load_config(path)
    assert cfg["conformations"]["modes"]


def test_conda_envs_are_one_environment_with_every_requirement():
    """envs/cpu.yaml and envs/gpu.yaml differ only in the torch build, and each holds every requirement of
    pyproject.toml (a requirement missing there would be fetched from PyPI, unpinned, on the cluster)."""
    import tomllib

    envs = {k: yaml.safe_load((REPO / "envs" / f"{k}.yaml").read_text()) for k in ("cpu", "gpu")}
    deps = {k: [d for d in e["dependencies"] if isinstance(d, str)] for k, e in envs.items()}
    pips = {k: next(d["pip"] for d in e["dependencies"] if isinstance(d, dict)) for k, e in envs.items()}
    assert pips["cpu"] == pips["gpu"]
    assert [d for d in deps["cpu"] if not d.startswith("pytorch-cpu")] == [
        d for d in deps["gpu"] if not d.startswith("pytorch-gpu")
    ]
    assert sorted(set(deps["cpu"]) ^ set(deps["gpu"])) == ["pytorch-cpu=2.7", "pytorch-gpu=2.7"]
    conda_name = {"torch": "pytorch-cpu", "matplotlib": "matplotlib-base"}
    listed = {re.split(r"[=<>\[ ]", d)[0] for d in deps["cpu"] + pips["cpu"]}
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    for req in project:
        name = re.split(r"[=<>\[ ]", req)[0]
        assert conda_name.get(name, name) in listed, f"envs/cpu.yaml lacks {name}"
