"""The one training loop every trial runs, whatever its task (classification Sec 2-5,
detection and segmentation Sec 6): resume, epochs, divergence, evaluation, checkpoint,
``on_epoch``. What differs between tasks (model, data, loss, optimizer, metric) lives behind
the small ``Task`` interface; ``harness.tasks`` picks one by ``spec.task``.
"""
from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, Iterator, Protocol

import torch

from harness.checkpoint import CheckpointError, load_checkpoint, save_atomic
from harness.spec import TrialSpec
from harness.trial import EpochHook, TrainOptions, TrialResult


class Task(Protocol):
    """One trial's task, built on its device and seeded; ``fit`` drives it."""

    log_prefix: str  # before "epoch e/E ..." in the log: "" or e.g. "detection "
    device: torch.device
    epochs: int  # epochs at this scale
    iters_per_epoch: int
    batch_size: int  # images per step over all workers
    rank: int  # data-parallel rank (only rank 0 writes checkpoints)

    def result(self) -> TrialResult: ...  # provenance fields filled; status 'done'

    def train_batches(self, epoch: int) -> Iterator[Any]: ...

    def step(self, it: int, batch: Any) -> torch.Tensor: ...  # the detached loss

    def lr(self) -> float: ...

    def evaluate(self, epoch: int) -> dict[str, float | None]: ...  # the epoch row's top1, top5

    def finish(self, result: TrialResult) -> None: ...  # the task's final numbers into the result

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


def train_epoch(task: Task, epoch: int, opts: TrainOptions) -> tuple[float, float, int]:
    """One epoch; returns (mean loss, training seconds, steps). The loss stays on the device
    between divergence checks, so a step has no host-device synchronisation."""
    ipe = task.iters_per_epoch
    loss_sum = torch.zeros((), device=task.device)
    t0 = time.perf_counter()
    steps = 0
    for i, batch in enumerate(task.train_batches(epoch)):
        loss_sum += task.step(epoch * ipe + i, batch)
        steps = i + 1
        if steps % opts.log_every == 0:
            mean = loss_sum.item() / steps
            if not math.isfinite(mean):
                return mean, time.perf_counter() - t0, steps
            opts.log(f"  epoch {epoch + 1} it {steps}/{ipe} loss {mean:.4f} lr {task.lr():.4g}")
    if task.device.type == "cuda":
        torch.cuda.synchronize(task.device)
    return loss_sum.item() / max(1, ipe), time.perf_counter() - t0, steps


def fit(task: Task, spec: TrialSpec, opts: TrainOptions, on_epoch: EpochHook | None = None,
        t_start: float | None = None) -> TrialResult:
    """Train ``task`` for its epochs from where its checkpoint stopped; a NaN/inf loss ends
    the trial as 'diverged', fewer epochs than planned as 'failed'. ``t_start``: when the
    trial began (building the task included); the result's ``wall_s`` counts from there."""
    t_start = time.perf_counter() if t_start is None else t_start
    ckpt = Path(opts.checkpoint_dir) / "ckpt.pt" if opts.checkpoint_dir else None
    start, history = resume(ckpt, task, spec) if ckpt else (0, [])
    result = task.result()
    result.checkpoint = str(ckpt) if ckpt else None
    for epoch in range(start, task.epochs):
        loss, secs, steps = train_epoch(task, epoch, opts)
        if not math.isfinite(loss):
            result.status, result.error = "diverged", f"non-finite loss {loss} in epoch {epoch + 1}"
            break
        row = {"epoch": epoch + 1, "loss": loss, "lr": task.lr(), **task.evaluate(epoch),
               "epoch_s": secs, "img_per_s": steps * task.batch_size / secs}
        history.append(row)
        shown = "".join(f" {k} {row[k]:.2f}" for k in ("top1", "top5") if row.get(k) is not None)
        opts.log(f"{task.log_prefix}epoch {epoch + 1}/{task.epochs} loss {loss:.4f}{shown} "
                 f"{row['img_per_s']:.0f} img/s {secs:.1f}s")
        if ckpt and task.rank == 0:
            save_atomic({**task.state_dict(), "epoch": epoch + 1, "spec_hash": spec.hash,
                         "history": history}, ckpt)
            if opts.after_checkpoint:
                opts.after_checkpoint(row)
        if on_epoch:
            on_epoch(row)
        if opts.stop_after is not None and epoch + 1 >= opts.stop_after:
            break
    summarise(result, history, task.epochs)
    task.finish(result)
    result.wall_s = time.perf_counter() - t_start
    return result


def resume(path: Path, task: Task, spec: TrialSpec) -> tuple[int, list[dict]]:
    """Restore a checkpoint of this very trial; returns (epochs done, history)."""
    if not path.exists():
        return 0, []
    ckpt = load_checkpoint(path, map_location=task.device)
    if ckpt.get("spec_hash") != spec.hash:
        raise CheckpointError(f"checkpoint {path} belongs to trial {ckpt.get('spec_hash')}, "
                              f"not {spec.hash}")
    task.load_state_dict(ckpt)
    return int(ckpt["epoch"]), list(ckpt["history"])


def summarise(result: TrialResult, history: list[dict], epochs: int) -> None:
    """Epoch rows -> the result's totals: last top-1/top-5, mean epoch time, images/s."""
    result.history = history
    result.epochs = len(history)
    if history:
        result.top1, result.top5 = history[-1].get("top1"), history[-1].get("top5")
        secs = [h["epoch_s"] for h in history]
        imgs = sum(h["img_per_s"] * h["epoch_s"] for h in history)
        result.epoch_s = sum(secs) / len(secs)
        result.train_img_per_s = imgs / sum(secs)
    if result.status == "done" and len(history) < epochs:
        result.status = "failed"
        result.error = f"stopped after {len(history)} of {epochs} epochs"
