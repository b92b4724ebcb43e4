"""Every trick, in the paper's order: the one list named recipes, ``Recipe.tricks()``, trick
grids and reports derive from.

Adding a trick: a module ``tricks/<name>.py`` that declares ``TRICK = Trick(...)``, its
test in ``tests/test_tricks.py``, and its line in :data:`TRICKS`.
"""
from __future__ import annotations

from typing import Any, Iterable

from tricks import (cosine, distillation, label_smoothing, linear_scaling, mixed_precision, mixup,
                    no_bias_decay, warmup, zero_gamma)
from tricks.trick import Trick

__all__ = ["BY_NAME", "GRID_TRICKS", "TRICKS", "Trick", "recipe_changes", "tricks_on"]

# Sec 3 (efficient training), then Sec 5's refinements; Recipe.tricks() lists them in this order.
TRICKS: tuple[Trick, ...] = (
    linear_scaling.TRICK,
    warmup.TRICK,
    zero_gamma.TRICK,
    no_bias_decay.TRICK,
    mixed_precision.TRICK,
    cosine.TRICK,
    label_smoothing.TRICK,
    mixup.TRICK,
    distillation.TRICK,
)
BY_NAME: dict[str, Trick] = {t.name: t for t in TRICKS}
# The tricks a grid can switch on and off by a recipe change alone, in the paper's order.
GRID_TRICKS: dict[str, Trick] = {t.name: t for t in TRICKS if not t.no_grid}


def recipe_changes(names: Iterable[str]) -> dict[str, Any]:
    """The Recipe field changes (from the Sec 2.1 baseline) that switch on the tricks ``names``."""
    out: dict[str, Any] = {}
    for name in names:
        out.update(BY_NAME[name].recipe)
    return out


def tricks_on(recipe: Any) -> list[str]:
    """Names of the tricks ``recipe`` switches on, in the order of :data:`TRICKS`."""
    return [t.name for t in TRICKS if t.is_on(recipe)]
