"""The shared trainer: schedule mapping, losses, determinism, divergence, checkpoints."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from harness.checkpoint import CheckpointError, load_checkpoint, save_atomic
from harness.errors import HarnessError
from harness.recipe import named_recipe
from harness.scales import LOCAL, SMOKE
from harness.spec import TrialSpec
from harness.trainer import StepContext, TrainOptions, compute_loss, make_schedule, run_trial

QUIET = TrainOptions(log=lambda m: None)


def test_schedule_maps_paper_epochs_proportionally():
    """Local scale, 'efficient': 3 epochs; 5 of 120 warmup epochs and milestones 30/60/90 keep their
    fraction of the iterations; lr = 0.4 x batch_factor (linear scaling on the miniature batch)
    x the scale's lr_factor (2 at local, the same for every row)."""
    r = named_recipe("efficient")
    s = make_schedule(r, LOCAL, iters_per_epoch=100)
    assert s.total_iters == 300 and s.warmup_iters == round(5 * 300 / 120)
    assert s.milestones == (75, 150, 225)
    assert s.base_lr == pytest.approx(0.4 / 8 * 2)
    assert s(0) == pytest.approx(0.1 / s.warmup_iters)  # Sec 3.1: i * eta / m at i = 1
    assert s(80) == pytest.approx(0.01) and s(299) == pytest.approx(0.0001)


def test_lr_factor_keeps_the_lr_ratio_between_rows():
    """Tables 3-4 compare lr 0.1 (batch 256) with 0.4 (batch 1024): the scale's factor multiplies
    both, so their ratio stays the paper's 4 at every scale."""
    base, eff = named_recipe("baseline"), named_recipe("efficient")
    for scale in (SMOKE, LOCAL):
        assert scale.lr(eff) / scale.lr(base) == pytest.approx(4.0)
    assert LOCAL.lr(base) == pytest.approx(0.1 / 8 * LOCAL.lr_factor)


def test_plain_loss_is_cross_entropy_and_smoothing_changes_it():
    """Without soft targets the loss is F.cross_entropy; with eps=0.1 (paper form) it equals CE against
    the hand-built distribution 0.9 / (0.1/9)."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(4, 10))
    x, y = torch.randn(6, 4), torch.randint(0, 10, (6,))
    gen = torch.Generator().manual_seed(0)

    def ctx(recipe):
        return StepContext(model, None, None, None, recipe, "fp32", torch.device("cpu"), 10, gen, gen)

    plain = compute_loss(ctx(named_recipe("baseline")), x, y)
    assert plain.item() == pytest.approx(F.cross_entropy(model(x), y).item(), rel=1e-6)
    q = torch.full((6, 10), 0.1 / 9)
    q[torch.arange(6), y] = 0.9
    smooth = compute_loss(ctx(named_recipe("baseline").replace(label_smoothing=0.1)), x, y)
    ref = -(q * F.log_softmax(model(x), dim=1)).sum(1).mean()
    assert smooth.item() == pytest.approx(ref.item(), rel=1e-6)


def test_same_seed_gives_identical_metrics_on_cpu():
    """Two runs of one spec and seed give identical per-epoch loss and accuracy on CPU."""
    spec = TrialSpec("resnet18_d", named_recipe("label_smoothing").replace(mixup=True), "smoke", 3)
    a, b = run_trial(spec, QUIET), run_trial(spec, QUIET)
    assert a.status == b.status == "done"
    assert [(h["loss"], h["top1"]) for h in a.history] == [(h["loss"], h["top1"]) for h in b.history]
    c = run_trial(TrialSpec(spec.model, spec.recipe, "smoke", 4), QUIET)
    assert c.history[0]["loss"] != a.history[0]["loss"]


def test_non_finite_loss_ends_as_diverged():
    """An absurd learning rate makes the loss non-finite: status 'diverged', not a crash."""
    spec = TrialSpec("resnet18", named_recipe("baseline").replace(base_lr=1e12, weight_decay=0.0), "smoke", 0)
    res = run_trial(spec, TrainOptions(log=lambda m: None, log_every=2))
    assert res.status == "diverged" and "non-finite" in res.error


def test_distill_without_teacher_fails_before_compute():
    """distill=true with no teacher checkpoint is bad input (HarnessError), raised before training."""
    spec = TrialSpec("resnet18", named_recipe("distill"), "smoke", 0)
    with pytest.raises(HarnessError, match="teacher"):
        run_trial(spec, QUIET)


def test_distillation_runs_from_a_teacher_checkpoint(tmp_path):
    """A teacher trial's final checkpoint drives a student's distillation (Sec 5.3)."""
    teacher = TrialSpec("resnet101_d", named_recipe("label_smoothing"), "smoke", 0)
    t = run_trial(teacher, TrainOptions(log=lambda m: None, checkpoint_dir=str(tmp_path / "t")))
    student = TrialSpec("resnet18_d", named_recipe("distill"), "smoke", 0, teacher=teacher)
    s = run_trial(student, TrainOptions(log=lambda m: None, teacher_ckpt=t.checkpoint))
    assert t.status == s.status == "done" and math.isfinite(s.history[-1]["loss"])


def test_resume_continues_exactly(tmp_path):
    """Three epochs in one go equal one epoch, an interruption, then a resume from the checkpoint."""
    import dataclasses

    import harness.scales as scales

    scales.SCALES["smoke3"] = dataclasses.replace(SMOKE, name="smoke3", epoch_factor=3 / 120)
    try:
        spec = TrialSpec("resnet18", named_recipe("cosine").replace(mixup=True), "smoke3", 0)
        full = run_trial(spec, TrainOptions(log=lambda m: None, checkpoint_dir=str(tmp_path / "a")))
        part = run_trial(spec, TrainOptions(log=lambda m: None, checkpoint_dir=str(tmp_path / "b"), stop_after=1))
        assert part.status == "failed" and load_checkpoint(tmp_path / "b" / "ckpt.pt")["epoch"] == 1
        resumed = run_trial(spec, TrainOptions(log=lambda m: None, checkpoint_dir=str(tmp_path / "b")))
        assert full.status == resumed.status == "done" and len(full.history) == 3
        assert [(h["loss"], h["top1"]) for h in resumed.history] == [(h["loss"], h["top1"]) for h in full.history]
    finally:
        scales.SCALES.pop("smoke3", None)


class Payload:
    """Any class outside torch's allow-list: weights_only=True must refuse to build it."""


def test_checkpoint_refuses_pickled_objects_and_garbage(tmp_path):
    """weights_only=True loading: a pickled object and a truncated file are refused with one line."""
    bad = tmp_path / "bad.pt"
    torch.save({"model": {}, "obj": Payload()}, bad)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(bad)
    good = save_atomic({"model": {"w": torch.ones(3)}}, tmp_path / "good.pt")
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:40])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(cut)
    assert load_checkpoint(good)["model"]["w"].sum().item() == 3
