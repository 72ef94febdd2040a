#!/usr/bin/env python
"""Save a PNG montage of the first images of a RELION .star or an .mrcs stack.

python scripts/montage.py results/preprocess/snr0.1_df0.5-2/particles.star montage.png --n 32
"""

import argparse


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("input", help=".star or .mrcs")
    ap.add_argument("output", help=".png")
    ap.add_argument("--n", type=int, default=32)
    args = ap.parse_args()

    import numpy as np

    from cryopipe.io.mrc import open_stack
    from cryopipe.io.star import load_images, read_star
    from cryopipe.plots import save_montage

    if args.input.endswith(".star"):
        particles, _ = read_star(args.input)
        images = load_images(particles, args.input, np.arange(min(args.n, len(particles))))
    else:
        images = np.asarray(open_stack(args.input)[: args.n])
    save_montage(args.output, images, f"{args.input}: first {len(images)} images")


if __name__ == "__main__":
    main()
