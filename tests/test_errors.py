"""Bad input: one line on stderr naming the file/column/key, non-zero exit, no output left behind."""

import json
import shutil

import pandas as pd
import pytest
import starfile

from helpers import TINY, run_cli, run_cli_subprocess, run_preprocess, run_simulate, stage_json


def assert_one_line_error(proc, *needles):
    assert proc.returncode != 0
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert len(lines) == 1, proc.stderr
    for n in needles:
        assert n in lines[0], lines[0]


def reference_params(pdb):
    return json.dumps({**json.loads(stage_json("reference")), "pdb": str(pdb)})


@pytest.mark.parametrize("content", [None, "REMARK   1 nothing here\nEND\n"])
def test_missing_or_empty_pdb(tmp_path, content):
    pdb = tmp_path / "input.pdb"
    if content is not None:
        pdb.write_text(content)
    out = tmp_path / "out"
    proc = run_cli(
        "reference",
        "--params",
        reference_params(pdb),
        "--out-atoms",
        out / "a.npz",
        "--out-pdb",
        out / "r.pdb",
        "--out-map",
        out / "m.mrc",
        check=False,
    )
    assert_one_line_error(proc, str(pdb), "not found" if content is None else "no atoms")
    assert not out.exists() or not any(out.iterdir())


def preprocess(star, out):
    return run_preprocess(star, out, check=False)


def copy_dataset(tiny_dataset, tmp_path):
    shutil.copy(tiny_dataset / "sim" / "particles.mrcs", tmp_path / "particles.mrcs")
    blocks = starfile.read(tiny_dataset / "sim" / "particles.star", always_dict=True)
    blocks["particles"]["rlnImageName"] = [
        n.split("@")[0] + "@particles.mrcs" for n in blocks["particles"]["rlnImageName"]
    ]
    return blocks


def test_star_without_image_name(tiny_dataset, tmp_path):
    blocks = copy_dataset(tiny_dataset, tmp_path)
    blocks["particles"] = blocks["particles"].drop(columns=["rlnImageName"])
    starfile.write(blocks, tmp_path / "bad.star")
    proc = preprocess(tmp_path / "bad.star", tmp_path / "out")
    assert_one_line_error(proc, "bad.star", "rlnImageName")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("rows", [30, 20])
def test_stack_count_differs_from_star(tiny_dataset, tmp_path, rows):
    blocks = copy_dataset(tiny_dataset, tmp_path)
    p = blocks["particles"]
    if rows > len(p):  # the STAR lists images the stack does not hold
        extra = p.iloc[: rows - len(p)].copy()
        extra["rlnImageName"] = [f"{i + 1:06d}@particles.mrcs" for i in range(len(p), rows)]
        blocks["particles"] = pd.concat([p, extra], ignore_index=True)
    else:  # the STAR lists fewer images than the stack holds
        blocks["particles"] = p.iloc[:rows]
    starfile.write(blocks, tmp_path / "bad.star")
    proc = preprocess(tmp_path / "bad.star", tmp_path / "out")
    assert_one_line_error(proc, "bad.star", "particles.mrcs")
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_non_positive_snr(tiny_dataset, tmp_path):
    proc = run_cli(
        "validate-config", write_config(tmp_path, {**TINY, "simulate": {"grid": {"snr": [0.1, 0.0]}}}), check=False
    )
    assert_one_line_error(proc, "simulate.grid.snr[1]")
    out = tmp_path / "sim"
    proc = run_simulate(tiny_dataset, out, "snr0_df1-2", check=False)
    assert_one_line_error(proc, "SNR")
    assert not out.exists() or not any(out.iterdir())


def write_config(tmp_path, cfg):
    import yaml

    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_unknown_config_key(tmp_path):
    proc = run_cli("validate-config", write_config(tmp_path, {**TINY, "simulate": {"boxsize": 64}}), check=False)
    assert_one_line_error(proc, "config.yaml", "simulate.boxsize")


def test_entry_point_exits_2_with_one_line(tmp_path):
    """The real `python -m cryopipe` (what Snakemake's shell calls): exit status 2 and one line, as in-process."""
    proc = run_cli_subprocess(
        "validate-config", write_config(tmp_path, {**TINY, "simulate": {"boxsize": 64}}), check=False
    )
    assert proc.returncode == 2
    assert_one_line_error(proc, "config.yaml", "simulate.boxsize")
