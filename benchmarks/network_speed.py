"""Training and inference throughput (images/s) of the DeepHEMNMA network at a given image size.

    python benchmarks/network_speed.py [--size 64] [--depths 18 34] [--device cpu|cuda] [--threads 2]

On CUDA it also times bf16 autocast + channels_last (what the training engine uses) against fp32.
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
    args = ap.parse_args()

    import torch

    from cryopipe.nn.heads import Regressor
    from cryopipe.nn.targets import loss_terms

    torch.set_num_threads(args.threads)
    dev = torch.device(args.device)
    modes = [(False, torch.contiguous_format)] + ([(True, torch.channels_last)] if dev.type == "cuda" else [])
    print(f"{args.size} px, batch {args.batch}, device {args.device}, threads {args.threads}")
    print(f"{'model':>9} {'bf16+CL':>8} {'train img/s':>12} {'infer img/s':>12}")
    for depth in args.depths:
        for amp, fmt in modes:
            model = Regressor(("amplitudes", "orientation", "shifts"), 3, depth=depth, image_size=args.size).to(
                dev, memory_format=fmt
            )
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


if __name__ == "__main__":
    main()
