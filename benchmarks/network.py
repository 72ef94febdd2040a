"""DeepHEMNMA Tables 1–4 analogue from a finished run: network vs ground truth and vs alignment.

For the small test set (the `test` subset of image set 1, never trained on) and for image set 2,
prints mean ± std of the errors of amplitudes (|Δa| per mode, Å RMSD), angles (angle of
R_pred·R_trueᵀ) and shifts (|Δ| px), the same errors as RMSD in Å of the atoms displaced with
predicted vs true parameters (one parameter type at a time), and the ratio of the network's
set-2 errors to the alignment's own errors on set 1.

    python benchmarks/network.py --results results --dataset snr0.1_df0.5-2
"""

from __future__ import annotations

import argparse
from pathlib import Path


def errors(pred: dict, ref: dict, coords, modes, pixel_size: float) -> dict:
    import numpy as np
    import torch

    from cryopipe.geometry import angular_distance, euler_to_matrix

    da = pred["amplitudes"] - ref["amplitudes"]
    Rp = euler_to_matrix(torch.tensor(pred["euler"]))
    Rt = euler_to_matrix(torch.tensor(ref["euler"]))
    ang = angular_distance(Rp, Rt).numpy()
    ds = np.linalg.norm(pred["shifts"] - ref["shifts"], axis=1)
    disp = np.einsum("nk,kad->nad", da, modes)
    rmsd_amp = np.sqrt((disp**2).sum(2).mean(1))
    x = torch.tensor(coords)
    rmsd_ang = torch.sqrt(((x @ Rp.transpose(1, 2) - x @ Rt.transpose(1, 2)) ** 2).sum(2).mean(1)).numpy()
    out = {f"|Δ{c}| (Å RMSD)": np.abs(da[:, k]) for k, c in enumerate(ref["names"])}
    out.update({"angle (°)": ang, "shift (px)": ds / pixel_size, "RMSD amplitudes (Å)": rmsd_amp,
                "RMSD angles (Å)": rmsd_ang, "RMSD shifts (Å)": ds})
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results")
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--device", default="cpu")
    args = ap.parse_args()

    import numpy as np
    import pandas as pd

    from cryopipe.io.star import read_star, split_image_name
    from cryopipe.io.structure import Atoms
    from cryopipe.nn.data import ParticleDataset
    from cryopipe.nn.infer import load_model, predict
    from cryopipe.structure.modes import Modes

    R = Path(args.results)
    ds = args.dataset
    truth = pd.read_csv(R / "simulate" / ds / "truth.csv").set_index("particle")
    split = pd.read_csv(R / "preprocess" / ds / "split.csv").set_index("particle")
    align = pd.read_csv(R / "align" / ds / "amplitudes.csv").set_index("particle")
    aligned, optics = read_star(R / "align" / ds / "particles.star")
    aligned.index = [split_image_name(n)[0] for n in aligned["rlnImageName"]]
    models = sorted((R / "train" / ds).glob("*/model.pt"))
    names = load_model(models[0])[2]["modes"]
    px = float(optics["rlnImagePixelSize"].iloc[0])
    atoms = Atoms.load(R / "reference" / "atoms.npz")
    modes = Modes.load(R / "modes" / "modes.npz").select([int(n[4:]) for n in names])

    def params(table, amps, idx):
        return {"amplitudes": amps.loc[idx, names].to_numpy(), "names": names,
                "euler": table.loc[idx, ["rlnAngleRot", "rlnAngleTilt", "rlnAnglePsi"]].to_numpy(),
                "shifts": table.loc[idx, ["rlnOriginXAngst", "rlnOriginYAngst"]].to_numpy()}

    # Small test set: predict it now with the trained networks.
    test_idx = split.index[(split["subset"] == "test")].intersection(align.index[align["kept"].astype(bool)])
    test_rows = aligned.loc[test_idx]
    pred, _ = predict(models, ParticleDataset(test_rows.reset_index(drop=True), R / "align" / ds / "particles.star"),
                      device=args.device, progress=False)
    test_pred = {"amplitudes": pred["amplitudes"], "euler": pred["euler"], "shifts": pred["shifts"], "names": names}
    # Image set 2: the pipeline's inference output.
    inf_star, _ = read_star(R / "infer" / ds / "particles.star")
    inf_star.index = [split_image_name(n)[0] for n in inf_star["rlnImageName"]]
    inf_amp = pd.read_csv(R / "infer" / ds / "amplitudes.csv").set_index("particle")
    set2 = inf_star.index
    set1 = align.index

    rows = {
        "small test: network vs truth": errors(test_pred, params(truth, truth, test_idx), atoms.coords, modes, px),
        "small test: network vs alignment": errors(test_pred, params(aligned, align, test_idx), atoms.coords, modes, px),
        "small test: alignment vs truth": errors(params(aligned, align, test_idx), params(truth, truth, test_idx), atoms.coords, modes, px),
        "set 2: network vs truth": errors(params(inf_star, inf_amp, set2), params(truth, truth, set2), atoms.coords, modes, px),
        "set 1: alignment vs truth": errors(params(aligned, align, set1), params(truth, truth, set1), atoms.coords, modes, px),
    }
    cols = list(next(iter(rows.values())).keys())
    print(f"dataset {ds}: small test {len(test_idx)} images, set 2 {len(set2)} images, set 1 {len(set1)} images; "
          f"models: {', '.join(m.parent.name for m in models)}")
    table = pd.DataFrame({name: {c: f"{np.mean(v[c]):.2f} ± {np.std(v[c]):.2f}" for c in cols} for name, v in rows.items()}).T
    with pd.option_context("display.width", 250, "display.max_columns", 20):
        print(table.to_string())
    net, ali = rows["set 2: network vs truth"], rows["set 1: alignment vs truth"]
    print("\nratio set-2 network error / set-1 alignment error (mean; target ≤ 1.5):")
    print("  " + ", ".join(f"{c}: {np.mean(net[c]) / max(np.mean(ali[c]), 1e-9):.1f}×" for c in cols))


if __name__ == "__main__":
    main()
