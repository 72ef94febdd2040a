"""Homologue signal: the noiseless, CTF-modulated images of the classification benchmark (issue 17).

Balanced classes (`images_per_class` each, in random order), uniform poses on SO(3), defocus uniform in the
range, a stratified train / validation / test split. Every SNR's data set (`homologue-images`) adds noise to
these same images, so accuracies at two SNRs differ by the noise only. Writes signal.mrcs, truth.csv (class,
pose, defocus, subset, the signal variance each SNR's noise is set from) and a figure of the classes.
"""

from __future__ import annotations

import argparse

from cryopipe.commands import add_params_arg, resolve_params

OUTPUTS = ["out_mrcs", "out_truth", "out_preview"]
STREAM = "homologues"  # the name of this benchmark's random streams (`cryopipe.imaging.simulate.dataset_seed`)


def params_from_config(cfg: dict) -> dict:
    c = cfg["classification"]
    s = cfg["simulate"]
    optics = ["voltage", "spherical_aberration", "amplitude_contrast", "astigmatism", "b_factor", "phase_shift"]
    return {
        **{k: c[k] for k in ("box", "pixel_size", "resolution", "images_per_class", "defocus", "max_shift")},
        **{k: c[k] for k in ("noise_before_ctf", "validation_fraction", "test_fraction")},
        **{k: s[k] for k in optics + ["ctf", "pad_factor", "batch_size"]},
        "seed": cfg["seed"],
        "device": cfg["device"],
    }


def add_args(p: argparse.ArgumentParser) -> None:
    add_params_arg(p)
    p.add_argument("--classes", required=True, help="classification/classes.npz from `homologues`")
    p.add_argument("--out-mrcs", required=True, help="output: noiseless images (.mrcs)")
    p.add_argument("--out-truth", required=True, help="output: class, pose, defocus, subset per image (.csv)")
    p.add_argument("--out-preview", required=True, help="output: the classes at one pose and their differences (.png)")


def load_renderer(params: dict, classes_path: str):
    """(ClassRenderer, class names) for the classes of `homologues` under these optics."""
    import numpy as np

    from cryopipe.classify.render import ClassRenderer
    from cryopipe.device import pick_device
    from cryopipe.imaging.project import sigma_for_resolution
    from cryopipe.imaging.simulate import Optics

    with np.load(classes_path) as z:
        coords, weights, keep, names = z["coords"], z["weights"], z["keep"], [str(n) for n in z["names"]]
    optics = Optics.from_params(params)
    renderer = ClassRenderer(
        coords,
        weights,
        keep,
        optics,
        sigma=sigma_for_resolution(params["resolution"]),
        ctf=params["ctf"],
        pad_factor=params["pad_factor"],
        device=pick_device(params["device"]),
    )
    return renderer, names


def draw_particles(params: dict, n_classes: int):
    """The benchmark's particles: class, pose, defocus and subset per image (a function of the seed only)."""
    import numpy as np
    import pandas as pd
    import torch

    from cryopipe.geometry import matrix_to_euler, random_rotations
    from cryopipe.imaging.simulate import dataset_seed, draw_defocus
    from cryopipe.io.star import EULER, ORIGIN

    per, seed = params["images_per_class"], params["seed"]
    rng = np.random.default_rng(np.random.SeedSequence([dataset_seed(seed, STREAM), 1]))
    labels = rng.permutation(np.repeat(np.arange(n_classes), per))
    n = len(labels)
    g = torch.Generator().manual_seed(int(rng.integers(2**62)))
    table = pd.DataFrame({"particle": np.arange(n), "class": labels})
    table[EULER] = matrix_to_euler(random_rotations(n, g)).numpy()
    table[ORIGIN] = rng.uniform(-1, 1, (n, 2)) * params["max_shift"] * params["pixel_size"]
    du, dv, angle = draw_defocus(n, params["defocus"], params["astigmatism"], seed, STREAM)
    table["rlnDefocusU"], table["rlnDefocusV"], table["rlnDefocusAngle"] = du, dv, angle
    subset = np.full(n, "train", dtype=object)
    for k in range(n_classes):  # stratified: every subset holds each class equally
        members = rng.permutation(np.flatnonzero(labels == k))
        n_val, n_test = round(params["validation_fraction"] * per), round(params["test_fraction"] * per)
        subset[members[:n_val]] = "validation"
        subset[members[n_val : n_val + n_test]] = "test"
    table["subset"] = subset
    return table


def main(args: argparse.Namespace) -> None:
    import numpy as np
    import torch
    from tqdm import tqdm

    from cryopipe.classify.figures import save_class_projections
    from cryopipe.io.atomic import atomic_path
    from cryopipe.io.mrc import StackWriter

    params = resolve_params(args, params_from_config)
    renderer, names = load_renderer(params, args.classes)
    truth = draw_particles(params, len(names))
    truth.insert(2, "class_name", np.array(names)[truth["class"]])
    n, bs = len(truth), params["batch_size"]
    variance = np.zeros(n)
    with StackWriter(args.out_mrcs, n, params["box"], params["pixel_size"]) as out:
        for i in tqdm(range(0, n, bs), desc="homologue signal", mininterval=2):
            b = truth.iloc[i : i + bs]
            every = renderer.signals(b)  # (B, K, L, L): all classes at once, by linearity
            own = every[torch.arange(len(b)), torch.as_tensor(b["class"].to_numpy().copy())]
            variance[i : i + len(b)] = renderer.signal_variance(own, b)
            out.write(i, own.cpu().numpy())
    truth["signal_variance"] = variance
    with atomic_path(args.out_truth) as tmp:
        truth.to_csv(tmp, index=False, float_format="%.6f")
    first = renderer.projections(truth.iloc[:1])[0].cpu().numpy()
    save_class_projections(args.out_preview, first, names)
    counts = truth.groupby("subset").size().to_dict()
    print(
        f"homologue-signal: {n} images ({params['images_per_class']} per class × {len(names)}), "
        f"{params['box']}² px at {params['pixel_size']} Å/px; subsets {counts}"
    )
