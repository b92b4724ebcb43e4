"""What every trial shares, whatever its task: how it is run (``TrainOptions``), what it
returns (``TrialResult``), its device and threads, seeding, and loading a classifier's
checkpoint (a distillation teacher, Sec 5.3; a transfer backbone, Sec 6).

Needs only torch and torchvision (no Ray): ``python -m harness train`` runs on a bare GPU box.
"""
from __future__ import annotations

import random
import sys
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

import numpy as np
import torch

from harness.checkpoint import load_checkpoint
from harness.models import create_model
from harness.models.small_maps import use_small_map_convs

EpochHook = Callable[[dict[str, Any]], None]


@dataclass
class TrainOptions:
    """How (not what) to train: device, paths, threads, kernels. Changes no maths (the CPU
    small-map convs change float rounding only)."""

    device: str | None = None  # None: cuda when present, else cpu
    data_root: str | None = None
    decode: str = "workers"  # ImageFolder: "workers" (host, transforms.v2) | "device" (GPU decode)
    loader_workers: int | None = None  # ImageFolder DataLoader workers; None: one per core left
    tf32: bool = False  # CUDA: TF32 fp32 matmuls/convs (off = the paper's FP32); recorded as "tf32"
    checkpoint_dir: str | None = None  # ckpt.pt here; an existing one is resumed
    teacher_ckpt: str | None = None  # Sec 5.3: the teacher trial's final checkpoint
    backbone_ckpt: str | None = None  # Sec 6: the classification trial a transfer trial fine-tunes
    threads: int = 0  # torch CPU threads; 0 = the scale's setting or torch's default
    log_every: int = 100  # iterations between progress lines and divergence checks
    stop_after: int | None = None  # end after this many epochs (interruption tests, debugging)
    small_map_convs: bool = True  # CPU: convs on <=2x2 maps as matmuls (models/small_maps.py)
    keep_heap: bool = True  # CPU: glibc keeps freed blocks for reuse (harness/cpu_heap.py)
    after_checkpoint: EpochHook | None = None  # called in the trial's process after each saved epoch
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr, flush=True))


# options that say where things are, not how to train: they travel beside the options
PATH_FIELDS = ("checkpoint_dir", "teacher_ckpt", "backbone_ckpt")


@dataclass
class TrialResult:
    """What a trial returns; field names are the store's column names (``store.TrialRecord``),
    and every number of a task beyond top-1/top-5 lives in ``metrics``."""

    status: str  # done | failed | diverged
    top1: float | None = None
    top5: float | None = None
    epochs: int = 0
    train_img_per_s: float | None = None  # training images/s (augmentation included)
    epoch_s: float | None = None  # mean training seconds per epoch
    wall_s: float = 0.0
    device: str = ""
    precision: str = ""
    params: int | None = None
    dataset_fingerprint: str = ""
    checkpoint: str | None = None
    error: str | None = None
    history: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, Any] = field(default_factory=dict)  # transfer: map, pixacc, miou; Fig 4 gaps
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


def set_threads(opts: TrainOptions, scale_threads: int, device: torch.device) -> None:
    """torch's CPU threads: the options' count, else the scale's on a CPU, else torch's own."""
    threads = opts.threads or (scale_threads if device.type == "cpu" else 0)
    if threads:
        torch.set_num_threads(threads)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch (Sec: determinism; same seed = same first-epoch loss)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def load_classifier(path: str, device: torch.device, small_map_convs: bool = True) -> torch.nn.Module:
    """Rebuild a classification trial's network from its checkpoint (weights_only), in eval
    mode and channels_last, without grads: a teacher (Sec 5.3) or a backbone (Sec 6)."""
    ckpt = load_checkpoint(path, map_location=device)
    meta = ckpt["model_meta"]
    kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in meta["kwargs"].items()}
    model = create_model(meta["name"], **kwargs)
    model.load_state_dict(ckpt["model"])
    if small_map_convs and device.type == "cpu":
        use_small_map_convs(model)
    model = model.to(device=device, memory_format=torch.channels_last).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model
