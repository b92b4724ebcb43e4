"""Trainer throughput vs a plain PyTorch AMP + channels_last loop, measured in the same process.

    python bench/step_bench.py                          # GPU: 224 px, batch 256, FP16, compile off and on
    python bench/step_bench.py --tiny --compile off     # a CPU check of the same code (tiny models)

Rows (one JSON line each, printed as it is measured):

* ``resnet50 step``: the harness's ``resnet50_b`` (torchvision's layout, stride on the 3x3:
  4.09 GMACs, 25.56M parameters, the same as ``torchvision.models.resnet50``) through the
  trainer's ``train_step`` (``efficient`` recipe: fp16, fused NAG, no-bias-decay groups,
  per-iteration lr), vs torchvision's ``resnet50`` in a plain loop (autocast fp16 +
  GradScaler, channels_last, ``torch.optim.SGD`` nesterov), both on one fixed batch;
* ``resnet50_d step``: the harness's ``resnet50_d`` through ``train_step`` vs the same plain
  loop on the same harness model;
* ``resnet50 trainer loop``: ``run_trial`` itself (the trainer's real loop: in-memory uint8
  data on the device, Sec 2.1 batched augmentation, the step, the loss kept on the device)
  on synthetic 224 px images, the second epoch's images/s, vs the plain torchvision loop
  (eager: the compiled trainer's target is 1.15x the eager plain loop).

``--tiny`` (a check of the script on a CPU): one block per stage at 32 px, and the loop row
trains the `smoke` ResNet-18 instead.

The figure of merit is the ratio to the plain loop (same model, precision and batch). Needs
only torch + torchvision, so it runs where Ray is absent.
"""
from __future__ import annotations

import argparse
import dataclasses
import gc
import sys
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
import torchvision

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import bench_scale, device_default, emit, fair_backends, gpu_name, time_steps  # noqa: E402

from harness.models import create_model  # noqa: E402
from harness.recipe import named_recipe  # noqa: E402
import harness.scales as scales  # noqa: E402
from harness.scales import PAPER, SMOKE  # noqa: E402
from harness.spec import TrialSpec  # noqa: E402
from harness.trainer import (StepContext, TrainOptions, build_optimizer, make_schedule,  # noqa: E402
                             run_trial, train_step)
from tricks.mixed_precision import guard_skipped_first_step, make_scaler, resolve_precision  # noqa: E402
from tricks.zero_gamma import apply_zero_gamma  # noqa: E402

TINY_BLOCKS = (1, 1, 1, 1)  # --tiny: one bottleneck per stage (a CPU check, not a measurement)


def plain_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str,
               device: torch.device) -> Callable[[], None]:
    """The reference: SGD nesterov (torch's default foreach kernel), autocast + GradScaler,
    channels_last model and batch."""
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def step() -> None:
        with torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return step


def harness_model(name: str, blocks: tuple[int, ...] | None, device: torch.device) -> torch.nn.Module:
    """A harness model built as ``build_model`` builds it for the ``efficient`` recipe."""
    kwargs = {"blocks": blocks} if blocks else {}
    model = create_model(name, num_classes=1000, **kwargs)
    apply_zero_gamma(model)
    return model.to(device, memory_format=torch.channels_last).train()


def torchvision_resnet50(blocks: tuple[int, ...] | None) -> torch.nn.Module:
    if not blocks:
        return torchvision.models.resnet50()
    from torchvision.models.resnet import Bottleneck, ResNet

    return ResNet(Bottleneck, list(blocks))


def harness_step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, precision: str,
                 device: torch.device) -> Callable[[], None]:
    """The shared trainer's step (``train_step``) with the 'efficient' recipe."""
    recipe = named_recipe("efficient").replace(precision=precision)
    prec = resolve_precision(precision, device.type)
    optimizer = build_optimizer(model, recipe, device)
    scaler = make_scaler(prec, device.type)
    if scaler.is_enabled():  # as ClassificationTask does
        guard_skipped_first_step(optimizer)
    ctx = StepContext(model=model, optimizer=optimizer, scaler=scaler, schedule=make_schedule(recipe, PAPER, 1000),
                      recipe=recipe, precision=prec, device=device, num_classes=1000,
                      generator=torch.Generator(device=device).manual_seed(0),
                      host_generator=torch.Generator().manual_seed(1))
    it = iter(range(10**9))
    return lambda: train_step(ctx, next(it), x, y)


def trainer_loop(model: str, size: int, batch: int, steps_per_epoch: int, precision: str,
                 compile_: bool, compile_mode: str, tiny: bool, device: torch.device) -> tuple[str, float]:
    """(model, images/s of the second epoch) of ``run_trial`` on in-memory synthetic images.
    ``tiny``: the `smoke` trial ``python -m harness train --model resnet18 --recipe efficient``
    (the suite's --cpu-check compiles that one first, so the compile here hits the cache)."""
    if tiny:
        scale = dataclasses.replace(SMOKE, name="bench_steps_tiny", epoch_factor=2 / 120, min_epochs=2)
        scales.SCALES[scale.name] = scale
        model, recipe, name = "resnet18", named_recipe("efficient"), scale.name
    else:
        name = bench_scale("bench_steps", size, train=batch * steps_per_epoch, test=batch, batch=batch,
                           epochs=2, dataset="synthetic")
        # a small lr: random images at a full-size lr can diverge, and a diverged trial stops early
        recipe = named_recipe("efficient").replace(batch_size=256, base_lr=0.01, precision=precision)
    recipe = recipe.replace(compile=compile_, compile_mode=compile_mode)
    res = run_trial(TrialSpec(model, recipe, name, 0, data="synthetic"),
                    TrainOptions(device=str(device), log=lambda m: None))
    if res.status != "done":
        raise RuntimeError(f"trainer loop: {res.status} {res.error}")
    return model, float(res.history[1]["img_per_s"])


def _free() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def run(size: int, batch: int, steps: int, warmup: int, precision: str, compile_: bool,
        tiny: bool, out: Path | None, loop_steps: int, figures: tuple[str, ...],
        compile_mode: str = "default") -> list[dict]:
    """Measure ``figures`` (resnet50, resnet50_d, loop) in that order, printing each row as it
    comes. Compile on: the trainer loop is compared with the plain loop *eager* (the target
    is 1.15x), the steps with the plain loop compiled."""
    device = device_default()
    fair_backends(device)
    blocks = TINY_BLOCKS if tiny else None
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g).to(device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (batch,), generator=g).to(device)
    card = gpu_name()
    rows: list[dict] = []
    plain_cache: dict[tuple[str, bool], float] = {}

    def row(figure: str, model: str, ours: float, ref: float, ref_name: str, target: float | None) -> None:
        rows.append(emit({"stage": "compile" if compile_ else "steps", "figure": figure + (" (compiled)" if compile_ else ""),
                          "card": card, "model": model, "compile": compile_, "precision": precision,
                          "size": size, "batch": batch, "img_s": round(ours, 1), "ref": ref_name,
                          "ref_img_s": round(ref, 1), "ratio": round(ours / ref, 3), "target": target},
                         out))

    def plain(name: str, compiled: bool) -> float:
        if (name, compiled) not in plain_cache:
            model = torchvision_resnet50(blocks) if name == "torchvision" else harness_model(name, blocks, device)
            model = model.to(device, memory_format=torch.channels_last).train()
            m = torch.compile(model, mode=compile_mode) if compiled else model
            plain_cache[name, compiled] = batch / time_steps(plain_step(m, x, y, precision, device), steps, warmup, device)
            _free()
        return plain_cache[name, compiled]

    def ours(name: str) -> float:
        model = harness_model(name, blocks, device)
        m = torch.compile(model, mode=compile_mode) if compile_ else model
        rate = batch / time_steps(harness_step(m, x, y, precision, device), steps, warmup, device)
        _free()
        return rate

    suffix = " compiled" if compile_ else ""
    for fig in figures:
        if fig == "resnet50":
            ref = plain("torchvision", compile_)
            row("resnet50 step", "resnet50_b", ours("resnet50_b"), ref, f"torchvision resnet50 plain loop{suffix}",
                None)
        elif fig == "resnet50_d":
            ref = plain("resnet50_d", compile_)
            row("resnet50_d step", "resnet50_d", ours("resnet50_d"), ref, f"plain loop{suffix}, same model",
                None if compile_ else 0.95)
        elif fig == "loop":
            ref = plain("torchvision", False)
            model, rate = trainer_loop("resnet50_b", size, batch, loop_steps, precision, compile_, compile_mode,
                                       tiny, device)
            _free()
            row("resnet50 trainer loop", model, rate, ref, "torchvision resnet50 plain loop eager",
                1.15 if compile_ else 1.0)
        else:
            raise SystemExit(f"unknown figure {fig!r}; valid: resnet50, resnet50_d, loop")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--size", type=int, default=None, help="pixels (default 224; --tiny 32)")
    ap.add_argument("--batch", type=int, default=None, help="images per step (default 256; --tiny 4)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps (default 30; --tiny 2)")
    ap.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 10; --tiny 1)")
    ap.add_argument("--loop-steps", type=int, default=None,
                    help="trainer loop: steps per epoch, two epochs (default 12; --tiny 3)")
    ap.add_argument("--precision", default="fp16")
    ap.add_argument("--compile", choices=("off", "on", "both"), default="both")
    ap.add_argument("--compile-mode", default="default", help="torch.compile mode for every compiled row")
    ap.add_argument("--figures", default=None,
                    help="comma-separated, in order: resnet50, resnet50_d, loop (default: all; compile on: loop,resnet50)")
    ap.add_argument("--tiny", action="store_true", help="one block per stage, tiny sizes: checks the script")
    ap.add_argument("--out", type=Path, default=None, help="append rows to OUT/gpu.json and OUT/gpu.md")
    a = ap.parse_args()
    d = dict(size=32, batch=4, steps=2, warmup=1, loop=3) if a.tiny else dict(size=224, batch=256, steps=30,
                                                                              warmup=10, loop=12)
    for comp in {"off": [False], "on": [True], "both": [False, True]}[a.compile]:
        figures = tuple(a.figures.split(",")) if a.figures else (("loop", "resnet50") if comp else
                                                                 ("resnet50", "resnet50_d", "loop"))
        run(a.size or d["size"], a.batch or d["batch"], a.steps or d["steps"], a.warmup or d["warmup"],
            a.precision, comp, a.tiny, a.out, a.loop_steps or d["loop"], figures, a.compile_mode)


if __name__ == "__main__":
    main()
