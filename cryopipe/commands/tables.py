"""Tables: the benchmark tables of a finished run (DeepHEMNMA Tables 1–4 and Fig. 7 analogues), CSV + Markdown.

Reads the workflow's results folder for every dataset: parameter errors (alignment vs truth,
network vs truth, network vs alignment on the small test subset of set 1 and on set 2), per-group
image counts and resolutions, and a summary across the SNR × defocus grid with a figure. For data on
a morph path between two structures, errors per tenth of the path (`cryopipe.analysis.path`).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from cryopipe.commands import add_params_arg, resolve_params

if TYPE_CHECKING:
    import pandas as pd

OUTPUTS = ["out_parameters", "out_groups", "out_summary", "out_path", "out_plot"]


def params_from_config(cfg: dict) -> dict:
    from cryopipe.commands.simulate import dataset_name

    if cfg["data"]["source"] == "import":
        grid = {cfg["data"]["import"]["name"]: {"snr": None, "defocus": None}}
    else:
        g = cfg["simulate"]["grid"]
        grid = {dataset_name(s, d): {"snr": s, "defocus": d} for s in g["snr"] for d in g["defocus"]}
    return {"datasets": grid, "results": cfg["results"], "refined": cfg["refine"]["mode"] != "none"}


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--out-parameters", required=True, help="output parameter errors (.csv; .md written beside it)")
    p.add_argument("--out-groups", required=True, help="output per-group counts and resolutions (.csv; .md beside)")
    p.add_argument("--out-summary", required=True, help="output summary across the grid (.csv; .md beside)")
    p.add_argument(
        "--out-path",
        required=True,
        help="errors per tenth of a morph path (.csv; .md beside; no rows otherwise)",
    )
    p.add_argument("--out-plot", required=True, help="output summary figure (.png)")


def constant_estimates(align, names: list[str], index):
    """The alignment's set-1 estimates reduced to one value per parameter (medians; the orientation
    medoid), given to every image of `index`: the errors of a network that learnt nothing from the
    images, i.e. the level the network's own rows must beat to mean anything."""
    import numpy as np
    import pandas as pd
    import torch

    from cryopipe.geometry import quaternion_to_euler
    from cryopipe.io.star import EULER, ORIGIN
    from cryopipe.nn.targets import constant_prediction, targets_from_tables

    c = constant_prediction({k: torch.as_tensor(v) for k, v in targets_from_tables(align, align, names).items()})
    row = dict(zip(EULER, quaternion_to_euler(c["orientation"][None]).numpy()[0]))
    row |= dict(zip(ORIGIN, c["shifts"].numpy())) | dict(zip(names, c["amplitudes"].numpy()))
    return pd.DataFrame({k: np.full(len(index), v) for k, v in row.items()}, index=index)


def indexed(star, amps, kept_only: bool = False) -> tuple[pd.DataFrame, list[str], float]:
    """(a stage's STAR particles indexed by particle and joined with its amplitude columns, those columns,
    the pixel size); kept_only: the images the outlier filter kept."""
    import pandas as pd

    from cryopipe.io.star import read_star, split_image_name
    from cryopipe.structure.conformations import mode_columns

    particles, optics = read_star(star)
    particles.index = [split_image_name(n)[0] for n in particles["rlnImageName"]]
    a = pd.read_csv(amps).set_index("particle")
    if kept_only and "kept" in a.columns:
        a = a[a["kept"].astype(bool)]
    names = mode_columns(a.columns)
    return particles.join(a[names], how="inner"), names, float(optics["rlnImagePixelSize"].iloc[0])


def dataset_errors(root, ds: str, refined: bool = False) -> tuple[list[dict], dict]:
    """Rows of parameter-error summaries for one dataset, and {name: per-image errors} for ratios.
    `refined`: also the set-2 poses re-fitted after the network (refine/<dataset>/)."""
    from pathlib import Path

    import pandas as pd

    from cryopipe.analysis.errors import errors, parameters, summarise
    from cryopipe.io.structure import Atoms
    from cryopipe.structure.modes import Modes

    R = Path(root)

    align, names, apix = indexed(
        R / "align" / ds / "particles.star", R / "align" / ds / "amplitudes.csv", kept_only=True
    )
    net2, _, _ = indexed(R / "infer" / ds / "particles.star", R / "infer" / ds / "amplitudes.csv")
    test, _, _ = indexed(R / "infer" / ds / "test.star", R / "infer" / ds / "test_amplitudes.csv")
    test = test.loc[test.index.intersection(align.index)]
    truth_path = R / "simulate" / ds / "truth.csv"
    truth = pd.read_csv(truth_path).set_index("particle") if truth_path.exists() else None
    atoms = Atoms.load(R / "reference" / "atoms.npz")
    modes = Modes.load(R / "modes" / "modes.npz").select([int(n[4:]) for n in names])

    const = constant_estimates(align, names, net2.index.union(test.index))

    def compare(a, b, idx):
        return errors(parameters(a, names, idx), parameters(b, names, idx), names, atoms.coords, modes, apix)

    runs = {}
    if truth is not None:
        runs[("alignment vs truth", "set 1 (kept)")] = compare(align, truth, align.index)
        runs[("alignment vs truth", "small test")] = compare(align, truth, test.index)
        runs[("network vs truth", "small test")] = compare(test, truth, test.index)
    runs[("network vs alignment", "small test")] = compare(test, align, test.index)
    runs[("constant prediction vs alignment", "small test")] = compare(const, align, test.index)
    if truth is not None:
        runs[("network vs truth", "set 2")] = compare(net2, truth, net2.index)
        runs[("constant prediction vs truth", "set 2")] = compare(const, truth, net2.index)
    if refined:
        ref2, _, _ = indexed(R / "refine" / ds / "particles.star", R / "refine" / ds / "amplitudes.csv")
        if truth is not None:
            runs[("network + refinement vs truth", "set 2")] = compare(ref2, truth, ref2.index)
        runs[("network + refinement vs network", "set 2")] = compare(ref2, net2, ref2.index)
    rows = [{"dataset": ds, "comparison": c, "images of": s, **summarise(e)} for (c, s), e in runs.items()]
    return rows, runs


def path_scores(root, ds: str, refined: bool) -> tuple[list[pd.DataFrame], dict]:
    """Per-tenth tables and summary figures of a morph dataset ([], {} for other data): the alignment of set
    1 (every image, before the outlier filter) and set 2 as the analysis uses it (refined or the network's)."""
    from pathlib import Path

    import numpy as np
    import pandas as pd
    from scipy.stats import spearmanr

    from cryopipe.analysis.errors import angle_errors, rotation_matrices
    from cryopipe.analysis.path import along_path, end_separation, path_direction, tenths_table
    from cryopipe.structure.conformations import MORPH_COLUMN

    R = Path(root)
    truth_path = R / "simulate" / ds / "truth.csv"
    truth = pd.read_csv(truth_path).set_index("particle") if truth_path.exists() else None
    if truth is None or MORPH_COLUMN not in truth.columns:
        return [], {}
    tables, summary = [], {}
    stage2 = "refine" if refined else "infer"
    for label, stage in (("alignment, set 1", "align"), (f"{stage2}, set 2", stage2)):
        est, names, _ = indexed(R / stage / ds / "particles.star", R / stage / ds / "amplitudes.csv")
        t = truth.loc[est.index, MORPH_COLUMN].to_numpy()
        ang = angle_errors(rotation_matrices(est), truth.loc[est.index])
        c = path_direction(truth, names, MORPH_COLUMN)
        along = None if c is None else along_path(est[names].to_numpy(np.float64), c)
        table = tenths_table(t, ang, along)
        table.insert(0, "estimates", label)
        table.insert(0, "dataset", ds)
        tables.append(table)
        key = "alignment" if stage == "align" else "set 2"
        summary[f"path, {key}: worst tenth median angle (°)"] = float(table["median angle error (°)"].max())
        summary[f"path, {key}: worst tenth > 10° (%)"] = float(table["images > 10° off (%)"].max())
        if along is not None:
            summary[f"path, {key}: Spearman(fitted, true t)"] = float(spearmanr(along, t)[0])
    space_path = R / "analysis" / ds / "space.csv"
    if space_path.exists():
        space = pd.read_csv(space_path)
        summary["path: PC1 separates the ends (%)"] = 100 * end_separation(
            space["pc1"].to_numpy(), truth.loc[space["particle"], MORPH_COLUMN].to_numpy()
        )
    return tables, summary


def main(args: argparse.Namespace) -> None:
    from pathlib import Path

    import numpy as np
    import pandas as pd

    from cryopipe.analysis.errors import to_markdown
    from cryopipe.errors import CryopipeError
    from cryopipe.io.atomic import atomic_path
    from cryopipe.plots import save_benchmark_summary

    params = resolve_params(args, params_from_config)
    root = Path(params["results"])
    param_rows, group_tables, summary, path_tables = [], [], [], []
    for ds, grid in params["datasets"].items():
        res_path = root / "analysis" / ds / "resolutions.csv"
        if not res_path.exists():
            raise CryopipeError(f"{res_path}: not found; run the workflow up to `evaluate` first")
        rows, runs = dataset_errors(root, ds, params["refined"])
        param_rows += rows
        groups = pd.read_csv(res_path)
        groups.insert(0, "dataset", ds)
        group_tables.append(groups)
        s = {
            "dataset": ds,
            "SNR": grid["snr"],
            "defocus (µm)": "–".join(map(str, grid["defocus"])) if grid["defocus"] else "",
        }
        for (comp, subset), key in (
            (("alignment vs truth", "set 1 (kept)"), "alignment"),
            (("network vs truth", "set 2"), "network"),
            (("constant prediction vs truth", "set 2"), "constant prediction"),
            (("network vs alignment", "small test"), "network vs alignment"),
            (("network + refinement vs truth", "set 2"), "refined"),
        ):
            if (comp, subset) in runs:
                e = runs[(comp, subset)]
                s[f"{key}: angle (°)"] = float(np.mean(e["angle (°)"]))
                s[f"{key}: shift (px)"] = float(np.mean(e["shift (px)"]))
                s[f"{key}: amplitudes RMSD (Å)"] = float(np.mean(e["RMSD amplitudes (Å)"]))
        if "network: angle (°)" in s and "alignment: angle (°)" in s:
            for m in ("angle (°)", "shift (px)", "amplitudes RMSD (Å)"):
                s[f"ratio network/alignment: {m}"] = s[f"network: {m}"] / max(s[f"alignment: {m}"], 1e-9)
        if "refined: angle (°)" in s and "alignment: angle (°)" in s:
            for m in ("angle (°)", "shift (px)", "amplitudes RMSD (Å)"):
                s[f"ratio refined/alignment: {m}"] = s[f"refined: {m}"] / max(s[f"alignment: {m}"], 1e-9)
        tenths, path_summary = path_scores(root, ds, params["refined"])
        path_tables += tenths
        s.update(path_summary)
        s["groups"] = len(groups)
        s["best half-map resolution (Å)"] = float(groups["resolution half-maps @0.143 (Å)"].min())
        if "resolution vs truth @0.5 (Å)" in groups.columns:
            s["best resolution vs truth @0.5 (Å)"] = float(groups["resolution vs truth @0.5 (Å)"].min())
        summary.append(s)
    tables = {
        args.out_parameters: pd.DataFrame(param_rows),
        args.out_groups: pd.concat(group_tables, ignore_index=True),
        args.out_summary: pd.DataFrame(summary),
        args.out_path: pd.concat(path_tables, ignore_index=True) if path_tables else pd.DataFrame(columns=["dataset"]),
    }
    for path, df in tables.items():
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False, float_format="%.4f")
        with atomic_path(Path(path).with_suffix(".md")) as tmp:
            tmp.write_text(to_markdown(df))
    save_benchmark_summary(args.out_plot, tables[args.out_summary])
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(tables[args.out_summary].to_string(index=False))
