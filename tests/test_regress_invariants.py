"""What a trial applied (harness.applied) and the gate's invariant checks
(harness.regress.invariants): a trick that breaks without a measurable top-1 change (weight
decay on every parameter, unnormalised inputs) fails the night. References: torchvision's
own ``zero_init_residual`` flag, parameter counts by name, the cosine formula summed with
numpy, hand-made baseline entries."""
from __future__ import annotations

import copy
import dataclasses
import math

import numpy as np
import pytest
import torch
import torchvision

from harness.experiments import load_experiment, make_plan
from harness.recipe import named_recipe
from harness.regress import THRESHOLDS, evaluate
from harness.regress.invariants import invariant_check
from harness.scales import get_scale
from harness.spec import TrialSpec
from harness.applied import input_facts, optimizer_facts, schedule_facts, zero_gamma_facts
from harness.trainer import TrainOptions, run_trial
from test_regress import DEVICE, TORCH
from tricks.lr_schedule import LRSchedule
from tricks.no_bias_decay import param_groups


def _by_name_1d(model: torch.nn.Module) -> int:
    """Values of biases and BN gamma/beta, picked by name (not by shape)."""
    return sum(p.numel() for n, p in model.named_parameters()
               if n.endswith(".bias") or (".bn" in n or "downsample.1" in n or n.startswith("bn")))


def test_optimizer_facts_count_what_no_bias_decay_leaves_decayed():
    model = torchvision.models.resnet18(num_classes=10)
    flat = _by_name_1d(model)
    kernels = sum(p.numel() for p in model.parameters()) - flat
    on = torch.optim.SGD(param_groups(model, 1e-4, True), lr=0.1)
    off = torch.optim.SGD(param_groups(model, 1e-4, False), lr=0.1)
    assert optimizer_facts(on) == {"decayed_1d": 0, "undecayed_nd": 0}
    assert optimizer_facts(off) == {"decayed_1d": flat, "undecayed_nd": 0}
    none = torch.optim.SGD(param_groups(model, 0.0, True), lr=0.1)
    assert optimizer_facts(none) == {"decayed_1d": 0, "undecayed_nd": kernels}


def test_zero_gamma_facts_match_torchvisions_zero_init_residual():
    plain = torchvision.models.resnet18(zero_init_residual=False)
    zeroed = torchvision.models.resnet18(zero_init_residual=True)
    blocks = sum(1 for m in zeroed.modules() if isinstance(m, torchvision.models.resnet.BasicBlock))
    assert zero_gamma_facts(plain) == {"zero_gamma_bns": 0}
    assert zero_gamma_facts(zeroed) == {"zero_gamma_bns": blocks} and blocks == 8


def test_schedule_facts_mean_lr_is_the_formula_summed():
    t = np.arange(1000)
    cos = LRSchedule(0.4, 1000, 0, "cosine")
    assert math.isclose(schedule_facts(cos)["lr_mean"], float(np.mean(0.2 * (1 + np.cos(np.pi * t / 1000)))),
                        rel_tol=1e-12)
    step = LRSchedule(0.4, 1000, 100, "step", (300, 600, 900))
    ref = np.where(t < 100, 0.4 * (t + 1) / 100, 0.4 * 0.1 ** ((t >= 300).astype(int) + (t >= 600) + (t >= 900)))
    assert math.isclose(schedule_facts(step)["lr_mean"], float(ref.mean()), rel_tol=1e-12)


def test_input_facts_are_the_sample_mean_and_std():
    """Against numpy on the same values (mean, and the SD with ddof=1)."""
    x = torch.randn(8, 3, 5, 5, generator=torch.Generator().manual_seed(0)) * 3 + 1
    ref = x.numpy().astype(np.float64).ravel()
    f = input_facts(x)
    assert f["input_mean"] == pytest.approx(float(np.mean(ref)), abs=1e-5)
    assert f["input_std"] == pytest.approx(float(np.std(ref, ddof=1)), rel=1e-5)


def test_a_smoke_trial_stores_what_it_applied():
    """The efficient recipe (no bias decay, zero-gamma) against the baseline (neither)."""
    got = {}
    recipes = {"efficient": named_recipe("efficient"), "baseline": named_recipe("baseline"),
               "smoothed": dataclasses.replace(named_recipe("efficient"), label_smoothing=0.1)}
    for name, recipe in recipes.items():
        res = run_trial(TrialSpec("resnet18", recipe, "smoke", 0), TrainOptions(threads=1, log=lambda m: None))
        assert res.status == "done"
        got[name] = res.metrics["applied"]
    assert got["efficient"]["target_max"] == 1.0
    assert got["smoothed"]["target_max"] == pytest.approx(0.9, abs=1e-6)  # paper form: 1 - eps
    eff, base = got["efficient"], got["baseline"]
    assert eff["decayed_1d"] == 0 and base["decayed_1d"] > 0
    assert eff["zero_gamma_bns"] > 0 and base["zero_gamma_bns"] == 0
    assert eff["lr_mean"] > 0 and eff["lr_mean"] != base["lr_mean"]
    assert 0.5 < eff["input_std"] < 1.5 and abs(eff["input_mean"]) < 0.5  # normalised inputs


# ---- the gate's check ----------------------------------------------------------------------
FACTS = {"decayed_1d": 0, "undecayed_nd": 0, "zero_gamma_bns": 16, "lr_mean": 0.05}


def _trials(seeds, **change) -> list[dict]:
    return [{"seed": s, "status": "done", "top1": 85.0 + 0.1 * s, "img_per_s": 1000.0,
             "device": DEVICE, "precision": "fp32", "torch_version": TORCH,
             "applied": {**FACTS, "input_mean": 0.01 * s, "input_std": 1.0 + 0.01 * s, **change}}
            for s in seeds]


def test_invariant_check_passes_what_is_unchanged_and_fails_each_change():
    ok = invariant_check("Efficient", "R", _trials([0, 1]), _trials([0, 1]))
    assert ok.drop.drop == 0 and ok.base == 6
    wd = invariant_check("Efficient", "R", _trials([0, 1]), _trials([0, 1], decayed_1d=9000))
    assert wd.drop.drop == 1 and "decayed_1d changed (seed 0: 0 -> 9000" in wd.note
    norm = invariant_check("Efficient", "R", _trials([0, 1]), _trials([0, 1], input_std=88.0))
    assert norm.drop.drop == 1 and "input_std" in norm.note
    small = invariant_check("Efficient", "R", _trials([0]), _trials([0], input_std=1.01))
    assert small.drop.drop == 0  # a float difference between machines, within 0.02


def test_a_seed_the_baseline_lacks_compares_counts_not_its_batch():
    chk = invariant_check("E", "R", _trials([0, 1]), _trials([5], input_mean=0.7))
    assert chk.drop.drop == 0 and "input_mean" not in chk.note  # another seed: another batch
    chk = invariant_check("E", "R", _trials([0, 1]), _trials([5], zero_gamma_bns=0))
    assert chk.drop.drop == 1 and "zero_gamma_bns" in chk.note


def test_a_baseline_without_facts_is_not_compared():
    old = [{k: v for k, v in t.items() if k != "applied"} for t in _trials([0, 1])]
    assert invariant_check("E", "R", old, _trials([0, 1])) is None


@pytest.mark.parametrize("scale", ["smoke", "local"])
def test_a_changed_fact_fails_the_night_at_every_scale(scale):
    base_cells = {("Efficient", "R"): _trials([0, 1]), ("+ cosine", "R"): _trials([0, 1])}
    baseline = {"cells": [{"row": r, "column": c, "seeds": [0, 1], "trials": ts}
                          for (r, c), ts in base_cells.items()]}
    same = evaluate(baseline, copy.deepcopy(base_cells), THRESHOLDS[scale],
                    parents={"+ cosine": "Efficient"})
    assert not same.failing and sum(c.kind == "invariant" for c in same.checks) == 2
    bug = copy.deepcopy(base_cells)
    for t in bug[("+ cosine", "R")]:
        t["applied"]["decayed_1d"] = 9000
    ev = evaluate(baseline, bug, THRESHOLDS[scale], parents={"+ cosine": "Efficient"})
    failed = [c for c in ev.checks if c.failed]
    assert ev.failing and [(c.kind, c.name) for c in failed] == [("invariant", "+ cosine / R")]


def test_target_tally_matches_the_smoothing_formula_and_mixups_blend():
    """One-hot: 1; label smoothing eps over K classes: 1 - eps on the true class, eps/(K-1)
    elsewhere (Sec 5.2, the paper's form); a blend of two smoothed one-hots with lambda:
    lambda x that plus (1 - lambda) x the floor where the labels differ; the tally is the
    mean over steps, and a checkpoint's state carries it over."""
    from tricks.label_smoothing import smooth_targets
    from harness.applied import TargetTally

    y = torch.tensor([0, 3, 3, 7])
    t = smooth_targets(y, 10, 0.1)
    lam = 0.7
    mixed = lam * t + (1 - lam) * t[[1, 0, 2, 3]]  # rows 0/1 mix different labels
    hi, lo = 1 - 0.1, 0.1 / 9
    blend = (2 * (lam * hi + (1 - lam) * lo) + 2 * hi) / 4
    tally = TargetTally()
    assert tally.value() == {}
    tally.add(None)
    tally.add(t)
    resumed = TargetTally()
    resumed.load(tally.state())
    resumed.add(mixed)
    assert resumed.value()["target_max"] == pytest.approx((1.0 + hi + blend) / 3)


def test_another_machine_class_compares_counts_not_batches():
    """A GPU draws mixup's lambda from its own host generator: the same seed's first batch is
    not comparable across hardware classes, the counts are."""
    base = _trials([0, 1])
    assert invariant_check("E", "R", base, _trials([0, 1], target_max=0.6), same_class=False).drop.drop == 0
    chk = invariant_check("E", "R", base, _trials([0, 1], decayed_1d=5), same_class=False)
    assert chk.drop.drop == 1 and "input_mean" not in chk.note
    other = [dict(t, device="cuda:NVIDIA H200 | driver 570 | cuda 12.8 | cudnn 9 x1") for t in _trials([0, 1], target_max=0.6)]
    baseline = {"cells": [{"row": "E", "column": "R", "seeds": [0, 1], "trials": base}]}
    ev = evaluate(baseline, {("E", "R"): other}, THRESHOLDS["local"])
    inv = [c for c in ev.checks if c.kind == "invariant"]
    assert len(inv) == 1 and inv[0].outcome == "pass" and "target_max" not in inv[0].note


def test_the_same_request_resolved_to_another_precision_fails():
    """fp16 requested: the baseline ran bf16 on this hardware class, tonight fp32 (bf16
    autocast silently lost): accuracy is 'not comparable', and what ran changed."""
    base = [dict(t, requested_precision="fp16", precision="bf16") for t in _trials([0, 1])]
    now = [dict(t, requested_precision="fp16", precision="fp32") for t in _trials([0, 1])]
    baseline = {"cells": [{"row": "E", "column": "R", "seeds": [0, 1], "trials": base}]}
    ev = evaluate(baseline, {("E", "R"): now}, THRESHOLDS["local"])
    assert ev.cells[0].verdict == "not comparable"
    inv = [c for c in ev.checks if c.kind == "invariant"]
    assert ev.failing and inv[0].failed and "precision changed (bf16 -> fp32)" in inv[0].note
    same = evaluate(baseline, {("E", "R"): copy.deepcopy(base)}, THRESHOLDS["local"])
    assert not same.failing and "precision" in [c for c in same.checks if c.kind == "invariant"][0].note


def test_every_stored_trial_says_its_batch_lr_epochs_and_params():
    """record_facts: the trainer's measured facts plus the global batch, base LR, epochs and
    parameter count the store holds for every trial (old ones included); a baseline entry
    carries them and a changed batch (Sec 3.1's 1024 silently 256) fails the cell."""
    from harness.regress.baseline import record_facts, seed_entry
    from test_report import record

    spec = TrialSpec("resnet18", named_recipe("efficient"), "smoke", 0)
    old = record(spec, top1=80.0, epochs=3, params=11_689_512, extra={"global_batch": 128, "lr": 0.1})
    assert record_facts(old) == {"global_batch": 128, "base_lr": 0.1, "epochs": 3, "params": 11_689_512}
    new = record(spec, top1=80.0, epochs=3, params=11_689_512, extra={"global_batch": 32, "lr": 0.1},
                 metrics={"applied": {"decayed_1d": 0}})
    entry = seed_entry(spec, new)
    assert entry["applied"] == {"decayed_1d": 0, "global_batch": 32, "base_lr": 0.1, "epochs": 3,
                                "params": 11_689_512}
    chk = invariant_check("E", "R", [seed_entry(spec, old)], [entry])
    assert chk.drop.drop == 1 and "global_batch changed (seed 0: 128 -> 32)" in chk.note


def test_models_in_rows_pool_their_noise_per_row():
    """Table 3 keeps its models in rows: a cell's seed noise is its own model's (the residual
    SD over that row's cells, both sides, by hand with numpy), not its column's, which would
    mix a quiet ResNet-50 with a noisy MobileNet."""
    from harness.regress.gate import models_of

    plan = make_plan(load_experiment("paper_table3"), get_scale("local"), seeds=3)
    models = models_of(plan)
    assert models[("MobileNet", "Efficient")] == "MobileNet" == models[("MobileNet", "Baseline")]
    six = make_plan(load_experiment("paper_table6"), get_scale("local"), seeds=3)
    assert models_of(six)[("+ cosine decay", "MobileNet")] == "MobileNet"
    sd = {"ResNet-50": 0.1, "Inception-V3": 0.5, "MobileNet": 2.0}
    jit = {0: -1.0, 1: 0.0, 2: 1.0}
    def side(shift):
        return {key: [{"seed": s, "status": "done", "top1": 80.0 + shift + sd[key[0]] * jit[s] * (1 + (key[1] == "Baseline")),
                       "img_per_s": 1000.0, "device": DEVICE, "precision": "fp32", "torch_version": TORCH}
                      for s in range(3)] for key in plan.trials}
    base, now = side(0.0), side(-0.3)
    baseline = {"cells": [{"row": r, "column": c, "seeds": [0, 1, 2], "trials": ts} for (r, c), ts in base.items()]}
    ev = evaluate(baseline, now, THRESHOLDS["local"], models=models)
    cell = next(c for c in ev.checks if c.kind == "cell" and c.cells == (("MobileNet", "Efficient"),))
    groups = [[t["top1"] for t in side_[("MobileNet", col)]] for side_ in (base, now) for col in ("Efficient", "Baseline")]
    ss = sum(float(np.sum((np.array(g) - np.mean(g)) ** 2)) for g in groups)
    pooled = math.sqrt(ss / (12 - 4))
    assert cell.drop.se == pytest.approx(pooled * math.sqrt(1 / 3 + 1 / 3), rel=1e-9)
    assert {c.name for c in ev.checks if c.kind == "model"} == {"ResNet-50", "Inception-V3", "MobileNet"}


def test_a_fine_tunes_backbone_is_compared_only_where_runs_are_deterministic():
    """backbone_rms (harness.applied.backbone_facts): a backbone left at random init (rms
    0.05 instead of 0.08) fails; the same checkpoint read again (1e-7 apart) passes; another
    seed's backbone is not compared; nor is it where the determinism tier does not apply
    (another class, or a GPU: a retrained backbone is not bit-identical there), through
    ``evaluate`` as the gate runs it."""
    base = [dict(t, applied={**t["applied"], "backbone_rms": 0.08 + 0.001 * t["seed"]})
            for t in _trials([0, 1])]

    def now(rms, seeds=(0, 1), device=DEVICE):
        return [dict(t, device=device, applied={**t["applied"], "backbone_rms": rms + 0.001 * t["seed"]})
                for t in _trials(list(seeds))]
    chk = invariant_check("E", "R", base, now(0.05), deterministic=True)
    assert chk.drop.drop == 1 and "backbone_rms changed" in chk.note
    assert invariant_check("E", "R", base, now(0.08 + 1e-7), deterministic=True).drop.drop == 0
    assert invariant_check("E", "R", base, now(0.05, seeds=(5,)), deterministic=True).drop.drop == 0
    assert invariant_check("E", "R", base, now(0.05)).drop.drop == 0  # not deterministic
    baseline = {"cells": [{"row": "E", "column": "R", "seeds": [0, 1], "trials": base}],
                "provenance": {"versions": {"torch_version": TORCH}}}

    def gate(trials):
        ev = evaluate(baseline, {("E", "R"): trials}, THRESHOLDS["local"])
        return next(c for c in ev.checks if c.kind == "invariant")
    assert gate(now(0.05)).outcome == "regression"  # CPU, one class, same torch: compared
    gpu = "cuda:NVIDIA H200 | driver 570 | cuda 12.8 | cudnn 9 x1"
    gpu_base = [dict(t, device=gpu) for t in base]
    baseline["cells"][0]["trials"] = gpu_base
    assert gate(now(0.05, device=gpu)).outcome == "pass"  # a GPU night: not compared
