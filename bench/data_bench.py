"""Data path: training images/s on JPEG files vs on in-memory synthetic images, same trainer.

    python bench/data_bench.py                       # GPU: ResNet-50, 224 px, FP16, batch 256
    python bench/data_bench.py --small               # CPU check: ResNet-18, 32 px, batch 16

Writes a local ImageFolder of generated JPEGs (smooth colour fields plus noise, ImageNet-like
375x500 at full size), then trains one epoch of the shared trainer three ways:
``synthetic`` (uint8 images resident on the device, batched augmentation), ``jpeg/workers``
(DataLoader workers decode with PIL and run transforms.v2) and ``jpeg/device`` (workers read
bytes; batched decode_jpeg and augmentation on the device). The figure of merit is each JPEG
path's images/s as a fraction of the synthetic one (issue goal: >= 0.9). One JSON line per row.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import tempfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import harness.scales as scales
from harness.recipe import named_recipe
from harness.spec import TrialSpec
from harness.trainer import TrainOptions, run_trial


def make_jpegs(root: Path, n: int, classes: int, hw: tuple[int, int], seed: int = 0) -> Path:
    """``n`` JPEGs per split-class spread over ``classes`` folders of train/ and val/."""
    rng = np.random.default_rng(seed)
    h, w = hw
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    for split, count in (("train", n), ("val", max(classes, n // 8))):
        for i in range(count):
            d = root / split / f"c{i % classes}"
            d.mkdir(parents=True, exist_ok=True)
            a, b, c = rng.uniform(0.005, 0.05, 3)
            base = np.stack([np.sin(a * xx + b * yy + k) for k in (0.0, 2.0, 4.0)], -1)
            img = (127 + 100 * base + rng.normal(0, 12, (h, w, 3))).clip(0, 255).astype(np.uint8)
            Image.fromarray(img).save(d / f"{i}.JPEG", quality=90)
    return root


def bench_scale(small: bool, n: int) -> scales.Scale:
    """The paper's settings for one epoch; ``train_subset`` sizes the synthetic set like the JPEGs."""
    if small:
        return dataclasses.replace(scales.PAPER, name="databench", image_size=32, eval_resize=36,
                                   batch_factor=1 / 16, epoch_factor=1 / 120, train_subset=n, test_subset=64,
                                   model_kwargs={"resnet": {"width_mult": 0.25}})
    return dataclasses.replace(scales.PAPER, name="databench", epoch_factor=1 / 120, train_subset=n,
                               test_subset=1024)


def one_epoch(model: str, data: str, decode: str, workers: int, threads: int) -> float:
    spec = TrialSpec(model, named_recipe("efficient").replace(batch_size=256), "databench", 0, data=data)
    res = run_trial(spec, TrainOptions(decode=decode, loader_workers=workers, threads=threads,
                                       log=lambda m: None))
    if res.status != "done":
        raise SystemExit(f"{data} {decode}: {res.status} {res.error}")
    return float(res.train_img_per_s)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--small", action="store_true", help="tiny CPU-sized run (checks the script)")
    ap.add_argument("--images", type=int, default=None, help="training JPEGs (default 8192, small: 256)")
    ap.add_argument("--workers", type=int, default=8, help="DataLoader workers (default 8)")
    ap.add_argument("--threads", type=int, default=0)
    a = ap.parse_args()
    n = a.images or (256 if a.small else 8192)
    scale = bench_scale(a.small, n)
    scales.SCALES[scale.name] = scale
    model = "resnet18" if a.small else "resnet50"
    with tempfile.TemporaryDirectory() as tmp:
        root = make_jpegs(Path(tmp) / "jpegs", n, 8, (40, 48) if a.small else (375, 500))
        synth = one_epoch(model, "synthetic", "workers", a.workers, a.threads)
        rows = [{"source": "synthetic (in memory)", "img_s": round(synth), "vs_synthetic": 1.0}]
        for decode in ("workers", "device"):
            ips = one_epoch(model, str(root), decode, a.workers, a.threads)
            rows.append({"source": f"jpeg/{decode}", "img_s": round(ips), "vs_synthetic": round(ips / synth, 2)})
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"
    for r in rows:
        print(json.dumps({**r, "model": model, "image_size": scale.image_size, "images": n,
                          "workers": a.workers, "device": device}))


if __name__ == "__main__":
    main()
