"""pytest-benchmark suite: the trainer's training step vs a plain PyTorch loop.

Times ``harness.trainer.train_step`` with a StepContext built the way ``run_trial`` builds
one, on a fixed miniature ResNet-50-D (width x1/4, one block per stage, 1 input channel,
10 classes) and a fixed random batch of 128x1x28x28, next to a plain PyTorch step on the
same model (SGD with Nesterov momentum, ``F.cross_entropy``) so the harness's overhead can
be read as the ratio of the two means. No wall-clock assertions: regressions are caught by
comparing with a saved run.

  pytest bench/ --benchmark-save=base                          # once, on the reference commit
  pytest bench/ --benchmark-compare --benchmark-compare-fail=mean:10%

Not collected by the default ``pytest`` run (pyproject: testpaths = ["tests"]).
Environment: BENCH_THREADS (torch CPU threads, default 1, like the local scale's trials),
BENCH_ROUNDS (timed steps per benchmark, default 30), BENCH_DEVICE (default: cuda if present).
"""
from __future__ import annotations

import os

import pytest

pytest.importorskip("pytest_benchmark")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from harness.models import create_model  # noqa: E402
from harness.recipe import named_recipe  # noqa: E402
from harness.scales import get_scale  # noqa: E402
from harness.trainer import (StepContext, build_optimizer, make_schedule, pick_device,  # noqa: E402
                             seed_everything, train_step)
from tricks.mixed_precision import make_scaler, resolve_precision  # noqa: E402
from tricks.zero_gamma import apply_zero_gamma  # noqa: E402

BATCH, CHANNELS, SIZE, CLASSES = 128, 1, 28, 10
MODEL = "resnet50_d"
MODEL_KWARGS = {"num_classes": CLASSES, "in_chans": CHANNELS, "width_mult": 0.25, "blocks": (1, 1, 1, 1)}
ITERS_PER_EPOCH = 100  # only shapes the lr schedule; the step's cost does not depend on it
ROUNDS = int(os.environ.get("BENCH_ROUNDS", "30"))
WARMUP = 3


@pytest.fixture(scope="module")
def device() -> torch.device:
    return pick_device(os.environ.get("BENCH_DEVICE") or None)


@pytest.fixture(scope="module", autouse=True)
def threads():
    """Fix torch's CPU threads for stable numbers; restored afterwards."""
    before = torch.get_num_threads()
    n = int(os.environ.get("BENCH_THREADS", "1"))
    torch.set_num_threads(n)
    yield n
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def batch(device):
    """One fixed random batch (seeded), already on the device."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(BATCH, CHANNELS, SIZE, SIZE, generator=g)
    y = torch.randint(0, CLASSES, (BATCH,), generator=g)
    return x.to(device), y.to(device)


def _model(recipe, device: torch.device) -> torch.nn.Module:
    """The miniature, built like trainer.build_model (init, zero-gamma, memory format)."""
    seed_everything(0)
    model = create_model(MODEL, init=recipe.init, **MODEL_KWARGS)
    if recipe.zero_gamma:
        apply_zero_gamma(model)
    fmt = torch.channels_last if recipe.channels_last else torch.contiguous_format
    return model.to(device=device, memory_format=fmt).train()


def _context(recipe_name: str, device: torch.device) -> StepContext:
    """A StepContext assembled exactly as run_trial assembles one (no teacher)."""
    recipe = named_recipe(recipe_name)
    model = _model(recipe, device)
    precision = resolve_precision(recipe.precision, device.type)
    return StepContext(model=model, optimizer=build_optimizer(model, recipe, device),
                       scaler=make_scaler(precision, device.type),
                       schedule=make_schedule(recipe, get_scale("local"), ITERS_PER_EPOCH),
                       recipe=recipe, precision=precision, device=device, num_classes=CLASSES,
                       generator=torch.Generator(device=device).manual_seed(0),
                      host_generator=torch.Generator().manual_seed(1))


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _info(benchmark, device, threads, **extra) -> None:
    benchmark.extra_info.update({"device": str(device), "threads": threads, "batch": BATCH,
                                 "model": MODEL, "images_per_step": BATCH, **extra})


@pytest.mark.benchmark(group="train_step")
@pytest.mark.parametrize("recipe_name", ["baseline", "efficient"])
def test_harness_train_step(benchmark, recipe_name, device, batch, threads):
    """harness.trainer.train_step: schedule, autocast, targets, loss, scaler, optimizer."""
    ctx = _context(recipe_name, device)
    x, y = batch
    it = iter(range(10**9))

    def step():
        loss = train_step(ctx, next(it), x, y)
        _sync(device)
        return loss

    _info(benchmark, device, threads, recipe=recipe_name, precision=ctx.precision)
    loss = benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
    assert torch.isfinite(loss).item()


@pytest.mark.benchmark(group="train_step")
def test_plain_pytorch_step(benchmark, device, batch, threads):
    """The reference: the same model (baseline recipe) in a textbook PyTorch step."""
    recipe = named_recipe("baseline")
    model = _model(recipe, device)
    opt = torch.optim.SGD(model.parameters(), lr=recipe.lr, momentum=recipe.momentum,
                          nesterov=True, weight_decay=recipe.weight_decay)
    x, y = batch
    if recipe.channels_last:
        x = x.contiguous(memory_format=torch.channels_last)

    def step():
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        _sync(device)
        return loss.detach()

    _info(benchmark, device, threads, recipe="plain", precision="fp32")
    loss = benchmark.pedantic(step, rounds=ROUNDS, iterations=1, warmup_rounds=WARMUP)
    assert torch.isfinite(loss).item()
