"""Training engine shared by every network of the pipeline.

- A checkpoint (`last.pt`) after every epoch; `resume=True` continues from it when it was written
  with the same settings. Shuffling and dropout are seeded from (seed, epoch), so an interrupted
  and resumed run on CPU ends with exactly the weights of an uninterrupted one.
- Early stopping on the validation loss (`patience` epochs); the best weights go to `best.pt`.
- `history.csv` and `learning_curve.png` are rewritten after every epoch; tqdm shows progress.
- The loss: L1 / cross-entropy on the model's outputs (`cryopipe.nn.targets.loss_terms`), or, for a model
  that scores itself (`returns_loss`: the VAE's reconstruction + KL), the terms its `forward(images, targets)`
  returns.
- On CUDA: bf16 autocast and channels_last. Under `torchrun` (WORLD_SIZE > 1) the model is wrapped
  in DistributedDataParallel with a DistributedSampler; rank 0 writes files.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sized
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import cast

import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset

from cryopipe.nn.augment import random_inplane
from cryopipe.nn.targets import constant_loss, loss_terms
from cryopipe.plots import save_learning_curve

log = logging.getLogger(__name__)


@dataclass
class TrainSettings:
    """The training engine's settings; built from the validated `train` config (`from_params`), whose
    schema holds the defaults and their descriptions."""

    epochs: int
    batch_size: int
    lr: float
    lr_step: int  # epochs between divisions of the learning rate by 10
    weight_decay: float
    patience: int  # epochs without validation improvement before stopping
    seed: int
    device: str
    amp: bool  # bf16 autocast on CUDA
    channels_last: bool  # on CUDA
    num_workers: int
    augment_inplane: bool  # random in-plane rotation of each training image, targets rotated exactly

    @classmethod
    def from_params(cls, params: dict, device: str | None = None) -> TrainSettings:
        """From the train stage's params (`cryopipe.commands.train.params_from_config`); `device` (e.g. the
        one `pick_device` resolved) replaces the params' own."""
        names = [f.name for f in fields(cls)]
        return cls(**{**{k: params[k] for k in names}, **({"device": device} if device is not None else {})})

    def fingerprint(self, extra: dict | None = None) -> str:
        keep = {k: v for k, v in asdict(self).items() if k not in ("device", "num_workers")}
        return hashlib.sha1(json.dumps({**keep, **(extra or {})}, sort_keys=True).encode()).hexdigest()[:16]


def distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment."""
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)), int(os.environ.get("LOCAL_RANK", 0))


def collate(batch):
    """(images (B, 1, L, L), targets {kind: (B, ...)}, indices (B,)) from `ParticleDataset` items."""
    imgs = torch.stack([b[0] for b in batch])
    targets = {k: torch.stack([b[1][k] for b in batch]) for k in batch[0][1]}
    return imgs, targets, torch.tensor([b[2] for b in batch])


def _save(obj, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def batch_loss(net: torch.nn.Module, model: torch.nn.Module, imgs, targets) -> dict[str, torch.Tensor]:
    """The loss terms of one batch: L1/cross-entropy on the network's outputs (`loss_terms`), or, for a model
    that scores itself (`returns_loss`, e.g. the VAE: reconstruction + KL), its own `forward(images, targets)`."""
    if getattr(model, "returns_loss", False):
        return net(imgs, targets)
    return loss_terms(net(imgs), targets, getattr(model, "orientation_bins", None))


def evaluate(model, loader, device, amp: bool) -> float:
    model.eval()
    total, n = 0.0, 0
    with torch.no_grad():
        for imgs, targets, _ in loader:
            imgs = imgs.to(device, non_blocking=True)
            targets = {k: v.to(device) for k, v in targets.items()}
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                terms = batch_loss(model, model, imgs, targets)
            total += float(sum(terms.values())) * len(imgs)
            n += len(imgs)
    return total / max(n, 1)


def _constant_baseline(train_ds: Dataset, val_ds: Dataset, bins=None) -> float:
    """Validation loss of the best constant prediction (nan when the datasets do not expose `targets`);
    `bins`: the model's orientation bins, if it classifies orientation."""
    tr, va = getattr(train_ds, "targets", None), getattr(val_ds, "targets", None)
    if not tr or not va or len(cast(Sized, val_ds)) == 0:
        return float("nan")
    return constant_loss(tr, va, bins)


def publish(out_dir: Path, history: pd.DataFrame, out_model, out_history, out_curve) -> pd.DataFrame:
    """A finished training's outputs where the workflow expects them: the best weights (`out_dir/best.pt`)
    copied to `out_model`, the per-epoch history as CSV and its learning curve."""
    import shutil

    best = Path(out_dir) / "best.pt"
    if Path(out_model).resolve() != best.resolve():
        shutil.copyfile(best, out_model)
    history = pd.DataFrame(history)
    history.to_csv(out_history, index=False)
    save_learning_curve(history, out_curve)
    return history


def fit(
    model: torch.nn.Module,
    train_ds: Dataset,
    val_ds: Dataset,
    settings: TrainSettings,
    out_dir: Path,
    *,
    meta: dict,
    resume: bool = False,
    stop_after: int | None = None,
    progress: bool = True,
    initial_state: dict | None = None,
) -> pd.DataFrame:
    """Train `model`; returns the per-epoch history. `meta` is stored in every checkpoint (model
    configuration, target statistics) so a checkpoint alone is enough for inference.

    `train_ds` is a Dataset of (image, targets, index), or a batch source with `epoch_batches(epoch, rank,
    world)` that yields whole batches (`cryopipe.nn.simulated.TrainingSimulator`: new images each epoch,
    a function of (seed, step); no in-plane augmentation, its poses are uniform already).
    `initial_state`: weights to start from (fine-tuning), unless a matching checkpoint is resumed."""
    from tqdm import tqdm

    rank, world, local_rank = distributed()
    device = torch.device(settings.device if settings.device != "cuda" else f"cuda:{local_rank}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cuda = device.type == "cuda"
    amp = settings.amp and cuda
    # A model may name its own layout (the 3-D map network: channels_last_3d, ~2× faster on CPU too).
    fmt = getattr(model, "memory_format", None) or (
        torch.channels_last if (cuda and settings.channels_last) else torch.contiguous_format
    )
    model = model.to(device, memory_format=fmt)  # type: ignore[call-overload]  # (torch's stub lacks memory_format)
    if world > 1:
        torch.distributed.init_process_group("nccl" if cuda else "gloo")
        net: torch.nn.Module = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[local_rank] if cuda else None
        )
    else:
        net = model
    optimizer = torch.optim.Adam(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(optimizer, step_size=settings.lr_step, gamma=0.1)
    fingerprint = settings.fingerprint({"meta": meta})
    if initial_state is not None:
        model.load_state_dict(initial_state)
    start, best, bad, history = 1, float("inf"), 0, []
    last = out_dir / "last.pt"
    if resume and last.exists():
        ck = torch.load(last, map_location=device, weights_only=False)
        if ck.get("fingerprint") == fingerprint:
            model.load_state_dict(ck["model"])
            optimizer.load_state_dict(ck["optimizer"])
            sched.load_state_dict(ck["scheduler"])
            start, best, bad, history = ck["epoch"] + 1, ck["best_val"], ck["bad_epochs"], ck["history"]
            if rank == 0:
                log.info("resuming from epoch %d (%s)", ck["epoch"], last)
        elif rank == 0:
            log.info("%s was written with other settings; starting afresh", last)
    bins = getattr(model, "orientation_bins", None)
    baseline = float("nan") if getattr(model, "returns_loss", False) else _constant_baseline(train_ds, val_ds, bins)
    if rank == 0 and baseline == baseline:
        log.info("validation loss of the best constant prediction (a network that learns nothing): %.4f", baseline)
    val_loader = DataLoader(
        val_ds, batch_size=settings.batch_size, shuffle=False, collate_fn=collate, num_workers=settings.num_workers
    )
    done_here = 0
    for epoch in range(start, settings.epochs + 1):
        if bad >= settings.patience:
            break
        torch.manual_seed(settings.seed * 100003 + epoch)  # dropout draws: a function of (seed, epoch) only
        simulated = hasattr(train_ds, "epoch_batches")
        batches: Iterable
        if simulated:
            batches = train_ds.epoch_batches(epoch, rank, world)  # type: ignore[attr-defined]
        elif world > 1:
            sampler: torch.utils.data.Sampler[int] = torch.utils.data.distributed.DistributedSampler(
                train_ds, seed=settings.seed, drop_last=False
            )
            cast(torch.utils.data.distributed.DistributedSampler, sampler).set_epoch(epoch)
        else:
            gen = torch.Generator().manual_seed(settings.seed * 100003 + epoch)
            sampler = torch.utils.data.RandomSampler(cast(Sized, train_ds), generator=gen)
        if not simulated:
            batches = DataLoader(
                train_ds,
                batch_size=settings.batch_size,
                sampler=sampler,
                collate_fn=collate,
                num_workers=settings.num_workers,
                pin_memory=cuda,
            )
        net.train()
        aug_gen = torch.Generator().manual_seed(settings.seed * 100003 + epoch + 1)
        t0, total, n = time.perf_counter(), 0.0, 0
        n_batches = getattr(train_ds, "batches_per_epoch", None) if simulated else len(cast(Sized, batches))
        for imgs, targets, _ in tqdm(
            batches,
            total=n_batches,
            desc=f"epoch {epoch}/{settings.epochs}",
            disable=not progress or rank != 0,
            mininterval=5,
            leave=False,
        ):
            imgs = imgs.to(device, non_blocking=True)
            targets = {k: v.to(device, non_blocking=True) for k, v in targets.items()}
            if settings.augment_inplane and not simulated:
                imgs, targets = random_inplane(imgs, targets, aug_gen)
            imgs = imgs.contiguous(memory_format=fmt)
            with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=amp):
                terms = batch_loss(net, model, imgs, targets)
            loss = cast(torch.Tensor, sum(terms.values()))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(imgs)
            n += len(imgs)
        if cuda:
            torch.cuda.synchronize()
        seconds = time.perf_counter() - t0
        sched.step()
        val = evaluate(model, val_loader, device, amp) if len(cast(Sized, val_ds)) else total / max(n, 1)
        improved = val < best
        best, bad = (val, 0) if improved else (best, bad + 1)
        history.append(
            {
                "epoch": epoch,
                "train_loss": total / max(n, 1),
                "val_loss": val,
                "lr": optimizer.param_groups[0]["lr"],
                "constant_val_loss": baseline,
                "seconds": seconds,
                "train_images_per_s": n * world / seconds,
            }
        )
        if rank == 0:
            state = {
                "model": model.state_dict(),
                "optimizer": optimizer.state_dict(),
                "scheduler": sched.state_dict(),
                "epoch": epoch,
                "best_val": best,
                "bad_epochs": bad,
                "history": history,
                "fingerprint": fingerprint,
                "meta": meta,
            }
            _save(state, last)
            if improved:
                _save({"model": model.state_dict(), "meta": meta, "epoch": epoch, "val_loss": val}, out_dir / "best.pt")
            frame = pd.DataFrame(history)
            frame.to_csv(out_dir / "history.csv", index=False)
            save_learning_curve(frame, out_dir / "learning_curve.png")
            log.info(
                "epoch %d: train %.4f val %.4f (%.1f images/s)%s",
                epoch,
                history[-1]["train_loss"],
                val,
                history[-1]["train_images_per_s"],
                " *" if improved else "",
            )
        done_here += 1
        if stop_after is not None and done_here >= stop_after:
            break
    if world > 1:
        torch.distributed.destroy_process_group()
    return pd.DataFrame(history)
