"""Recipes, scales and the paper tables' plans against the paper's hyper-parameters."""
from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from harness.errors import HarnessError
from harness.experiments import load_experiment, make_plan, paper_tables
from harness.recipe import NAMED_RECIPES, Recipe, named_recipe
from harness.scales import PAPER, get_scale
from harness.spec import TrialSpec

PAPER_DATA = yaml.safe_load((Path(__file__).parents[1] / "harness" / "paper_data.yaml").read_text())
HP = PAPER_DATA["hyperparameters"]
SHARED = Path(__file__).resolve().parents[2] / "shared" / "paper" / "bag_of_tricks.yaml"


def test_baseline_defaults_are_section_2_1():
    """Recipe() equals the paper's baseline: NAG, momentum 0.9, wd 1e-4, batch 256, lr 0.1, 120 ep, step 30/60/90, FP32."""
    r, b = Recipe(), HP["baseline"]
    assert (r.optimizer, r.momentum, r.weight_decay) == (b["optimizer"], b["momentum"], b["weight_decay"])
    assert (r.batch_size, r.lr, r.epochs) == (b["batch_size"], b["lr"], b["epochs"])
    assert list(r.step_milestones) == b["step_milestones"] and r.step_gamma == b["step_gamma"]
    assert r.precision == "fp32" and r.init == "xavier_uniform"


def test_efficient_recipe_is_section_3():
    """'efficient' = BS 1024, lr 0.4 by linear scaling, 5 warmup epochs, zero-gamma, no bias decay, FP16."""
    r, e = named_recipe("efficient"), HP["efficient"]
    assert r.batch_size == e["batch_size"] and r.lr == pytest.approx(e["lr"])
    assert r.warmup_epochs == e["warmup_epochs"] and r.zero_gamma and r.no_bias_decay
    assert r.precision == e["precision"]


@pytest.mark.skipif(not SHARED.exists(), reason="shared paper data not present")
def test_project_paper_data_matches_shared_record():
    """Every number of Tables 2-9 in the project's data file equals the shared paper record."""
    shared = yaml.safe_load(SHARED.read_text())["tables"]
    for key, table in PAPER_DATA["tables"].items():
        assert [dict(r) for r in table["rows"]] == [
            {c: r.get(c) for c in shared[key]["columns"]} for r in shared[key]["rows"]], key


def test_every_paper_scale_recipe_matches_the_paper():
    """At the paper scale every trial of Tables 2-7 uses the paper's batch, lr, epochs, schedule,
    warmup, eps, alpha, T and input size."""
    ref = HP["refinements"]
    for name in paper_tables():
        exp = load_experiment(name)
        plan = make_plan(exp, PAPER, data="/imagenet" if exp.requires_imagefolder else None)
        for t in plan.all_trials():
            r = t.recipe
            assert PAPER.batch_size(r) == r.batch_size in (256, 1024)
            assert PAPER.lr(r) == pytest.approx(0.1 * r.batch_size / 256 if r.linear_scaling else 0.1)
            assert PAPER.epochs(r) == (ref["mixup_epochs"] if r.mixup else HP["baseline"]["epochs"])
            assert r.warmup_epochs in (0, HP["efficient"]["warmup_epochs"])
            assert r.label_smoothing in (0, ref["label_smoothing_eps"])
            assert r.mixup_alpha == ref["mixup_alpha"] and r.distill_temperature == ref["distill_temperature"]
            assert list(r.step_milestones) == HP["baseline"]["step_milestones"]
    assert PAPER.image_size == HP["baseline"]["input_size"] and PAPER.eval_resize == HP["baseline"]["eval_resize"]
    assert PAPER.min_crop_area == HP["baseline"]["crop_area"][0] and PAPER.teacher_model == ref["teacher"]


def test_table6_rows_follow_the_paper():
    """Table 6: rows 1-3 stack; the last three add to '+ label smoothing'; mixup rows train 200 epochs;
    distillation rows have a teacher trained with cosine + smoothing (+ mixup for the last row)."""
    plan = make_plan(load_experiment("paper_table6"), PAPER)
    r = {row: plan.trials[(row, "ResNet-50-D")][0] for row, _ in plan.trials}
    assert r["+ cosine decay"].recipe.lr_schedule == "cosine"
    assert r["+ label smoothing"].recipe.label_smoothing == 0.1
    assert r["+ distill w/o mixup"].recipe.distill and not r["+ distill w/o mixup"].recipe.mixup
    assert r["+ mixup w/o distill"].recipe.mixup and r["+ mixup w/o distill"].recipe.epochs == 200
    assert r["+ mixup w/o distill"].teacher is None
    t1, t2 = r["+ distill w/o mixup"].teacher, r["+ distill w/ mixup"].teacher
    assert t1.model == t2.model == "resnet152_d" and t1.recipe.label_smoothing == 0.1
    assert t2.recipe.mixup and not t1.recipe.mixup
    assert len(plan.teachers) == 2
    # stages by dependency depth: teachers first in stage 1 beside every trial needing no
    # teacher; the distilled students after their teachers; nothing lost or repeated
    first, second = plan.stages()
    assert first[:2] == plan.teachers and not any(t.recipe.distill for t in first)
    assert second and all(t.recipe.distill and t.teacher in first for t in second)
    cells = [t for ts in plan.trials.values() for t in ts]
    assert sorted(t.hash for t in first + second) == sorted({t.hash for t in cells + plan.teachers})


def test_tables_share_trials_by_hash():
    """Table 4's last row at BS 1024 is Table 5's ResNet-50 row: same spec hash, so it is stored once."""
    s = get_scale("smoke")
    t4 = make_plan(load_experiment("paper_table4"), s).trials[("+ FP16", "BS=1024")]
    t5 = make_plan(load_experiment("paper_table5"), s).trials[("ResNet-50", "Efficient")]
    assert [t.hash for t in t4] == [t.hash for t in t5]


@pytest.mark.parametrize("changes", [
    {"base_lr": 0}, {"base_lr": -0.1}, {"label_smoothing": 1.0}, {"label_smoothing": -0.1},
    {"mixup_alpha": 0}, {"batch_size": 0}, {"epochs": 0}, {"warmup_epochs": 200},
    {"precision": "fp8"}, {"lr_schedule": "linear"},
])
def test_bad_recipe_values_are_refused(changes):
    """Out-of-range or unknown values fail validation, naming the key."""
    with pytest.raises(HarnessError, match=next(iter(changes))):
        Recipe().replace(**changes).validate()


def test_unknown_key_and_wrong_type_are_refused():
    """Unknown recipe keys and uncoercible types are errors that name the key."""
    with pytest.raises(HarnessError, match="nonsense"):
        Recipe().replace(nonsense=1)
    with pytest.raises(HarnessError, match="batch_size"):
        Recipe().replace(batch_size="many")
    with pytest.raises(HarnessError, match="zero_gamma"):
        Recipe().replace(zero_gamma="maybe")


def test_spec_hash_is_stable_and_ignores_labels_and_speed_knobs():
    """Equal trials hash equally whatever their table labels or channels_last/compile settings."""
    a = TrialSpec("resnet50_d", named_recipe("cosine"), "local", 0, table="x", row="y")
    b = TrialSpec("resnet50_d", named_recipe("cosine").replace(channels_last=False, compile=True,
                                                                  compile_mode="reduce-overhead"), "local", 0)
    c = TrialSpec("resnet50_d", named_recipe("cosine"), "local", 1)
    assert a.hash == b.hash != c.hash
    assert len({TrialSpec("resnet50", r, "smoke", 0).hash for r in NAMED_RECIPES.values()}) == len(NAMED_RECIPES)


def test_compile_mode_is_validated_with_its_choices():
    with pytest.raises(HarnessError, match="compile_mode 'graphs'.*reduce-overhead"):
        Recipe(compile_mode="graphs").validate()
