"""Data path: training images/s from JPEG files vs in-memory images, and vs plain PyTorch.

    python bench/data_bench.py                  # GPU: ResNet-50 (B layout), 224 px, FP16, batch 256
    python bench/data_bench.py --tiny           # a CPU check of the same code, tiny sizes

Writes a local ImageFolder of JPEGs (ImageNet-like 375x500 and 500x375; a few distinct
images under many names, so thousands of files take seconds), then trains two epochs of
each and reports the second epoch's images/s (the first pays worker start-up, cuDNN
autotuning and the allocator's growth):

* ``in-memory``: the shared trainer (``run_trial``) on synthetic uint8 images resident on the
  device, batched augmentation: the ceiling;
* ``jpeg/workers``: the trainer, DataLoader workers decode + crop (uint8), the rest of Sec 2.1
  batched on the device (``--decode workers``);
* ``jpeg/device``: the trainer, workers read bytes, batched nvJPEG decode and crops on the
  device (``--decode device``);
* ``plain``: torchvision's ``ImageFolder`` + ``DataLoader`` + transforms.v2 (RandomResizedCrop,
  flip, normalise) + torchvision ``resnet50`` in an autocast fp16 + channels_last loop.

Each row is printed as soon as it is measured (one JSON line): a failure loses only its own
row. The figure of merit is each row's images/s over the in-memory row's (goal: >= 0.90).
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.functional as F
import torchvision
from torchvision.transforms import v2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import bench_scale, device_default, emit, fair_backends, gpu_name, make_jpegs  # noqa: E402

from harness.data import PAPER_MEAN, PAPER_STD  # noqa: E402
from harness.data.imagefolder import default_workers  # noqa: E402
from harness.recipe import named_recipe  # noqa: E402
from harness.spec import TrialSpec  # noqa: E402
from harness.trainer import TrainOptions, run_trial  # noqa: E402

TINY_BLOCKS = (1, 1, 1, 1)


def trial_img_s(data: str, decode: str, size: int, batch: int, train: int, workers: int | None,
                tiny: bool, device: torch.device, precision: str = "fp16") -> float:
    """Second-epoch images/s of the shared trainer on ``data`` (a folder or 'synthetic')."""
    kwargs = {"resnet": {"blocks": TINY_BLOCKS}} if tiny else {}
    scale = bench_scale("bench_data", size, train=train or None, test=batch, batch=batch, epochs=2, model_kwargs=kwargs,
                        dataset="synthetic" if data == "synthetic" else "imagefolder")
    recipe = named_recipe("efficient").replace(batch_size=256, base_lr=0.01, precision=precision)
    res = run_trial(TrialSpec("resnet50_b", recipe, scale, 0, data=data),
                    TrainOptions(device=str(device), decode=decode, loader_workers=workers, log=lambda m: None))
    if res.status != "done":
        raise RuntimeError(f"{data} {decode}: {res.status} {res.error}")
    return float(res.history[1]["img_per_s"])


def plain_img_s(root: Path, size: int, batch: int, workers: int, tiny: bool, device: torch.device,
                precision: str = "fp16") -> float:
    """Second-epoch images/s of a hand-written torchvision ImageFolder training loop."""
    tf = v2.Compose([v2.ToImage(), v2.RandomResizedCrop(size, antialias=True), v2.RandomHorizontalFlip(),
                     v2.ToDtype(torch.float32, scale=True),
                     v2.Normalize([m / 255 for m in PAPER_MEAN], [s / 255 for s in PAPER_STD])])
    ds = torchvision.datasets.ImageFolder(str(root / "train"), transform=tf)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=workers,
                                         pin_memory=device.type == "cuda", drop_last=True)
    if tiny:
        from torchvision.models.resnet import Bottleneck, ResNet

        model = ResNet(Bottleneck, list(TINY_BLOCKS))
    else:
        model = torchvision.models.resnet50()
    model = model.to(device, memory_format=torch.channels_last).train()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")
    rate = 0.0
    for _ in range(2):
        t0, seen = time.perf_counter(), 0
        for x, y in loader:
            x = x.to(device, non_blocking=True).contiguous(memory_format=torch.channels_last)
            y = y.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
                loss = F.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            seen += len(y)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        rate = seen / (time.perf_counter() - t0)
    return rate


def run(size: int, batch: int, steps: int, mem_steps: int, workers: int | None, hw: tuple[int, int],
        tiny: bool, out: Path | None, precision: str = "fp16") -> list[dict]:
    device = device_default()
    fair_backends(device)
    card = gpu_name()
    w = workers or default_workers()
    rows: list[dict] = []
    base: dict[str, float] = {}

    def row(source: str, img_s: float) -> None:
        ref = base.get("in-memory")
        rows.append(emit({"stage": "data", "figure": f"data {source}", "card": card, "source": source,
                          "img_s": round(img_s, 1), "ref": "in-memory" if ref else None,
                          "ratio": round(img_s / ref, 3) if ref else None,
                          "target": 0.9 if source.startswith("jpeg") else None, "precision": precision,
                          "size": size, "batch": batch,
                          "workers": w, "files": batch * steps}, out))

    with tempfile.TemporaryDirectory(dir=out) as tmp:
        t0 = time.perf_counter()
        root = make_jpegs(Path(tmp) / "jpegs", batch * steps, max(batch, 8), classes=8, hw=hw)
        print(f"# {batch * steps} JPEG files in {time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
        base["in-memory"] = trial_img_s("synthetic", "workers", size, batch, batch * mem_steps, w, tiny, device,
                                        precision)
        row("in-memory", base["in-memory"])
        for decode in ("workers", "device"):
            try:
                row(f"jpeg/{decode}", trial_img_s(str(root), decode, size, batch, 0, w, tiny, device, precision))
            except Exception as exc:  # one failing path must not lose the others' rows
                emit({"stage": "data", "figure": f"data jpeg/{decode}", "card": card, "error": repr(exc)[:300],
                      "ok": False}, out)
        row("plain torchvision loop", plain_img_s(root, size, batch, w, tiny, device, precision))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tiny", action="store_true", help="tiny sizes on any device: checks the script")
    ap.add_argument("--steps", type=int, default=None, help="steps per epoch on the JPEGs (default 40; tiny 3)")
    ap.add_argument("--mem-steps", type=int, default=None, help="steps per epoch in memory (default 12; tiny 3)")
    ap.add_argument("--batch", type=int, default=None, help="default 256; tiny 4")
    ap.add_argument("--workers", type=int, default=None, help="DataLoader workers (default: one per core left)")
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--out", type=Path, default=None, help="append rows to OUT/gpu.json and OUT/gpu.md")
    a = ap.parse_args()
    if a.tiny:
        size, batch, steps, mem, hw = 32, a.batch or 4, a.steps or 3, a.mem_steps or 3, (40, 48)
    else:
        size, batch, steps, mem, hw = 224, a.batch or 256, a.steps or 40, a.mem_steps or 12, (375, 500)
    run(size, batch, steps, mem, a.workers, hw, a.tiny, a.out, a.precision)


if __name__ == "__main__":
    main()
