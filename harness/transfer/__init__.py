"""Transfer learning (paper Sec 6.2, Tables 8 and 9): fine-tune a classification trial's
network for object detection (Faster R-CNN) or semantic segmentation (FCN).

``FineTune(spec, opts)`` is the task ``harness.tasks`` builds for a spec whose ``task`` is
``detection`` or ``segmentation``; ``harness.fit.fit`` trains it like any trial. The
backbone is the classifier saved by the trial ``spec.backbone`` (``opts.backbone_ckpt``),
rebuilt with ``harness.trial.load_classifier``; ``random_init: true`` in the task settings builds the
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
from typing import TYPE_CHECKING, Any, Iterator, Protocol

import torch
from torch import nn

from harness import provenance
from harness.data import PAPER_MEAN, PAPER_STD, load_in_memory
from harness.errors import HarnessError
from harness.metrics import MAIN_METRIC
from harness.models import create_model
from harness.scales import SCALES
from harness.applied import backbone_facts, optimizer_facts, schedule_facts
from harness.transfer.detection import DetectionTask
from harness.transfer.segmentation import SegmentationTask
from harness.trial import (TrainOptions, TrialResult, load_classifier, pick_device, seed_everything,
                           set_threads)
from tricks.lr_schedule import LRSchedule
from tricks.mixed_precision import set_tf32

if TYPE_CHECKING:
    from harness.spec import TrialSpec

TASKS = ("detection", "segmentation")

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
        bspec = spec.backbone or spec
        kwargs = dict(bspec.scale_obj.model_kwargs_for(name), num_classes=10,
                      in_chans=1 if bspec.dataset == "fashion_mnist" else 3, init=bspec.recipe.init)
        model = create_model(name, **kwargs)
    else:
        if not opts.backbone_ckpt:
            raise HarnessError(f"{spec.task} fine-tunes a pretrained backbone but no backbone "
                               "checkpoint was given (run the table so its classification "
                               "trials train first, or set random_init: true)")
        model = load_classifier(opts.backbone_ckpt, device)
    _check_resnet(model, name)
    model = model.to(device=device, memory_format=torch.contiguous_format)
    for p in model.parameters():
        p.requires_grad_(True)
    return model.train()


def backbone_norm(spec: "TrialSpec", data_root: str | None) -> tuple[list[float], list[float]]:
    """Mean/std (0-255 scale) the backbone's classification trial normalised with."""
    bspec = spec.backbone or spec
    if bspec.dataset == "fashion_mnist":
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
        return DetectionTask(backbone, in_chans, mean, std, settings, spec.scale, opts.data_root, device)
    return SegmentationTask(backbone, in_chans, mean, std, settings, spec.scale, opts.data_root, device)


class FineTune:
    """A transfer trial (fp32, seeded) for ``harness.fit.fit``: a detection or segmentation
    task on a pretrained (or fresh) backbone, SGD with warmup + cosine over all its
    parameters, the task's own metric after the last epoch (or every ``eval_every``)."""

    rank = 0

    def __init__(self, spec: "TrialSpec", opts: "TrainOptions") -> None:
        settings = resolve_settings(spec)
        if not settings["random_init"] and not opts.backbone_ckpt:
            load_backbone(spec, opts, settings, torch.device("cpu"))  # raises the one-line error
        self.spec, self.settings = spec, settings
        self.name, self.log_prefix = spec.task, f"{spec.task} "
        self.device = device = pick_device(opts.device)
        set_threads(opts, spec.scale_obj.threads_per_trial, device)
        if device.type == "cuda":  # as classification: cuDNN's fastest kernels, TF32 as chosen
            torch.backends.cudnn.benchmark = True
            set_tf32(opts.tf32)
        seed_everything(spec.seed)
        backbone = load_backbone(spec, opts, settings, device)
        facts = backbone_facts(backbone)  # what ran: the checkpoint it starts from
        self.task = task = build_task(spec, backbone, settings, opts, device)
        task.model.to(device)
        params = [p for p in task.model.parameters() if p.requires_grad]
        self.optimizer = torch.optim.SGD(params, lr=settings["lr"], momentum=settings["momentum"],
                                         weight_decay=settings["weight_decay"])
        self.epochs = int(settings["epochs"])
        self.iters_per_epoch, self.batch_size = task.iters_per_epoch, task.batch_size
        total = self.epochs * task.iters_per_epoch
        self.schedule = LRSchedule(base_lr=float(settings["lr"]), total_iters=total,
                                   warmup_iters=min(int(settings["warmup_iters"]), total // 2),
                                   kind="cosine")
        self.applied = {**facts, **optimizer_facts(self.optimizer), **schedule_facts(self.schedule)}
        self.metrics: dict[str, float] = {}

    def result(self) -> "TrialResult":
        return TrialResult(status="done", device=provenance.device_name(self.device),
                           precision="fp32",
                           params=sum(p.numel() for p in self.task.model.parameters()),
                           dataset_fingerprint=self.task.fingerprint)

    def train_batches(self, epoch: int) -> Iterator[Any]:
        torch.manual_seed(self.spec.seed * 100_003 + epoch)  # dropout etc.: same per epoch on resume
        gen = torch.Generator().manual_seed(self.spec.seed * 100_003 + epoch)
        self.task.model.train()
        return self.task.train_batches(epoch, gen)

    def step(self, it: int, batch: Any) -> torch.Tensor:
        self.schedule.apply(self.optimizer, it)
        loss = self.task.loss(batch)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return loss.detach()

    def lr(self) -> float:
        return self.optimizer.param_groups[0]["lr"]

    def evaluate(self, epoch: int) -> dict[str, float | None]:
        """The task's metric after the last epoch (and every ``eval_every``); the epoch row's
        top1 column holds the main one (mAP, mIoU), as the store's epoch rows always have."""
        every = int(self.settings["eval_every"])
        if not (epoch + 1 == self.epochs or (every > 0 and (epoch + 1) % every == 0)):
            return {"top1": None, "top5": None}
        self.metrics = self.task.evaluate()
        return {"top1": self.metrics.get(MAIN_METRIC[self.spec.task]), "top5": None}

    def finish(self, result: "TrialResult") -> None:
        if result.status in ("done", "failed") and not self.metrics and result.history:
            self.metrics = self.task.evaluate()  # resumed after the last epoch: the saved model
        result.top1 = result.top5 = None  # transfer metrics live in result.metrics
        result.metrics = {**self.metrics, "applied": dict(self.applied)}  # applied: harness.applied

    def state_dict(self) -> dict[str, Any]:
        return {"model": self.task.model.state_dict(), "optimizer": self.optimizer.state_dict(),
                "model_meta": {"task": self.spec.task, "backbone": self.spec.model,
                               "settings": json.dumps(self.settings, sort_keys=True)}}

    def load_state_dict(self, ckpt: dict[str, Any]) -> None:
        self.task.model.load_state_dict(ckpt["model"])
        self.optimizer.load_state_dict(ckpt["optimizer"])


__all__ = ["DEFAULTS", "TASKS", "FineTune", "load_backbone", "resolve_settings"]
