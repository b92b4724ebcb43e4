"""The fp16 path (Sec 3.2: fp16 autocast, dynamic loss scaling, fp32 master weights) on a CPU.

Until a GPU runs it, this is the only place the CUDA-only code of the trainer executes:
``HARNESS_CPU_FP16=1`` keeps fp16 on a CPU (torch's CPU autocast takes float16, and
``torch.amp.GradScaler("cpu")`` scales as the CUDA one does), so ``train_step`` takes the
same branches it takes on a GPU: scaled backward, fused SGD with the scaler's
``grad_scale``/``found_inf``, skipped steps and scale back-off.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from harness.checkpoint import load_checkpoint
from harness.recipe import named_recipe
from harness.spec import TrialSpec
from harness.trainer import StepContext, TrainOptions, build_optimizer, run_trial, train_step
from tricks.lr_schedule import LRSchedule
from tricks.mixed_precision import autocast, guard_skipped_first_step, make_scaler, resolve_precision

pytestmark = pytest.mark.usefixtures("one_thread")

LR = 0.1


@pytest.fixture(autouse=True)
def cpu_fp16(monkeypatch):
    monkeypatch.setenv("HARNESS_CPU_FP16", "1")


def _ctx(scale: float | None = None, seed: int = 0) -> StepContext:
    """The trainer's step context for a small conv net on the CPU in fp16, constant lr."""
    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.BatchNorm2d(8), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(8, 10),
    ).to(memory_format=torch.channels_last)
    recipe = named_recipe("baseline").replace(precision="fp16")
    precision = resolve_precision(recipe.precision, "cpu")
    scaler = make_scaler(precision, "cpu")
    if scale is not None:
        scaler.load_state_dict({**scaler.state_dict(), "scale": scale})
    gen = torch.Generator().manual_seed(seed)
    optimizer = build_optimizer(model, recipe, torch.device("cpu"))
    guard_skipped_first_step(optimizer)  # as ClassificationTask does when the scaler is on
    return StepContext(model=model, optimizer=optimizer,
                       scaler=scaler, schedule=LRSchedule(base_lr=LR, total_iters=100),
                       recipe=recipe, precision=precision, device=torch.device("cpu"),
                       num_classes=10, generator=gen, host_generator=gen)


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(16, 3, 8, 8, generator=g), torch.randint(0, 10, (16,), generator=g)


def _params(model: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in model.parameters()]


def test_fp16_is_kept_on_a_cpu_with_loss_scaling():
    """HARNESS_CPU_FP16=1: fp16 resolves to fp16 on a CPU, autocast computes convs in
    float16, and the scaler is enabled (without it fp16 becomes bf16/fp32 and no scaler)."""
    ctx = _ctx()
    assert ctx.precision == "fp16" and ctx.scaler.is_enabled()
    with autocast(ctx.precision, "cpu"):
        assert ctx.model(_batch()[0]).dtype == torch.float16


def test_a_step_with_inf_gradients_is_skipped_and_the_scale_backs_off():
    """An inf in any gradient: the weights and the momentum state stay as they were, and the
    loss scale is halved (GradScaler's back-off 0.5), as on CUDA."""
    ctx = _ctx()
    x, y = _batch()
    train_step(ctx, 0, x, y)  # a finite first step creates the momentum buffers
    scale = ctx.scaler.get_scale()
    before = _params(ctx.model)
    bufs = [ctx.optimizer.state[p]["momentum_buffer"].clone() for p in ctx.model.parameters()]
    hook = next(ctx.model.parameters()).register_hook(lambda g: torch.full_like(g, math.inf))
    train_step(ctx, 1, x, y)
    hook.remove()
    assert all(torch.equal(a, b) for a, b in zip(before, ctx.model.parameters()))
    assert all(torch.equal(b, ctx.optimizer.state[p]["momentum_buffer"])
               for b, p in zip(bufs, ctx.model.parameters()))
    assert ctx.scaler.get_scale() == scale * 0.5


def test_a_skipped_first_step_leaves_the_next_step_exact():
    """torch's fused SGD makes its momentum buffers with empty_like on step 1 and skips the
    kernel that fills them when the scaler found an inf: without a guard the next step reads
    uninitialised memory (NaN weights). Guarded, a skipped first step changes nothing: the
    next step equals the first step of a fresh trainer, bit for bit."""
    x, y = _batch()
    skipped = _ctx()
    hook = next(skipped.model.parameters()).register_hook(lambda g: torch.full_like(g, math.inf))
    train_step(skipped, 0, x, y)
    hook.remove()
    fresh = _ctx(scale=skipped.scaler.get_scale())
    train_step(skipped, 1, x, y)
    train_step(fresh, 1, x, y)
    for a, b in zip(skipped.model.parameters(), fresh.model.parameters()):
        assert torch.isfinite(a).all() and torch.equal(a, b)


def test_the_trainer_guards_fp16_momentum_buffers():
    """ClassificationTask primes the buffers (zeros) whenever loss scaling is on."""
    from harness.tasks import build_task

    task = build_task(TrialSpec("resnet18", named_recipe("efficient"), "smoke", 0),
                      TrainOptions(threads=1, log=lambda m: None))
    assert task.ctx.scaler.is_enabled()
    bufs = [task.ctx.optimizer.state[p]["momentum_buffer"] for p in task.ctx.model.parameters()]
    assert all(b is not None and not b.any() for b in bufs)


def test_a_finite_step_is_unscaled_and_applied():
    """A finite step moves the weights by the *unscaled* gradient: the same update at loss
    scales 2^8 and 2^12 (powers of two scale fp16 exactly), and close to the fp32 step of
    the same model and batch (an update still carrying the scale would be 256x too large)."""
    x, y = _batch()
    moves = []
    for scale in (2.0 ** 8, 2.0 ** 12):
        ctx = _ctx(scale)
        before = _params(ctx.model)
        train_step(ctx, 0, x, y)
        assert ctx.scaler.get_scale() == scale  # no overflow: the scale stays
        moves.append([p.detach() - b for p, b in zip(ctx.model.parameters(), before)])
    for a, b in zip(*moves):
        assert torch.allclose(a, b, rtol=1e-3, atol=1e-7)
    ref = _ctx()
    ref_model = copy.deepcopy(ref.model)
    opt = build_optimizer(ref_model, ref.recipe, torch.device("cpu"))
    for g in opt.param_groups:
        g["lr"] = LR
    before = _params(ref_model)
    F.cross_entropy(ref_model(x), y).backward()
    opt.step()
    for move, p, b in zip(moves[0], ref_model.parameters(), before):
        exact = p.detach() - b
        assert torch.allclose(move, exact, rtol=0.05, atol=1e-4 * LR)
        assert move.abs().sum() > 0


def test_master_weights_and_optimizer_state_stay_fp32():
    """Sec 3.2: parameters keep an FP32 copy for the update; autocast only casts on the fly."""
    ctx = _ctx()
    x, y = _batch()
    for it in range(3):
        train_step(ctx, it, x, y)
    assert all(p.dtype == torch.float32 for p in ctx.model.parameters())
    assert all(s["momentum_buffer"].dtype == torch.float32 for s in ctx.optimizer.state.values())


def test_a_smoke_trial_with_fp16_forced_on_the_cpu_finishes(tmp_path):
    """The whole trial path (task, fit, checkpoint with the scaler's state) in fp16 on a CPU;
    the result records fp16."""
    spec = TrialSpec("resnet18", named_recipe("efficient"), "smoke", 0)
    res = run_trial(spec, TrainOptions(threads=1, checkpoint_dir=str(tmp_path), log=lambda m: None))
    assert res.status == "done" and res.precision == "fp16" and res.top1 is not None
    state = load_checkpoint(tmp_path / "ckpt.pt")
    assert state["scaler"]["scale"] > 0
