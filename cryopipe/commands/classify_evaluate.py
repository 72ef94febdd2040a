"""Classify-evaluate: every classifier on one SNR's test images; accuracy (95% CI), confusion, Grad-CAM.

- pixel difference at the known pose (the report's Table 1, done exactly): each class's noiseless,
  CTF-modulated image at the image's true pose and defocus; the class of least squared difference. With
  white Gaussian noise (`noise_before_ctf` 0) this is the maximum-likelihood class given the pose: no
  classifier that is given only the image can do better on average, so it bounds what is achievable.
- the same at the pose turned by each of `pose_errors` degrees (what a consensus refinement gives):
  how fast the known-pose advantage fades.
- each trained network (`classify-train`), which sees the image only.
Grad-CAM maps of the first network named by `--gradcam-model` (a ResNet where there is one) on test images,
beside where their class's projection differs from the other classes' at the same pose; `gradcam_share`
is the mean share of the map's mass on that region, `gradcam_area` the region's share of the box.
"""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_predictions", "out_accuracy", "out_confusion", "out_gradcam"]


def params_from_config(cfg: dict) -> dict:
    from cryopipe.commands import homologue_signal

    c = cfg["classification"]
    return {
        **homologue_signal.params_from_config(cfg),
        "pose_errors": c["pose_errors"],
        "gradcam_images": c["gradcam_images"],
    }


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--snr", type=float, required=True)
    p.add_argument("--star", required=True, help="this SNR's particles.star")
    p.add_argument("--truth", required=True, help="classification/truth.csv")
    p.add_argument("--classes", required=True, help="classification/classes.npz")
    p.add_argument("--models", nargs="*", default=[], help="classify-train checkpoints (model.pt)")
    p.add_argument("--out-predictions", required=True, help="output: predicted class per test image per classifier")
    p.add_argument("--out-accuracy", required=True, help="output: accuracy and 95%% interval per classifier (.csv)")
    p.add_argument("--out-confusion", required=True, help="output: confusion matrices (.png)")
    p.add_argument("--out-gradcam", required=True, help="output: Grad-CAM figure (.png)")


def pixel_difference(renderer, images, rows, batch_size: int):
    """(class of least squared difference (n,) between each image and every class's noiseless image at `rows'`
    poses and defoci, the mean of those class images (n, L, L): the consensus map's image there)."""
    import numpy as np
    import torch

    classes, consensus = np.empty(len(rows), dtype=np.int64), []
    for i in range(0, len(rows), batch_size):
        b = rows.iloc[i : i + batch_size]
        templates = renderer.signals(b)  # (B, K, L, L)
        img = torch.as_tensor(images[i : i + len(b)], device=templates.device)[:, None]
        classes[i : i + len(b)] = ((img - templates) ** 2).sum((-2, -1)).argmin(1).cpu().numpy()
        consensus.append(templates.mean(1).cpu())
    return classes, torch.cat(consensus)


def network_predictions(model, inputs, batch_size: int = 256):
    """Predicted class (n,) of network inputs (n, C, L, L)."""
    import numpy as np
    import torch

    out = []
    with torch.no_grad():
        for i in range(0, len(inputs), batch_size):
            x = torch.as_tensor(inputs[i : i + batch_size])
            out.append(model(x)["class"].argmax(1).numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)


def class_differences(renderer, rows, labels, batch_size: int):
    """(n, L, L): Σ over the other classes j of |p_c − p_j|, the CTF-free projections at each image's pose."""
    import numpy as np
    import torch

    out = []
    for i in range(0, len(rows), batch_size):  # in batches: rendering holds (batch, atoms, L) profiles
        p = renderer.projections(rows.iloc[i : i + batch_size]).cpu()  # (B, K, L, L)
        own = p[torch.arange(len(p)), torch.as_tensor(labels[i : i + batch_size].copy())][:, None]
        out.append((own - p).abs().sum(1).numpy())
    return np.concatenate(out)


def main(args: argparse.Namespace) -> None:
    import numpy as np
    import pandas as pd
    import torch

    from cryopipe.classify.data import flipped
    from cryopipe.classify.figures import save_confusion_matrices, save_gradcam
    from cryopipe.classify.gradcam import grad_cam
    from cryopipe.classify.metrics import accuracy_row, confusion_matrix
    from cryopipe.classify.models import given_pose
    from cryopipe.commands.classify_train import labelled_subsets, load_classifier
    from cryopipe.commands.homologue_signal import STREAM, load_renderer
    from cryopipe.imaging.simulate import consensus_poses
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.star import EULER, ORIGIN, load_images

    params = resolve_params(args, params_from_config)
    subsets, optics, names = labelled_subsets(args.star, args.truth)
    test = subsets["test"]  # the STAR rows: true poses and defoci, class labels
    images = load_images(test, args.star)
    renderer, _ = load_renderer(params, args.classes)
    labels = test["class"].to_numpy()
    predictions, consensus = {}, {}
    for angle in sorted({0.0, *params["pose_errors"]}):  # the known pose always
        rows = test.copy()
        if angle > 0:
            rows[EULER + ORIGIN] = consensus_poses(test, angle, 0.0, params["seed"], f"{STREAM}_pose{angle:g}")
        name = "pixel difference, known pose" + (f" + {angle:g}°" if angle > 0 else "")
        predictions[name], consensus[angle] = pixel_difference(renderer, images, rows, params["batch_size"])
        print(f"classify-evaluate: SNR {args.snr:g}: {name}: {np.mean(predictions[name] == labels):.1%}")
    models, seen = {}, {}
    for path in args.models:
        model, meta = load_classifier(path)
        arch, flip = meta["architecture"], meta["phase_flip"]
        models[arch] = model
        image_channel = flipped(torch.as_tensor(images), test, optics, flip)
        if not given_pose(arch):
            seen[arch] = image_channel[:, None].numpy()
            predictions[arch] = network_predictions(model, seen[arch])
        else:  # given the pose: at the true pose, and at each pose error (the consensus image moves with it)
            for angle, template in consensus.items():
                x = torch.stack([image_channel, flipped(template, test, optics, flip)], 1).numpy()
                seen.setdefault(arch, x)
                predictions[arch + (f" + {angle:g}°" if angle > 0 else "")] = network_predictions(model, x)
        print(f"classify-evaluate: SNR {args.snr:g}: {arch}: {np.mean(predictions[arch] == labels):.1%}")
    rows = [{"snr": args.snr, "classifier": k, **accuracy_row(labels, v)} for k, v in predictions.items()]
    table = pd.DataFrame(rows)
    # Grad-CAM of every network on the test images: the share of its mass where the classes differ
    differences = class_differences(renderer, test, labels, params["batch_size"])
    region = differences > 0.1 * differences.max(axis=(1, 2), keepdims=True)
    cams = {}
    for arch, model in models.items():
        cams[arch] = np.concatenate(
            [
                grad_cam(
                    model,
                    torch.as_tensor(seen[arch][i : i + 128]),
                    torch.as_tensor(labels[i : i + 128].copy()),
                ).numpy()
                for i in range(0, len(images), 128)
            ]
        )
        share = (cams[arch] * region).sum((1, 2)) / np.maximum(cams[arch].sum((1, 2)), 1e-12)
        table.loc[table["classifier"] == arch, "gradcam_share"] = float(share.mean())
        table.loc[table["classifier"] == arch, "gradcam_area"] = float(region.mean())
    out = test[["particle", "class"]].copy()
    for k, v in predictions.items():
        out[k] = v
    with atomic_path(args.out_predictions) as tmp:
        out.to_csv(tmp, index=False)
    with atomic_path(args.out_accuracy) as tmp:
        table.to_csv(tmp, index=False, float_format="%.4f")
    matrices = {k: confusion_matrix(labels, v, len(names)) for k, v in predictions.items()}
    save_confusion_matrices(args.out_confusion, matrices, names, f"SNR {args.snr:g}: {len(labels)} test images")
    shown = [a for a in ("resnet18", "resnet50", "cnn2") if a in cams][:1]
    n = min(params["gradcam_images"], len(images))
    if shown:
        arch = shown[0]
        titles = [f"{names[t]} → {names[p]}" for t, p in zip(labels[:n], predictions[arch][:n])]
        save_gradcam(args.out_gradcam, seen[arch][:n, 0], cams[arch][:n], differences[:n], titles)
    else:  # no network: the figure shows the images and the class differences only
        save_gradcam(
            args.out_gradcam, images[:n], np.zeros_like(images[:n]), differences[:n], [names[t] for t in labels[:n]]
        )
    print(table.to_string(index=False))
