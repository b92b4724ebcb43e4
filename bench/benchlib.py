"""Shared pieces of the benchmark scripts: timing, bench-only scales, rows, JPEG folders.

Needs only torch and torchvision (plus numpy and PIL, which torchvision brings), so every
script that uses it runs on a bare GPU box from the repository root (``PYTHONPATH=.``).
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.append(str(REPO))

import harness.scales as scales  # noqa: E402


def device_default() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_steps(step: Callable[[], Any], steps: int, warmup: int, device: torch.device) -> float:
    """Seconds per step after ``warmup`` steps, synchronising only around the timed loop."""
    for _ in range(warmup):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return (time.perf_counter() - t0) / steps


def fair_backends(device: torch.device) -> None:
    """The same backend settings for every row: cuDNN autotuning on, TF32 off (what the
    trainer sets; fp16 autocast runs the convolutions in fp16 either way)."""
    from tricks.mixed_precision import set_tf32

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        set_tf32(False)


def bench_scale(name: str, image_size: int, train: int, test: int, batch: int, epochs: int,
                model_kwargs: dict | None = None, base: scales.Scale = scales.PAPER,
                dataset: str | None = None) -> str:
    """Register a bench-only scale (paper settings; ``train`` images, ``epochs`` epochs of
    a 120-epoch recipe, batch ``batch`` for a 256 recipe batch) and return its name."""
    scale = dataclasses.replace(
        base, name=name, image_size=image_size, eval_resize=max(image_size, round(image_size * 256 / 224)),
        batch_factor=batch / 256, epoch_factor=epochs / 120, min_epochs=epochs, train_subset=train,
        test_subset=test, model_kwargs=model_kwargs if model_kwargs is not None else base.model_kwargs,
        dataset=dataset or base.dataset, threads_per_trial=0)
    scales.SCALES[name] = scale
    return name


def gpu_name() -> str:
    if torch.cuda.is_available():
        return torch.cuda.get_device_name()
    import platform

    return f"cpu {platform.processor() or platform.machine()} x{torch.get_num_threads()}"


def emit(row: dict[str, Any], out: Path | None = None) -> dict[str, Any]:
    """Print a row as it comes (one JSON line on stdout) and, with ``out``, append it to
    ``out/gpu.json`` (JSON lines) and ``out/gpu.md`` (a markdown line)."""
    line = json.dumps(row, default=str)
    print(line, flush=True)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        with open(out / "gpu.json", "a") as fh:
            fh.write(line + "\n")
        with open(out / "gpu.md", "a") as fh:
            fh.write("| " + " | ".join(f"{k}={_fmt(v)}" for k, v in row.items()) + " |\n")
    return row


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def make_jpegs(root: Path, n_train: int, n_val: int, classes: int, hw: tuple[int, int],
               distinct: int = 32, seed: int = 0) -> Path:
    """An ImageFolder of JPEGs (root/train/c*/, root/val/c*/): ``distinct`` different images
    (smooth colour fields plus noise, size ``hw``, some portrait) written under many names, so
    making thousands of files takes seconds; decoding costs what it costs per file."""
    import numpy as np
    from PIL import Image
    import io

    rng = np.random.default_rng(seed)
    blobs = []
    for k in range(distinct):
        h, w = hw if k % 4 else hw[::-1]
        yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
        a, b = rng.uniform(0.005, 0.05, 2)
        base = np.stack([np.sin(a * xx + b * yy + c) for c in (0.0, 2.0, 4.0)], -1)
        img = (127 + 100 * base + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=90)
        blobs.append(buf.getvalue())
    for split, count in (("train", n_train), ("val", n_val)):
        for i in range(count):
            d = root / split / f"c{i % classes}"
            d.mkdir(parents=True, exist_ok=True)
            (d / f"{i}.JPEG").write_bytes(blobs[i % distinct])
    return root


def env_flag(name: str) -> bool:
    return os.environ.get(name, "") not in ("", "0")
