"""Transfer learning (paper Sec 6.2, Tables 8 and 9): fine-tune a classification trial's
network for object detection (Faster R-CNN) or semantic segmentation (FCN).

``run_transfer(spec, opts, on_epoch)`` is what ``harness.trainer.run_trial`` calls for a
spec whose ``task`` is ``detection`` or ``segmentation``. The backbone is the classifier
saved by the trial ``spec.backbone`` (``opts.backbone_ckpt``), rebuilt with
``harness.trainer.load_teacher``; ``random_init: true`` in the task settings builds the
same network from scratch instead (the pretrained-vs-random comparison).

Settings come from the spec's ``task_args`` (JSON of the experiment's ``transfer:``
block). Keys at the top level apply at every scale; a block named after a scale
(``smoke:``, ``local:``, ``paper:``) applies at that scale and wins. Unset keys take
``DEFAULTS`` below. Data: composed Fashion-MNIST canvases (``composed.py``) at the smoke
and local scales, Pascal VOC / ADE20K (``voc_ade.py``) at the paper scale. See
docs/transfer.md.
"""
from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Protocol

import torch
from torch import nn

from harness.errors import HarnessError

if TYPE_CHECKING:
    from harness.spec import TrialSpec
    from harness.trainer import TrainOptions, TrialResult

TASKS = ("detection", "segmentation")
MAIN_METRIC = {"detection": "map", "segmentation": "miou"}

# Per task and scale. Local budgets: one fine-tune ~30-60 s on one CPU thread (docs/transfer.md).
_COMMON = {"momentum": 0.9, "weight_decay": 1e-4, "warmup_iters": 50, "random_init": False,
           "data_seed": 0, "eval_every": 0, "max_items": 3, "root": None}
DEFAULTS: dict[str, dict[str, dict[str, Any]]] = {
    "detection": {
        "smoke": _COMMON | {"dataset": "composed", "canvas": 48, "train": 64, "test": 32,
                            "epochs": 1, "batch_size": 8, "lr": 0.02, "fpn_channels": 16},
        "local": _COMMON | {"dataset": "composed", "canvas": 64, "train": 1000, "test": 500,
                            "epochs": 4, "batch_size": 16, "lr": 0.02, "fpn_channels": 32},
        "paper": _COMMON | {"dataset": "voc", "epochs": 20, "batch_size": 8, "lr": 0.01,
                            "warmup_iters": 500, "fpn_channels": 256, "min_size": 600,
                            "max_size": 1000, "workers": 8},
    },
    "segmentation": {
        "smoke": _COMMON | {"dataset": "composed", "canvas": 48, "train": 64, "test": 32,
                            "epochs": 1, "batch_size": 8, "lr": 0.02},
        "local": _COMMON | {"dataset": "composed", "canvas": 64, "train": 1000, "test": 500,
                            "epochs": 4, "batch_size": 16, "lr": 0.02},
        "paper": _COMMON | {"dataset": "ade20k", "epochs": 120, "batch_size": 16, "lr": 0.01,
                            "warmup_iters": 500, "crop": 480, "base_size": 520, "workers": 8},
    },
}
DATASETS = {"detection": ("composed", "voc"), "segmentation": ("composed", "ade20k")}


def resolve_settings(spec: "TrialSpec") -> dict[str, Any]:
    """The fine-tuning settings of a transfer spec: defaults < top level < ``<scale>:`` block."""
    if spec.task not in TASKS:
        raise HarnessError(f"unknown task {spec.task!r}; valid: {', '.join(TASKS)}")
    from harness.scales import SCALES

    defaults = DEFAULTS[spec.task].get(spec.scale) or DEFAULTS[spec.task]["local"]
    try:
        args = json.loads(spec.task_args) if spec.task_args else {}
    except json.JSONDecodeError as exc:
        raise HarnessError(f"task_args is not JSON: {exc.msg}") from None
    if not isinstance(args, dict):
        raise HarnessError(f"task_args must be a JSON object, got {type(args).__name__}")
    settings = dict(defaults)
    per_scale = args.get(spec.scale) or {}
    top = {k: v for k, v in args.items() if k not in SCALES}
    valid = sorted(set().union(*(d.keys() for d in DEFAULTS[spec.task].values())))
    blocks = [("transfer", top)] + [(f"transfer.{s}", args[s]) for s in SCALES if s in args]
    for where, block in blocks:  # every scale's block is checked, not only this scale's
        if not isinstance(block, dict):
            raise HarnessError(f"{where}: expected a mapping, got {type(block).__name__}")
        for key in block:
            if key not in valid:
                raise HarnessError(f"{where}.{key}: unknown {spec.task} setting; valid: "
                                   f"{', '.join(valid)} (or a scale block: {', '.join(SCALES)})")
    settings.update(top)
    settings.update(per_scale)
    for key in ("epochs", "batch_size", "train", "test", "canvas"):
        if key in settings and (not isinstance(settings[key], int) or settings[key] < 1):
            raise HarnessError(f"transfer.{key}: expected an integer >= 1, got {settings[key]!r}")
    if not (isinstance(settings["lr"], (int, float)) and settings["lr"] > 0):
        raise HarnessError(f"transfer.lr: expected a number > 0, got {settings['lr']!r}")
    if settings["dataset"] not in DATASETS[spec.task]:
        raise HarnessError(f"transfer.dataset: unknown {settings['dataset']!r} for {spec.task}; "
                           f"valid: {', '.join(DATASETS[spec.task])}")
    if settings["dataset"] == "composed" and settings["canvas"] < 28:
        raise HarnessError(f"transfer.canvas: {settings['canvas']} is smaller than a "
                           "Fashion-MNIST item (28 px)")
    return settings


# ---- the backbone ---------------------------------------------------------------------
def first_conv_in_chans(model: nn.Module) -> int:
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return int(m.in_channels)
    raise HarnessError("backbone has no convolution")


def _check_resnet(model: nn.Module, name: str) -> None:
    if not all(hasattr(model, f"layer{i}") for i in range(1, 5)):
        raise HarnessError(f"transfer needs a ResNet backbone (stages layer1..layer4); "
                           f"{name!r} has none")


def load_backbone(spec: "TrialSpec", opts: "TrainOptions", settings: dict[str, Any],
                  device: torch.device) -> nn.Module:
    """The classifier to fine-tune: from ``opts.backbone_ckpt``, or fresh when
    ``random_init`` (same model, scale miniaturisation and init scheme as the backbone
    trial). Trainable, train mode, contiguous memory format."""
    name = spec.backbone.model if spec.backbone else spec.model
    if settings["random_init"]:
        from harness.models import create_model

        bspec = spec.backbone or spec
        kwargs = dict(bspec.scale_obj.model_kwargs_for(name), num_classes=10,
                      in_chans=1 if bspec.dataset == "fashion_mnist" else 3, init=bspec.recipe.init)
        model = create_model(name, **kwargs)
    else:
        if not opts.backbone_ckpt:
            raise HarnessError(f"{spec.task} fine-tunes a pretrained backbone but no backbone "
                               "checkpoint was given (run the table so its classification "
                               "trials train first, or set random_init: true)")
        from harness.trainer import load_teacher

        model = load_teacher(opts.backbone_ckpt, device)
    _check_resnet(model, name)
    model = model.to(device=device, memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train()


def backbone_norm(spec: "TrialSpec", data_root: str | None) -> tuple[list[float], list[float]]:
    """Mean/std (0-255 scale) the backbone's classification trial normalised with."""
    from harness.data import PAPER_MEAN, PAPER_STD

    bspec = spec.backbone or spec
    if bspec.dataset == "fashion_mnist":
        from harness.data import load_in_memory

        ds = load_in_memory("fashion_mnist", "train", data_root, subset=bspec.scale_obj.train_subset)
        return list(ds.mean), list(ds.std)
    return list(PAPER_MEAN), list(PAPER_STD)


# ---- the fine-tuning loop -------------------------------------------------------------
class TransferTask(Protocol):
    """What detection.py and segmentation.py build: a model, its data, its loss and metric."""

    model: nn.Module
    iters_per_epoch: int
    batch_size: int
    fingerprint: str

    def train_batches(self, epoch: int, generator: torch.Generator) -> Iterator[Any]: ...

    def loss(self, batch: Any) -> torch.Tensor: ...

    def evaluate(self) -> dict[str, float]: ...


def build_task(spec: "TrialSpec", backbone: nn.Module, settings: dict[str, Any],
               opts: "TrainOptions", device: torch.device) -> TransferTask:
    mean, std = backbone_norm(spec, opts.data_root if settings["dataset"] == "composed" else None)
    in_chans = first_conv_in_chans(backbone)
    if spec.task == "detection":
        from harness.transfer.detection import DetectionTask

        return DetectionTask(backbone, in_chans, mean, std, settings, spec.scale, opts.data_root, device)
    from harness.transfer.segmentation import SegmentationTask

    return SegmentationTask(backbone, in_chans, mean, std, settings, spec.scale, opts.data_root, device)


def _save(path: Path, task: TransferTask, optimizer: torch.optim.Optimizer, epoch: int,
          spec: "TrialSpec", history: list[dict], settings: dict[str, Any]) -> None:
    from harness.checkpoint import save_atomic

    save_atomic({"model": task.model.state_dict(), "optimizer": optimizer.state_dict(),
                 "epoch": epoch, "spec_hash": spec.hash, "history": history,
                 "model_meta": {"task": spec.task, "backbone": spec.model,
                                "settings": json.dumps(settings, sort_keys=True)}}, path)


def _resume(path: Path, task: TransferTask, optimizer: torch.optim.Optimizer,
            spec: "TrialSpec", device: torch.device) -> tuple[int, list[dict]]:
    from harness.checkpoint import CheckpointError, load_checkpoint

    if not path.exists():
        return 0, []
    ckpt = load_checkpoint(path, map_location=device)
    if ckpt.get("spec_hash") != spec.hash:
        raise CheckpointError(f"checkpoint {path} belongs to trial {ckpt.get('spec_hash')}, "
                              f"not {spec.hash}")
    task.model.load_state_dict(ckpt["model"])
    optimizer.load_state_dict(ckpt["optimizer"])
    return int(ckpt["epoch"]), list(ckpt["history"])


def run_transfer(spec: "TrialSpec", opts: "TrainOptions | None" = None,
                 on_epoch: Callable[[dict[str, float]], None] | None = None) -> "TrialResult":
    """Fine-tune and evaluate one transfer trial (fp32, seeded). Bad settings or a missing
    backbone raise HarnessError before any compute; a NaN/inf loss ends it as 'diverged'."""
    from harness import provenance
    from harness.trainer import TrainOptions, TrialResult, _finish, pick_device, seed_everything
    from tricks.lr_schedule import LRSchedule

    opts = opts or TrainOptions()
    settings = resolve_settings(spec)
    if not settings["random_init"] and not opts.backbone_ckpt:
        load_backbone(spec, opts, settings, torch.device("cpu"))  # raises the one-line error
    t_start = time.perf_counter()
    device = pick_device(opts.device)
    threads = opts.threads or (spec.scale_obj.threads_per_trial if device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)
    seed_everything(spec.seed)
    backbone = load_backbone(spec, opts, settings, device)
    task = build_task(spec, backbone, settings, opts, device)
    task.model.to(device)
    params = [p for p in task.model.parameters() if p.requires_grad]
    optimizer = torch.optim.SGD(params, lr=settings["lr"], momentum=settings["momentum"],
                                weight_decay=settings["weight_decay"])
    epochs = int(settings["epochs"])
    total = epochs * task.iters_per_epoch
    schedule = LRSchedule(base_lr=float(settings["lr"]), total_iters=total,
                          warmup_iters=min(int(settings["warmup_iters"]), total // 2), kind="cosine")
    ckpt_path = Path(opts.checkpoint_dir) / "ckpt.pt" if opts.checkpoint_dir else None
    start, history = _resume(ckpt_path, task, optimizer, spec, device) if ckpt_path else (0, [])
    result = TrialResult(status="done", device=provenance.device_name(device), precision="fp32",
                         params=sum(p.numel() for p in task.model.parameters()),
                         dataset_fingerprint=task.fingerprint,
                         checkpoint=str(ckpt_path) if ckpt_path else None)
    main = MAIN_METRIC[spec.task]
    metrics: dict[str, float] = {}
    every = int(settings["eval_every"])
    for epoch in range(start, epochs):
        torch.manual_seed(spec.seed * 100_003 + epoch)  # dropout etc.: same per epoch on resume
        gen = torch.Generator().manual_seed(spec.seed * 100_003 + epoch)
        task.model.train()
        loss_sum, n_it = 0.0, 0
        t0 = time.perf_counter()
        for i, batch in enumerate(task.train_batches(epoch, gen)):
            lr = schedule.apply(optimizer, epoch * task.iters_per_epoch + i)
            loss = task.loss(batch)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += float(loss.detach())
            n_it += 1
            if not math.isfinite(loss_sum):
                break
            if (i + 1) % opts.log_every == 0:
                opts.log(f"  epoch {epoch + 1} it {i + 1}/{task.iters_per_epoch} "
                         f"loss {loss_sum / n_it:.4f} lr {lr:.4g}")
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        secs = time.perf_counter() - t0
        mean_loss = loss_sum / max(1, n_it)
        if not math.isfinite(mean_loss):
            result.status, result.error = "diverged", f"non-finite loss {mean_loss} in epoch {epoch + 1}"
            break
        evaluated = epoch + 1 == epochs or (every > 0 and (epoch + 1) % every == 0)
        if evaluated:
            metrics = task.evaluate()
        row = {"epoch": epoch + 1, "loss": mean_loss, "lr": optimizer.param_groups[0]["lr"],
               "top1": metrics.get(main) if evaluated else None, "top5": None,
               "img_per_s": n_it * task.batch_size / secs, "epoch_s": secs}
        history.append(row)
        shown = " ".join(f"{k} {v:.2f}" for k, v in metrics.items()) if evaluated else ""
        opts.log(f"{spec.task} epoch {epoch + 1}/{epochs} loss {mean_loss:.4f} {shown} "
                 f"{row['img_per_s']:.0f} img/s {secs:.1f}s")
        if ckpt_path:
            _save(ckpt_path, task, optimizer, epoch + 1, spec, history, settings)
        if on_epoch:
            on_epoch(row)
    if result.status == "done" and not metrics and history:
        metrics = task.evaluate()  # resumed after the last epoch: evaluate the saved model
    result = _finish(result, history, epochs, t_start)
    result.top1 = result.top5 = None  # transfer metrics live in result.metrics
    result.metrics = metrics
    return result


__all__ = ["DEFAULTS", "MAIN_METRIC", "TASKS", "load_backbone", "resolve_settings", "run_transfer"]
