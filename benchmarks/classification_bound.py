"""The information bound of the homologue-classification benchmark against the image sampling.

The known-pose pixel difference (the maximum-likelihood class given the pose, white noise) bounds every
classifier. At one SNR (defined per pixel, as `simulate` does) it depends on how many pixels carry the
loops: the same particles at 64 px / 2.6 Å (the default) and 128 px / 1.3 Å (the paper-scale recipe) hold
different amounts of information. For each sampling and SNR: the accuracy of the known-pose classifier
on `--images` images per class (the default config's classes, optics and seed), with its 95% Wilson
interval, and seconds. Not a test; prints a table.

    python benchmarks/classification_bound.py [--images 100] [--samplings 64:2.6 128:1.3] [--snr 0.5 0.25 0.1 0.05]
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=100, help="images per class")
    ap.add_argument("--samplings", nargs="+", default=["64:2.6", "128:1.3"], help="box:pixel size (Å)")
    ap.add_argument("--snr", type=float, nargs="+", default=[0.5, 0.25, 0.1, 0.05])
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    import numpy as np
    import pandas as pd
    import torch

    from cryopipe.analysis.errors import to_markdown
    from cryopipe.classify.metrics import accuracy_row
    from cryopipe.classify.render import ClassRenderer
    from cryopipe.commands import homologue_signal, homologues
    from cryopipe.commands.classify_evaluate import pixel_difference
    from cryopipe.config import default_config
    from cryopipe.imaging.project import sigma_for_resolution
    from cryopipe.imaging.simulate import Optics, noise_variance_for_snr
    from cryopipe.io.structure import atoms_from_selection, parse_structure
    from cryopipe.structure.homologues import exposed_loop, homologue_classes

    torch.set_num_threads(args.threads)
    cfg = default_config()
    c = homologues.params_from_config(cfg)
    atoms = atoms_from_selection(parse_structure(c["pdb"], c["selection"]))
    loop = exposed_loop(atoms.coords, atoms.names, atoms.resnums, atoms.chains, c["loop_length"])
    keep = np.stack([k.keep for k in homologue_classes(atoms.chains, atoms.resnums, loop, c["arrangements"])])
    rows = []
    for sampling in args.samplings:
        box, apix = int(sampling.split(":")[0]), float(sampling.split(":")[1])
        params = {**homologue_signal.params_from_config(cfg), "box": box, "pixel_size": apix}
        params["images_per_class"] = args.images
        renderer = ClassRenderer(atoms.coords, atoms.weights, keep, Optics.from_params(params),
                                 sigma=sigma_for_resolution(params["resolution"]))  # fmt: skip
        table = homologue_signal.draw_particles(params, len(keep))
        t0 = time.perf_counter()
        signal = []
        for i in range(0, len(table), 64):
            b = table.iloc[i : i + 64]
            signal.append(renderer.signals(b)[torch.arange(len(b)), torch.as_tensor(b["class"].to_numpy().copy())])
        signal = torch.cat(signal)
        variance = renderer.signal_variance(signal, table)
        for snr in args.snr:
            noise_var = noise_variance_for_snr(variance, snr)
            noise = torch.cat([renderer.noise(table.iloc[i : i + 64], noise_var, 0.0, params["seed"], f"bound{snr:g}")
                               for i in range(0, len(table), 64)])  # fmt: skip
            predicted, _ = pixel_difference(renderer, (signal + noise).numpy(), table, 64)
            row = accuracy_row(table["class"].to_numpy(), predicted)
            rows.append({"box (px)": box, "pixel (Å)": apix, "snr": f"{snr:g}", **row,
                         "seconds": time.perf_counter() - t0})  # fmt: skip
            print(rows[-1], flush=True)
    print(to_markdown(pd.DataFrame(rows), floatfmt=".3f"))


if __name__ == "__main__":
    main()
