"""Trainer step throughput vs a plain torchvision AMP loop, measured in the same process.

    python bench/step_bench.py                      # GPU: 224 px, batch 256, ResNet-50 and -50-D
    python bench/step_bench.py --size 64 --batch 32 --steps 5   # a CPU smoke of the same code

The figure of merit is the ratio harness / plain for the same model, precision and batch
(issue: 'Performance'). Needs only torch + torchvision, so it runs where Ray is absent.
"""
from __future__ import annotations

import argparse
import json
import time
from typing import Callable

import torch
import torch.nn.functional as F
import torchvision

from harness.models import create_model
from harness.recipe import named_recipe
from harness.scales import PAPER
from harness.trainer import StepContext, build_optimizer, make_schedule, train_step
from tricks.mixed_precision import make_scaler, resolve_precision


def _time(step: Callable[[], None], steps: int, device: torch.device) -> float:
    """Seconds per step after warm-up (3 steps), synchronising only around the timed loop."""
    for _ in range(3):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return (time.perf_counter() - t0) / steps


def plain_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str,
               device: torch.device) -> Callable[[], None]:
    """The reference: torchvision model, SGD nesterov, autocast + GradScaler, channels_last."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16" and device.type == "cuda")
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def harness_step(name: str, x: torch.Tensor, y: torch.Tensor, precision: str,
                 device: torch.device, compile_: bool) -> Callable[[], None]:
    """The shared trainer's step with the 'efficient' recipe (warmup, zero-gamma, no-wd, fp16)."""
    recipe = named_recipe("efficient").replace(precision=precision)
    model = create_model(name, num_classes=1000).to(device, memory_format=torch.channels_last)
    if compile_:
        model = torch.compile(model)
    prec = resolve_precision(precision, device.type)
    ctx = StepContext(model=model, optimizer=build_optimizer(model, recipe, device),
                      scaler=make_scaler(prec, device.type), schedule=make_schedule(recipe, PAPER, 1000),
                      recipe=recipe, precision=prec, device=device, num_classes=1000,
                      generator=torch.Generator(device=device).manual_seed(0),
                      host_generator=torch.Generator().manual_seed(1))
    it = iter(range(10**9))
    return lambda: train_step(ctx, next(it), x, y)


def run(size: int, batch: int, steps: int, precision: str, compile_modes: list[bool]) -> list[dict]:
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.backends.cudnn.benchmark = True
    x = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), device=device)
    rows = []
    for name, tv in (("resnet50", "resnet50"), ("resnet50_d", None)):
        for comp in compile_modes:
            base = None
            if tv:
                ref = getattr(torchvision.models, tv)().to(device, memory_format=torch.channels_last)
                base = batch / _time(plain_step(torch.compile(ref) if comp else ref, x, y, precision, device),
                                     steps, device)
            ours = batch / _time(harness_step(name, x, y, precision, device, comp), steps, device)
            rows.append({"model": name, "compile": comp, "precision": precision, "size": size,
                         "batch": batch, "harness_img_s": round(ours, 1),
                         "plain_img_s": round(base, 1) if base else None,
                         "ratio": round(ours / base, 3) if base else None})
            print(json.dumps(rows[-1]), flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=224)
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--compile", choices=("off", "on", "both"), default="both")
    a = ap.parse_args()
    modes = {"off": [False], "on": [True], "both": [False, True]}[a.compile]
    run(a.size, a.batch, a.steps, a.precision, modes)


if __name__ == "__main__":
    main()
