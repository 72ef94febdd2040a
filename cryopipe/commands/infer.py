"""Infer: predict amplitudes, orientations and shifts of image set 2 with the trained networks."""

from __future__ import annotations

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_star", "amplitudes"]


def params_from_config(cfg: dict) -> dict:
    return {**cfg["infer"], "device": cfg["device"]}


def add_args(p) -> None:
    add_params_arg(p)
    p.add_argument("--star", required=True, help="images to predict (preprocess/<dataset>/set2.star)")
    p.add_argument("--models", required=True, nargs="+", help="trained checkpoints (model.pt), together covering every kind")
    p.add_argument("--out-star", required=True, help="output STAR with the predicted angles and origins")
    p.add_argument("--amplitudes", required=True, help="output table of the predicted amplitudes")


def main(args) -> None:
    import pandas as pd

    from cryopipe.device import pick_device
    from cryopipe.errors import CryopipeError
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.star import read_star, split_image_name, write_star
    from cryopipe.nn.data import ParticleDataset
    from cryopipe.nn.infer import predict

    prm = resolve_params(args, params_from_config)
    particles, optics = read_star(args.star)
    pred, rate = predict(args.models, ParticleDataset(particles, args.star), prm["batch_size"], pick_device(prm["device"]))
    missing = [k for k in ("amplitudes", "orientation", "shifts") if k not in pred]
    if missing:
        raise CryopipeError(f"the models given predict no {missing[0]}; give a checkpoint for each kind")
    from cryopipe.nn.infer import load_model

    modes = load_model(args.models[0])[2]["modes"]
    out = particles.copy()
    out["rlnAngleRot"], out["rlnAngleTilt"], out["rlnAnglePsi"] = pred["euler"].T
    out["rlnOriginXAngst"], out["rlnOriginYAngst"] = pred["shifts"].T
    table = pd.DataFrame(pred["amplitudes"], columns=modes)
    table.insert(0, "particle", [split_image_name(n)[0] for n in particles["rlnImageName"]])
    write_star(args.out_star, out, optics)
    with atomic_path(args.amplitudes) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6f")
    print(f"infer: {len(out)} images at {rate:.1f} images/s")
