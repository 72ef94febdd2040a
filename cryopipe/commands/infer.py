"""Infer: predict amplitudes, orientations and shifts of image set 2 with the trained networks."""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_star", "out_amplitudes", "out_test_star", "out_test_amplitudes"]
HYPOTHESIS_ANGLES = ("rot", "tilt", "psi")  # columns hypothesis<k>_<angle> (degrees, RELION ZYZ) of the table


def hypothesis_rotations(table):
    """(rotation matrices (n, K, 3, 3) of the orientation hypotheses in an `infer` amplitude table, best score
    first), or None when the table has none (a network with one hypothesis)."""
    import numpy as np
    import torch

    from cryopipe.geometry import euler_to_matrix

    K = 0
    while f"hypothesis{K + 1}_rot" in table.columns:
        K += 1
    if K == 0:
        return None
    angles = np.stack(
        [table[[f"hypothesis{j + 1}_{a}" for a in HYPOTHESIS_ANGLES]].to_numpy(dtype=np.float64) for j in range(K)], 1
    )
    return euler_to_matrix(torch.tensor(angles)).numpy()


def params_from_config(cfg: dict) -> dict:
    return {**cfg["infer"], "device": cfg["device"]}


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--star", required=True, help="images to predict (preprocess/<dataset>/set2.star)")
    p.add_argument(
        "--models", required=True, nargs="+", help="trained checkpoints (model.pt), together covering every kind"
    )
    p.add_argument("--out-star", required=True, help="output STAR with the predicted angles and origins")
    p.add_argument("--out-amplitudes", required=True, help="output table of the predicted amplitudes")
    p.add_argument(
        "--preprocessed-star", help="preprocess/<dataset>/particles.star: also predict the small test subset of set 1"
    )
    p.add_argument("--split", help="preprocess/<dataset>/split.csv (which images are the small test subset)")
    p.add_argument(
        "--out-test-star",
        help="STAR of the small-test predictions (network vs alignment on unseen set-1 images)",
    )
    p.add_argument("--out-test-amplitudes", help="output table of the small-test amplitude predictions")


def predict_star(models, particles, optics, star_path, batch_size: int, device, out_star, out_amplitudes) -> float:
    """Predict every particle of a STAR file; write the STAR with predicted poses and the amplitude table."""
    import pandas as pd

    from cryopipe.errors import CryopipeError
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.star import EULER, ORIGIN, split_image_name, write_star
    from cryopipe.nn.data import ParticleDataset
    from cryopipe.nn.infer import load_model, predict

    pred, rate = predict(models, ParticleDataset(particles.reset_index(drop=True), star_path), batch_size, device)
    missing = [k for k in ("amplitudes", "orientation", "shifts") if k not in pred]
    if missing:
        raise CryopipeError(f"the models given predict no {missing[0]}; give a checkpoint for each kind")
    modes = load_model(models[0])[2]["modes"]
    out = particles.copy()
    out[EULER] = pred["euler"]
    out[ORIGIN] = pred["shifts"]
    table = pd.DataFrame(pred["amplitudes"], columns=modes)
    table.insert(0, "particle", [split_image_name(n)[0] for n in particles["rlnImageName"]])
    if "hypothesis_euler" in pred:  # every orientation hypothesis, best score first: refine.search local tries them
        for j in range(pred["hypothesis_euler"].shape[1]):
            for c, name in enumerate(HYPOTHESIS_ANGLES):
                table[f"hypothesis{j + 1}_{name}"] = pred["hypothesis_euler"][:, j, c]
            table[f"hypothesis{j + 1}_score"] = pred["scores"][:, j]
    write_star(out_star, out, optics)
    with atomic_path(out_amplitudes) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    return rate


def main(args: argparse.Namespace) -> None:
    import pandas as pd

    from cryopipe.device import pick_device
    from cryopipe.errors import CryopipeError
    from cryopipe.io.star import read_star, split_image_name

    params = resolve_params(args, params_from_config)
    device = pick_device(params["device"])
    test_args = [args.preprocessed_star, args.split, args.out_test_star, args.out_test_amplitudes]
    if any(test_args) and not all(test_args):
        raise CryopipeError("--test-from, --split, --test-star and --test-amplitudes go together")
    particles, optics = read_star(args.star)
    rate = predict_star(
        args.models, particles, optics, args.star, params["batch_size"], device, args.out_star, args.out_amplitudes
    )
    print(f"infer: {len(particles)} images of set 2 at {rate:.1f} images/s")
    if args.preprocessed_star:
        allp, all_optics = read_star(args.preprocessed_star)
        split = pd.read_csv(args.split)
        if "subset" not in split.columns:
            raise CryopipeError(f"{args.split}: column 'subset' missing")
        test_ids = set(split.loc[split["subset"] == "test", "particle"])
        ids = [split_image_name(n)[0] for n in allp["rlnImageName"]]
        test = allp[[i in test_ids for i in ids]]
        if len(test) == 0:
            raise CryopipeError(f"{args.split}: no image in the small test subset (preprocess.test_fraction)")
        rate = predict_star(
            args.models,
            test,
            all_optics,
            args.preprocessed_star,
            params["batch_size"],
            device,
            args.out_test_star,
            args.out_test_amplitudes,
        )
        print(f"infer: {len(test)} images of the small test subset of set 1 at {rate:.1f} images/s")
