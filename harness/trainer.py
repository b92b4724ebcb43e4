"""The one shared trainer: every trial of every table runs through ``run_trial``.

Tricks enter only through the recipe, at fixed points: model graph (model name), init
(zero-gamma), parameter groups (no bias decay), per-iteration schedule (linear scaling,
warmup, step/cosine), precision (fp16/bf16 autocast + loss scaling), targets (label
smoothing, mixup) and loss (distillation). Needs only torch and torchvision (no Ray).
"""
from __future__ import annotations

import math
import os
import random
import signal
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from harness import provenance
from harness.batches import BatchSource, make_batches
from harness.checkpoint import load_checkpoint, save_atomic
from harness.compile_cache import use_compile_cache
from harness.cpu_heap import keep_freed_memory
from harness.distributed import ShardedBatches, data_parallel, world
from harness.models import create_model
from harness.models.small_maps import use_small_map_convs
from harness.recipe import Recipe
from harness.scales import Scale
from harness.spec import TrialSpec
from tricks.distillation import distillation_loss
from tricks.label_smoothing import smooth_targets, soft_cross_entropy
from tricks.lr_schedule import LRSchedule
from tricks.mixed_precision import autocast, make_scaler, resolve_precision
from tricks.mixup import mixup_batch
from tricks.no_bias_decay import param_groups
from tricks.zero_gamma import apply_zero_gamma


@dataclass
class TrainOptions:
    """How (not what) to train: device, paths, threads, kernels. Changes no maths (the CPU
    small-map convs change float rounding only)."""

    device: str | None = None  # None: cuda when present, else cpu
    data_root: str | None = None
    decode: str = "workers"  # ImageFolder: "workers" (host, transforms.v2) | "device" (GPU decode)
    loader_workers: int = 8  # DataLoader workers for ImageFolder data
    checkpoint_dir: str | None = None  # ckpt.pt here; an existing one is resumed
    teacher_ckpt: str | None = None  # Sec 5.3: the teacher trial's final checkpoint
    backbone_ckpt: str | None = None  # Sec 6: the classification trial a transfer trial fine-tunes
    threads: int = 0  # torch CPU threads; 0 = the scale's setting or torch's default
    log_every: int = 100  # iterations between progress lines and divergence checks
    stop_after: int | None = None  # end after this many epochs (interruption tests, debugging)
    small_map_convs: bool = True  # CPU: convs on <=2x2 maps as matmuls (models/small_maps.py)
    keep_heap: bool = True  # CPU: glibc keeps freed blocks for reuse (harness/cpu_heap.py)
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr, flush=True))


@dataclass
class TrialResult:
    """What a trial returns; field names match the store's columns."""

    status: str  # done | failed | diverged
    top1: float | None = None
    top5: float | None = None
    epochs: int = 0
    img_per_s: float | None = None  # training images/s (augmentation included)
    epoch_s: float | None = None  # mean training seconds per epoch
    wall_s: float = 0.0
    device: str = ""
    precision: str = ""
    params: int | None = None
    dataset_fingerprint: str = ""
    checkpoint: str | None = None
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)  # transfer: map, pixacc, miou
    workers: int = 1  # data-parallel workers (DDP world size)
    global_batch: int | None = None  # images per step over all workers
    lr: float | None = None  # initial lr at this scale (after linear scaling)

    def to_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("history")
        return d


def pick_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (Sec: determinism; same seed = same first-epoch loss)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def make_schedule(recipe: Recipe, scale: Scale, iters_per_epoch: int) -> LRSchedule:
    """Map the recipe's paper-epoch schedule onto this scale's iterations, proportionally."""
    epochs = scale.epochs(recipe)
    total = epochs * iters_per_epoch
    frac = total / recipe.epochs  # iterations per paper epoch
    return LRSchedule(base_lr=scale.lr(recipe), total_iters=total,
                      warmup_iters=int(round(recipe.warmup_epochs * frac)),
                      kind=recipe.lr_schedule,
                      milestones=tuple(int(round(m * frac)) for m in recipe.step_milestones),
                      gamma=recipe.step_gamma)


def build_model(spec: TrialSpec, num_classes: int, in_chans: int, device: torch.device,
                small_map_convs: bool = True) -> tuple[torch.nn.Module, dict[str, Any]]:
    """The model with the paper's init (Sec 2.1) and zero-gamma when asked (Sec 3.1); on a
    CPU, convs on <=2x2 maps take the dense-map fast path unless ``small_map_convs`` is off."""
    kwargs = dict(spec.scale_obj.model_kwargs_for(spec.model), num_classes=num_classes,
                  in_chans=in_chans, init=spec.recipe.init)
    model = create_model(spec.model, **kwargs)
    if spec.recipe.zero_gamma:
        apply_zero_gamma(model)
    if small_map_convs and device.type == "cpu":
        use_small_map_convs(model)
    fmt = torch.channels_last if spec.recipe.channels_last else torch.contiguous_format
    model = model.to(device=device, memory_format=fmt)
    meta = {"name": spec.model, "kwargs": {k: list(v) if isinstance(v, tuple) else v
                                           for k, v in kwargs.items()}}
    return model, meta


FUSED_SGD_DEVICES = ("cuda", "cpu")


def build_optimizer(model: torch.nn.Module, recipe: Recipe,
                    device: torch.device) -> torch.optim.Optimizer:
    """NAG (Sec 2.1) over param groups that honour no-bias-decay (Sec 3.1).

    The fused kernel (one pass over all parameters) serves CUDA and CPU: on a CPU the
    per-parameter loop cost ~1.9 ms a step for a miniature ResNet-50-D, the fused one 0.3 ms,
    with the same update (tests/test_optimizer.py checks it against the formula by hand)."""
    groups = param_groups(model, recipe.weight_decay, recipe.no_bias_decay)
    fused = {"fused": True} if device.type in FUSED_SGD_DEVICES else {}
    return torch.optim.SGD(groups, lr=0.0, momentum=recipe.momentum,  # lr set per iteration
                           nesterov=recipe.optimizer == "nag", **fused)


def load_teacher(path: str, device: torch.device, small_map_convs: bool = True) -> torch.nn.Module:
    """Rebuild a teacher from its checkpoint (weights_only) in eval mode, without grads."""
    ckpt = load_checkpoint(path, map_location=device)
    meta = ckpt["model_meta"]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["kwargs"].items()}
    teacher = create_model(meta["name"], **kwargs)
    teacher.load_state_dict(ckpt["model"])
    if small_map_convs and device.type == "cpu":
        use_small_map_convs(teacher)
    teacher = teacher.to(device=device, memory_format=torch.channels_last).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@dataclass
class StepContext:
    """Everything one training step needs; built once per trial."""

    model: torch.nn.Module
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    schedule: LRSchedule
    recipe: Recipe
    precision: str
    device: torch.device
    num_classes: int
    generator: torch.Generator  # on the device: batches, augmentation
    host_generator: torch.Generator  # on the CPU: mixup's lambda/permutation without a GPU sync
    teacher: torch.nn.Module | None = None


def compute_loss(ctx: StepContext, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Targets (label smoothing Sec 5.2, mixup Sec 5.4) and loss (distillation Sec 5.3)."""
    r = ctx.recipe
    soft = r.label_smoothing > 0 or r.mixup or r.distill
    targets = smooth_targets(y, ctx.num_classes, r.label_smoothing, r.label_smoothing_form) if soft else None
    if r.mixup:
        x, targets, _ = mixup_batch(x, targets, r.mixup_alpha, ctx.host_generator)
    with autocast(ctx.precision, ctx.device.type):
        logits = ctx.model(x)
        teacher_logits = None
        if ctx.teacher is not None:
            with torch.no_grad():
                teacher_logits = ctx.teacher(x)  # the teacher sees the mixed input too
    if teacher_logits is not None:
        return distillation_loss(logits.float(), targets, teacher_logits.float(),
                                 r.distill_temperature, r.distill_form)
    if targets is not None:
        return soft_cross_entropy(logits, targets)
    return F.cross_entropy(logits.float(), y)


def train_step(ctx: StepContext, it: int, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    ctx.schedule.apply(ctx.optimizer, it)
    if ctx.recipe.channels_last and x.dim() == 4:
        x = x.contiguous(memory_format=torch.channels_last)
    loss = compute_loss(ctx, x, y)
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.scaler.scale(loss).backward()
    ctx.scaler.step(ctx.optimizer)
    ctx.scaler.update()
    return loss.detach()


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: BatchSource, precision: str,
             device: torch.device, channels_last: bool) -> tuple[float, float]:
    """Top-1 and top-5 accuracy (percent) on the test/val split."""
    model.eval()
    correct1 = torch.zeros((), device=device)
    correct5 = torch.zeros((), device=device)
    n = 0
    for x, y in batches.eval_batches():
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(precision, device.type):
            logits = model(x)
        k = min(5, logits.shape[1])
        top = logits.float().topk(k, dim=1).indices
        hit = top == y[:, None]
        correct1 += hit[:, 0].sum()
        correct5 += hit.any(dim=1).sum()
        n += len(y)
    model.train()
    return 100.0 * correct1.item() / n, 100.0 * correct5.item() / n


def unwrap(model: torch.nn.Module) -> torch.nn.Module:
    """The module under torch.compile's and DDP's wrappers (state_dict keys without prefix)."""
    while True:
        inner = getattr(model, "_orig_mod", None) or getattr(model, "module", None)
        if not isinstance(inner, torch.nn.Module):
            return model
        model = inner


def _rng_state(ctx: StepContext) -> dict[str, torch.Tensor]:
    state = {"torch": torch.get_rng_state(), "data": ctx.generator.get_state()}
    if ctx.host_generator is not ctx.generator:
        state["host"] = ctx.host_generator.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def _save(path: Path, ctx: StepContext, epoch: int, spec: TrialSpec, meta: dict,
          history: list[dict]) -> None:
    save_atomic({"model": unwrap(ctx.model).state_dict(), "optimizer": ctx.optimizer.state_dict(),
                 "scaler": ctx.scaler.state_dict(), "epoch": epoch, "spec_hash": spec.hash,
                 "rng": _rng_state(ctx), "model_meta": meta, "history": history}, path)


def _resume(path: Path, ctx: StepContext, spec: TrialSpec) -> tuple[int, list[dict]]:
    """Restore a checkpoint of this very trial; returns (epochs done, history)."""
    if not path.exists():
        return 0, []
    ckpt = load_checkpoint(path, map_location=ctx.device)
    if ckpt.get("spec_hash") != spec.hash:
        from harness.checkpoint import CheckpointError

        raise CheckpointError(f"checkpoint {path} belongs to trial {ckpt.get('spec_hash')}, "
                              f"not {spec.hash}")
    unwrap(ctx.model).load_state_dict(ckpt["model"])
    ctx.optimizer.load_state_dict(ckpt["optimizer"])
    ctx.scaler.load_state_dict(ckpt["scaler"])
    torch.set_rng_state(ckpt["rng"]["torch"].cpu())
    ctx.generator.set_state(ckpt["rng"]["data"].cpu())
    if "host" in ckpt["rng"] and ctx.host_generator is not ctx.generator:
        ctx.host_generator.set_state(ckpt["rng"]["host"].cpu())
    if "cuda" in ckpt["rng"] and torch.cuda.is_available():
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"].cpu())
    return int(ckpt["epoch"]), list(ckpt["history"])


def _train_epoch(ctx: StepContext, batches: BatchSource, epoch: int,
                 opts: TrainOptions) -> tuple[float, float]:
    """One epoch; returns (mean loss, training seconds). Loss stays on the device between
    divergence checks so the step has no host-device synchronisation."""
    ipe = batches.iters_per_epoch
    loss_sum = torch.zeros((), device=ctx.device)
    t0 = time.perf_counter()
    for i, (x, y) in enumerate(batches.train_epoch(epoch, ctx.generator)):
        loss_sum += train_step(ctx, epoch * ipe + i, x, y)
        if (i + 1) % opts.log_every == 0:
            mean = loss_sum.item() / (i + 1)
            if not math.isfinite(mean):
                return mean, time.perf_counter() - t0
            opts.log(f"  epoch {epoch + 1} it {i + 1}/{ipe} loss {mean:.4f} "
                     f"lr {ctx.optimizer.param_groups[0]['lr']:.4g}")
    if ctx.device.type == "cuda":
        torch.cuda.synchronize(ctx.device)
    return loss_sum.item() / max(1, ipe), time.perf_counter() - t0


def run_trial(spec: TrialSpec, opts: TrainOptions | None = None,
              on_epoch: Callable[[dict[str, float]], None] | None = None) -> TrialResult:
    """Train and evaluate one trial. Bad input raises HarnessError before any compute;
    a NaN/inf loss ends the trial with status 'diverged'."""
    opts = opts or TrainOptions()
    if spec.task != "classification":
        from harness.transfer import run_transfer

        return run_transfer(spec, opts, on_epoch)
    spec.recipe.validate()
    scale = spec.scale_obj
    if spec.recipe.distill and not opts.teacher_ckpt:
        from harness.errors import HarnessError

        raise HarnessError("recipe has distill=true but no teacher checkpoint was given "
                           "(--teacher PATH, or run the table so the teacher trains first)")
    t_start = time.perf_counter()
    device = pick_device(opts.device)
    threads = opts.threads or (scale.threads_per_trial if device.type == "cpu" else 0)
    if opts.keep_heap and device.type == "cpu":
        keep_freed_memory()
    if threads:
        torch.set_num_threads(threads)
    seed_everything(spec.seed)
    batches = make_batches(spec.dataset, scale, scale.batch_size(spec.recipe), device,
                           spec.seed, opts.data_root, opts.decode, opts.loader_workers)
    model, meta = build_model(spec, batches.num_classes, batches.in_chans, device,
                              opts.small_map_convs)
    precision = resolve_precision(spec.recipe.precision, device.type)
    rank, world_size = world()
    if world_size > 1:
        batches = ShardedBatches(batches, rank, world_size)
        model = data_parallel(model, device)
    if spec.recipe.compile:
        use_compile_cache()
        model = torch.compile(model, mode=spec.recipe.compile_mode)
    gen = torch.Generator(device=device).manual_seed(spec.seed)
    # on a CPU one generator serves both (results unchanged); on a GPU a host one for mixup
    host_gen = gen if device.type == "cpu" else torch.Generator().manual_seed(spec.seed + 1)
    ctx = StepContext(model=model, optimizer=build_optimizer(model, spec.recipe, device),
                      scaler=make_scaler(precision, device.type),
                      schedule=make_schedule(spec.recipe, scale, batches.iters_per_epoch),
                      recipe=spec.recipe, precision=precision, device=device,
                      num_classes=batches.num_classes, generator=gen, host_generator=host_gen,
                      teacher=load_teacher(opts.teacher_ckpt, device, opts.small_map_convs) if spec.recipe.distill else None)
    ckpt_path = Path(opts.checkpoint_dir) / "ckpt.pt" if opts.checkpoint_dir else None
    start_epoch, history = _resume(ckpt_path, ctx, spec) if ckpt_path else (0, [])
    result = TrialResult(status="done", device=provenance.device_name(device), precision=precision,
                         params=sum(p.numel() for p in unwrap(model).parameters()),
                         dataset_fingerprint=batches.fingerprint,
                         checkpoint=str(ckpt_path) if ckpt_path else None, workers=world_size,
                         global_batch=scale.batch_size(spec.recipe), lr=ctx.schedule.base_lr)
    epochs = scale.epochs(spec.recipe)
    model.train()
    for epoch in range(start_epoch, epochs):
        loss, secs = _train_epoch(ctx, batches, epoch, opts)
        if not math.isfinite(loss):
            result.status, result.error = "diverged", f"non-finite loss {loss} in epoch {epoch + 1}"
            break
        top1, top5 = evaluate(model, batches, precision, device, spec.recipe.channels_last)
        row = {"epoch": epoch + 1, "loss": loss, "lr": ctx.optimizer.param_groups[0]["lr"],
               "top1": top1, "top5": top5, "epoch_s": secs,
               "img_per_s": batches.iters_per_epoch * scale.batch_size(spec.recipe) / secs}
        history.append(row)
        opts.log(f"epoch {epoch + 1}/{epochs} loss {loss:.4f} top1 {top1:.2f} top5 {top5:.2f} "
                 f"{row['img_per_s']:.0f} img/s {secs:.1f}s")
        if ckpt_path and rank == 0:
            _save(ckpt_path, ctx, epoch + 1, spec, meta, history)
            _test_kill_hook(epoch + 1)
        if on_epoch:
            on_epoch(row)
        if opts.stop_after is not None and epoch + 1 >= opts.stop_after:
            break
    return _finish(result, history, epochs, t_start)


def _test_kill_hook(epoch: int) -> None:
    """Test hook, off unless both variables are set (tests/test_reliability.py): with
    HARNESS_TEST_KILL_AFTER_EPOCH=N and HARNESS_TEST_KILL_MARKER=PATH, the first process
    that saves epoch N's checkpoint creates PATH and SIGKILLs itself, like a crashed Ray
    worker; the retried trial finds PATH and trains on from the checkpoint."""
    after = os.environ.get("HARNESS_TEST_KILL_AFTER_EPOCH")
    marker = os.environ.get("HARNESS_TEST_KILL_MARKER")
    if not after or not marker or after.strip() != str(epoch):
        return
    try:
        fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # atomic: one kill in all
    except FileExistsError:
        return
    os.write(fd, f"pid {os.getpid()} killed after epoch {epoch}\n".encode())
    os.close(fd)
    os.kill(os.getpid(), signal.SIGKILL)


def _finish(result: TrialResult, history: list[dict], epochs: int, t_start: float) -> TrialResult:
    result.history = history
    result.epochs = len(history)
    if history:
        result.top1, result.top5 = history[-1]["top1"], history[-1]["top5"]
        secs = [h["epoch_s"] for h in history]
        imgs = sum(h["img_per_s"] * h["epoch_s"] for h in history)
        result.epoch_s = sum(secs) / len(secs)
        result.img_per_s = imgs / sum(secs)
    if result.status == "done" and len(history) < epochs:
        result.status = "failed"
        result.error = f"stopped after {len(history)} of {epochs} epochs"
    result.wall_s = time.perf_counter() - t_start
    return result
