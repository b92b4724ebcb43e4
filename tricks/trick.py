"""What a trick module says about itself: ``TRICK = Trick(...)`` (collected in registry.py).

Plain data and a predicate over a recipe's attributes, so ``tricks/`` never imports
``harness/``: the recipe change is a mapping of ``harness.recipe.Recipe`` field names to
values, relative to the Sec 2.1 baseline.
"""
from __future__ import annotations

from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

__all__ = ["Trick"]


@dataclass(frozen=True)
class Trick:
    """One trick of the paper as recipes, grids and reports see it."""

    name: str  # as Recipe.tricks(), grids (--tricks) and reports spell it
    section: str  # the paper's section, e.g. "3.1"
    recipe: Mapping[str, Any]  # the Recipe fields that turn it on, e.g. {"warmup_epochs": 5}
    is_on: Callable[[Any], bool]  # recipe -> whether the trick is on
    no_grid: str = ""  # why a trick grid cannot toggle it ("" = it can)

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipe", MappingProxyType(dict(self.recipe)))
