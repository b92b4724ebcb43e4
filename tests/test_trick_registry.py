"""The trick registry keeps every recipe and trial as it was: literal values from main f0e31ab.

Named recipes, ``Recipe.tricks()``, the grid's trick table and the paper order were four
hand-kept copies before ``tricks/registry.py``; these snapshots pin what they held, so a
stored trial keeps its spec hash.
"""
from __future__ import annotations

import pytest

from harness.recipe import NAMED_RECIPES, Recipe
from harness.spec import TrialSpec

# Recipe().to_dict() at main f0e31ab.
BASELINE_DICT = {
    "batch_size": 256, "base_lr": 0.1, "linear_scaling": False, "optimizer": "nag", "momentum": 0.9,
    "weight_decay": 0.0001, "epochs": 120.0, "lr_schedule": "step",
    "step_milestones": [30.0, 60.0, 90.0], "step_gamma": 0.1, "warmup_epochs": 0.0,
    "zero_gamma": False, "no_bias_decay": False, "precision": "fp32", "label_smoothing": 0.0,
    "label_smoothing_form": "paper", "mixup": False, "mixup_alpha": 0.2, "distill": False,
    "distill_temperature": 20.0, "distill_form": "paper", "init": "xavier_uniform",
    "channels_last": True, "compile": False, "compile_mode": "default",
}
_SEC3 = {"batch_size": 1024, "linear_scaling": True, "warmup_epochs": 5.0, "zero_gamma": True,
         "no_bias_decay": True, "precision": "fp16"}
_LS = {**_SEC3, "lr_schedule": "cosine", "label_smoothing": 0.1}
_MIXUP = {**_LS, "epochs": 200.0, "mixup": True}
# name -> (fields that differ from BASELINE_DICT, tricks(), TrialSpec("resnet50", r, "local", 0).hash)
NAMED = {
    "baseline": ({}, [], "7b34677c505618b1"),
    "efficient": (_SEC3, ["linear_scaling", "warmup", "zero_gamma", "no_bias_decay", "fp16"],
                  "328316ceee53351d"),
    "cosine": ({**_SEC3, "lr_schedule": "cosine"},
               ["linear_scaling", "warmup", "zero_gamma", "no_bias_decay", "fp16", "cosine"],
               "fa1c0dbacb057351"),
    "label_smoothing": (_LS, ["linear_scaling", "warmup", "zero_gamma", "no_bias_decay", "fp16",
                              "cosine", "label_smoothing"], "f1562981a48312ca"),
    "distill": ({**_LS, "distill": True},
                ["linear_scaling", "warmup", "zero_gamma", "no_bias_decay", "fp16", "cosine",
                 "label_smoothing", "distill"], "45245954a3350681"),
    "mixup": (_MIXUP, ["linear_scaling", "warmup", "zero_gamma", "no_bias_decay", "fp16", "cosine",
                       "label_smoothing", "mixup"], "78a63baca07e71e7"),
    "distill_mixup": ({**_MIXUP, "distill": True},
                      ["linear_scaling", "warmup", "zero_gamma", "no_bias_decay", "fp16", "cosine",
                       "label_smoothing", "mixup", "distill"], "5ad5f27d4db68b75"),
}
# The grid's trick table (harness/experiments/designs.py TRICKS) and PAPER_ORDER at f0e31ab.
GRID_TRICKS = {
    "linear_scaling": {"batch_size": 1024, "linear_scaling": True},
    "warmup": {"warmup_epochs": 5},
    "zero_gamma": {"zero_gamma": True},
    "no_bias_decay": {"no_bias_decay": True},
    "fp16": {"precision": "fp16"},
    "cosine": {"lr_schedule": "cosine"},
    "label_smoothing": {"label_smoothing": 0.1},
    "mixup": {"mixup": True, "epochs": 200},
}
PAPER_ORDER = ("linear_scaling", "warmup", "zero_gamma", "no_bias_decay", "fp16", "cosine",
               "label_smoothing", "mixup")


def test_baseline_dict_is_unchanged():
    """Recipe's fields, defaults and to_dict output are those of main f0e31ab."""
    assert Recipe().to_dict() == BASELINE_DICT
    assert list(Recipe().to_dict()) == list(BASELINE_DICT)  # field order too


def test_named_recipes_are_unchanged():
    """Every named recipe has today's to_dict(), tricks() and spec hash, in today's order."""
    assert list(NAMED_RECIPES) == list(NAMED)
    for name, (changes, tricks, spec_hash) in NAMED.items():
        recipe = NAMED_RECIPES[name]
        assert recipe.to_dict() == {**BASELINE_DICT, **changes}, name
        assert recipe.tricks() == tricks, name
        assert TrialSpec("resnet50", recipe, "local", 0).hash == spec_hash, name


@pytest.mark.parametrize("trick", sorted(GRID_TRICKS))
def test_one_trick_on_the_baseline_is_detected_alone(trick):
    """Each grid trick's recipe change switches on that trick and no other."""
    assert Recipe().replace(**GRID_TRICKS[trick]).tricks() == [trick]


def test_registry_holds_the_grid_table_and_paper_order():
    """tricks/registry.py gives the grid exactly main's trick table, in the paper's order."""
    from harness.experiments.grid import PAPER_ORDER as GRID_ORDER
    from tricks.registry import GRID_TRICKS as REGISTRY_GRID

    assert {name: dict(t.recipe) for name, t in REGISTRY_GRID.items()} == GRID_TRICKS
    assert GRID_ORDER == PAPER_ORDER


def test_every_registered_trick_turns_on_alone():
    """Each trick's recipe change, applied to the baseline, switches on that trick only
    (its ``is_on`` agrees with its ``recipe``), distillation included."""
    from tricks.registry import TRICKS

    for trick in TRICKS:
        assert Recipe().replace(**trick.recipe).tricks() == [trick.name], trick.name


def test_every_trick_module_is_registered():
    """A ``tricks/<name>.py`` that declares ``TRICK`` has its line in ``registry.TRICKS``."""
    import importlib
    import pkgutil

    import tricks
    from tricks.registry import TRICKS

    declared = {importlib.import_module(f"tricks.{m.name}").TRICK.name
                for m in pkgutil.iter_modules(tricks.__path__)
                if hasattr(importlib.import_module(f"tricks.{m.name}"), "TRICK")}
    assert declared == {t.name for t in TRICKS}
