"""A user's malformed particle set (STAR + MRCS) is refused by `import` and `preprocess` before any work:
one line naming the file and the column/row (or the stack and its sizes), non-zero exit, nothing left
behind (cryopipe/io/checks.py). Also the resource estimate of `validate-config`."""

import json
from pathlib import Path

import mrcfile
import numpy as np
import pytest
import starfile
import yaml
from test_errors import assert_one_line_error, copy_dataset

from helpers import TINY, run_cli, run_preprocess

REPO = Path(__file__).resolve().parents[1]


def import_params(star, **kw) -> str:
    return json.dumps({"star": str(star), "name": "imported", "pixel_size": None, "allow_subset": False, **kw})


def run_import(star, out, check=False, **kw):
    return run_cli("import", "--params", import_params(star, **kw), "--out-star", out / "particles.star", check=check)


def run_command(command, star, out):
    if command == "import":
        return run_import(star, out)
    return run_preprocess(star, out, check=False)


def assert_nothing_left(out: Path):
    assert not out.exists() or not any(out.iterdir()), list(out.iterdir())


def write_stack(path: Path, data: np.ndarray, voxel_size: float = 2.0) -> None:
    with mrcfile.new(path, overwrite=True) as mrc:
        mrc.set_data(np.ascontiguousarray(data, dtype=np.float32))
        mrc.set_image_stack()
        mrc.voxel_size = voxel_size


def stack_data(tmp_path: Path) -> np.ndarray:
    with mrcfile.open(tmp_path / "particles.mrcs") as mrc:
        return np.array(mrc.data)


# --- one corruption per class of bad input: (name, edit(blocks, tmp_path), words the error must contain) ---


def set_value(table, col, row, value):
    """Put `value` (any type: the STAR holds text) into `col` at 1-based data row `row`."""

    def edit(blocks, tmp_path):
        t = blocks[table]
        t[col] = t[col].astype(object)
        t.loc[row - 1, col] = value

    return edit


def drop_rows(blocks, tmp_path):
    blocks["particles"] = blocks["particles"].iloc[:0]


def duplicate_row(blocks, tmp_path):
    p = blocks["particles"]
    p.loc[6, "rlnImageName"] = p.loc[1, "rlnImageName"]


def non_square(blocks, tmp_path):
    write_stack(tmp_path / "particles.mrcs", stack_data(tmp_path)[:, :, :36])  # (n, y 40, x 36)


def odd_box(blocks, tmp_path):
    write_stack(tmp_path / "particles.mrcs", stack_data(tmp_path)[:, :39, :39])
    blocks["optics"]["rlnImageSize"] = 39


def box_differs(blocks, tmp_path):
    write_stack(tmp_path / "particles.mrcs", stack_data(tmp_path)[:, :38, :38])


def truncate(blocks, tmp_path):
    path = tmp_path / "particles.mrcs"
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 1000])


def lengthen(blocks, tmp_path):
    path = tmp_path / "particles.mrcs"
    path.write_bytes(path.read_bytes() + b"\0" * 512)


def scale_defocus(factor):
    def edit(blocks, tmp_path):
        for c in ("rlnDefocusU", "rlnDefocusV"):
            blocks["particles"][c] = blocks["particles"][c] * factor

    return edit


def not_mrc(blocks, tmp_path):
    (tmp_path / "particles.mrcs").write_text("not an MRC file\n")


def missing_stack(blocks, tmp_path):
    (tmp_path / "particles.mrcs").unlink()


CASES = {
    "not a number": (set_value("particles", "rlnDefocusU", 3, "abc"), ["rlnDefocusU", "particle row 3", "'abc'"]),
    "not a number (angle)": (set_value("particles", "rlnAnglePsi", 2, "12,5"), ["rlnAnglePsi", "row 2", "'12,5'"]),
    "not a number (optics)": (set_value("optics", "rlnVoltage", 1, "300kV"), ["rlnVoltage", "optics row 1", "300kV"]),
    "NaN in a column": (set_value("particles", "rlnAngleTilt", 5, "nan"), ["rlnAngleTilt", "particle row 5", "NaN"]),
    "Inf in a column": (set_value("particles", "rlnOriginXAngst", 6, "inf"), ["rlnOriginXAngst", "row 6", "finite"]),
    "empty particle table": (drop_rows, ["no rows"]),
    "image name without @": (set_value("particles", "rlnImageName", 2, "particles.mrcs"), ["rlnImageName", "row 2"]),
    "image index not an integer": (
        set_value("particles", "rlnImageName", 4, "x1@particles.mrcs"),
        ["rlnImageName", "particle row 4", "x1@particles.mrcs"],
    ),
    "image index 0": (set_value("particles", "rlnImageName", 1, "0@particles.mrcs"), ["rlnImageName", "row 1", "≥ 1"]),
    "duplicate image": (duplicate_row, ["rlnImageName", "rows 2 and 7", "duplicate"]),
    "stack not found": (missing_stack, ["particles.mrcs", "not found"]),
    "stack not an MRC file": (not_mrc, ["particles.mrcs", "not a readable MRC"]),
    "non-square images": (non_square, ["particles.mrcs", "36 × 40", "square"]),
    "odd box": (odd_box, ["particles.mrcs", "odd box of 39 px", "--new_box"]),
    "box differs from rlnImageSize": (box_differs, ["particles.mrcs", "38 px", "rlnImageSize 40"]),
    "truncated stack": (truncate, ["particles.mrcs", "truncated", "bytes"]),
    "stack longer than its header": (lengthen, ["particles.mrcs", "longer than its header", "bytes"]),
    "negative defocus": (
        set_value("particles", "rlnDefocusU", 4, -12000.0),
        ["rlnDefocusU", "particle row 4", "negative"],
    ),
    "defocus in µm": (scale_defocus(1e-4), ["rlnDefocusU", "below 100 Å", "µm"]),
    "absurd defocus": (set_value("particles", "rlnDefocusV", 8, 5e6), ["rlnDefocusV", "particle row 8", "10 µm"]),
    "amplitude contrast > 1": (
        set_value("optics", "rlnAmplitudeContrast", 1, 10.0),
        ["rlnAmplitudeContrast", "optics row 1", "[0, 1]"],
    ),
    "voltage 0": (set_value("optics", "rlnVoltage", 1, 0.0), ["rlnVoltage", "optics row 1", "positive"]),
    "pixel size negative": (set_value("optics", "rlnImagePixelSize", 1, -2.0), ["rlnImagePixelSize", "positive"]),
    "half set not 1 or 2": (set_value("particles", "rlnRandomSubset", 9, 3), ["rlnRandomSubset", "particle row 9"]),
    "unknown optics group": (set_value("particles", "rlnOpticsGroup", 10, 2), ["rlnOpticsGroup", "particle row 10"]),
    "origin outside the image": (
        set_value("particles", "rlnOriginYAngst", 11, 500.0),
        ["rlnOriginYAngst", "particle row 11", "outside"],
    ),
}


@pytest.mark.parametrize("command", ["import", "preprocess"])
@pytest.mark.parametrize("case", list(CASES))
def test_bad_particle_set_refused(tiny_dataset, tmp_path, case, command):
    edit, needles = CASES[case]
    blocks = copy_dataset(tiny_dataset, tmp_path)
    if "rlnRandomSubset" in needles:
        blocks["particles"]["rlnRandomSubset"] = np.arange(len(blocks["particles"])) % 2 + 1
    edit(blocks, tmp_path)
    starfile.write(blocks, tmp_path / "bad.star")
    out = tmp_path / "out"
    proc = run_command(command, tmp_path / "bad.star", out)
    assert proc.returncode == 2, proc.stderr
    file_named = "particles.mrcs" if any("particles.mrcs" in n for n in needles) else "bad.star"
    assert_one_line_error(proc, file_named, *needles)
    assert "Traceback" not in proc.stderr
    assert_nothing_left(out)


def test_relion30_non_numeric(tiny_dataset, tmp_path):
    """A RELION 3.0 file (optics in the particle rows) with text in a number column: named before conversion."""
    blocks = copy_dataset(tiny_dataset, tmp_path)
    p = blocks["particles"].copy()
    for col in ("rlnVoltage", "rlnSphericalAberration", "rlnAmplitudeContrast", "rlnImagePixelSize"):
        p[col] = blocks["optics"][col].iloc[0]
    p["rlnVoltage"] = p["rlnVoltage"].astype(object)
    p.loc[4, "rlnVoltage"] = "n/a"
    starfile.write(p, tmp_path / "bad.star")
    out = tmp_path / "out"
    proc = run_import(tmp_path / "bad.star", out)
    assert_one_line_error(proc, "bad.star", "rlnVoltage", "particle row 5", "n/a")
    assert_nothing_left(out)


@pytest.mark.filterwarnings("ignore:Data array contains NaN")
def test_nan_pixels_refused(tiny_dataset, tmp_path):
    """NaN images pass import (it reads headers only) and are refused by preprocess, naming the row."""
    blocks = copy_dataset(tiny_dataset, tmp_path)
    data = stack_data(tmp_path)
    data[4, 10, 10] = np.nan
    write_stack(tmp_path / "particles.mrcs", data)
    starfile.write(blocks, tmp_path / "bad.star")
    out = tmp_path / "out"
    proc = run_preprocess(tmp_path / "bad.star", out, check=False)
    # Found while streaming, after the progress bar started: the error is the one line that is not the bar.
    lines = [line for line in proc.stderr.splitlines() if line.strip() and "it/s]" not in line]
    assert proc.returncode == 2 and len(lines) == 1, proc.stderr
    for needle in ("bad.star", "particle row 5", "000005@particles.mrcs", "NaN"):
        assert needle in lines[0], lines[0]
    assert_nothing_left(out)


@pytest.mark.parametrize("header, warned", [(2.2, True), (2.01, False), (1.0, False), (0.0, False)])
def test_pixel_size_star_wins(tiny_dataset, tmp_path, header, warned):
    """STAR 2.0 Å/px against a header of `header`: > 1% apart warns on one stderr line naming both values and
    files; a header of 0 or 1 Å is 'unset'. Either way the STAR's value is used."""
    blocks = copy_dataset(tiny_dataset, tmp_path)
    write_stack(tmp_path / "particles.mrcs", stack_data(tmp_path), voxel_size=header)
    starfile.write(blocks, tmp_path / "in.star")
    out = tmp_path / "imp"
    proc = run_import(tmp_path / "in.star", out, check=True)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    if warned:
        assert len(lines) == 1, proc.stderr
        for needle in ("warning", "in.star", "particles.mrcs", "2 Å/px", f"{header:g} Å/px", "STAR"):
            assert needle in lines[0], lines[0]
    else:
        assert not lines, proc.stderr
    particles = starfile.read(out / "particles.star", always_dict=True)
    assert float(particles["optics"]["rlnImagePixelSize"].iloc[0]) == 2.0
    pre = tmp_path / "pre"
    run_preprocess(out / "particles.star", pre)
    with mrcfile.open(pre / "particles.mrcs", header_only=True) as mrc:
        assert float(mrc.voxel_size.x) == pytest.approx(2.0 * 40 / TINY["preprocess"]["size"])


def test_import_accepts_the_tiny_dataset(tiny_dataset, tmp_path):
    """The checks pass a good set; the imported STAR has numbers and paths that work from elsewhere."""
    blocks = copy_dataset(tiny_dataset, tmp_path)
    starfile.write(blocks, tmp_path / "in.star")
    proc = run_import(tmp_path / "in.star", tmp_path / "imp", check=True)
    assert not proc.stderr.strip()
    p = starfile.read(tmp_path / "imp" / "particles.star", always_dict=True)["particles"]
    assert len(p) == 24 and p["rlnImageName"].iloc[0] == f"000001@{tmp_path / 'particles.mrcs'}"


def write_config(tmp_path, cfg):
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_resources_refuse_a_huge_config(tmp_path):
    cfg = {"results": str(tmp_path / "results"), "simulate": {"box": 1024}, "conformations": {"n_particles": 10**7}}
    proc = run_cli("validate-config", write_config(tmp_path, cfg), check=False)
    assert_one_line_error(proc, "config.yaml", "simulate.box", "conformations.n_particles", "TB", "disk")
    assert not proc.stdout.strip()


def test_resources_accept_the_default_config():
    proc = run_cli("validate-config", REPO / "config.yaml")
    doc = yaml.safe_load(proc.stdout)
    assert doc["simulate"]["box"] == 128
    last = proc.stdout.strip().splitlines()[-1]
    assert last.startswith("# estimate: disk ") and "peak memory" in last


def test_estimate_resources_figures():
    from cryopipe.config import default_config
    from cryopipe.config.resources import estimate_resources

    cfg = default_config()
    est = estimate_resources(cfg)
    grid = cfg["simulate"]["grid"]
    branches = len(grid["snr"]) * len(grid["defocus"])
    n, box = cfg["conformations"]["n_particles"], cfg["simulate"]["box"]
    assert est["disk"]["simulate"] >= box * box * 4 * n * branches
    assert est["memory"]["backproject"] == (cfg["analysis"]["backproject"]["pad"] * box) ** 3 * 28 + 1e9
    assert est["disk_bytes"] == sum(est["disk"].values())


def test_estimate_for_imported_star(tiny_dataset, tmp_path):
    from cryopipe.config import validate_config
    from cryopipe.config.resources import estimate_resources

    blocks = copy_dataset(tiny_dataset, tmp_path)
    starfile.write(blocks, tmp_path / "in.star")
    cfg = validate_config({**TINY, "data": {"source": "import", "import": {"star": str(tmp_path / "in.star")}}})
    est = estimate_resources(cfg)
    assert est["disk"]["preprocess"] >= 24 * TINY["preprocess"]["size"] ** 2 * 4
    assert est["memory"]["backproject"] == (2 * 40) ** 3 * 28 + 1e9


def test_resources_refuse_more_memory_than_the_machine(tmp_path, monkeypatch):
    import cryopipe.config.resources as resources

    monkeypatch.setattr(resources, "total_memory", lambda: 10 * 10**9)  # a 10 GB machine
    cfg = {**TINY, "results": str(tmp_path / "r"), "simulate": {**TINY["simulate"], "box": 512}}  # 31 GB
    proc = run_cli("validate-config", write_config(tmp_path, cfg), check=False)
    assert_one_line_error(proc, "config.yaml", "memory", "backproject", "simulate.box", "analysis.backproject.pad")
