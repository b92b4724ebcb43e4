"""Trick grids: factorial, leave-one-out and stacking designs over the paper's tricks.

``python -m harness run grid --model M --tricks a,b,c --design factorial|loo|stack``
builds an :class:`Experiment` here. The grid is written as the same plain data an
experiment file holds and goes through :func:`parse_experiment`, so a grid and a file
are validated by one mechanism and plan to the same trials (same spec hashes).

Every trick is its recipe change from the Sec 2.1 baseline (``tricks/registry.py``):

* ``factorial``: all 2^k on/off combinations (k <= 7), the all-off row first, in
  standard (Yates) order: the first trick toggles fastest. Each row carries
  ``factors = {trick: 0|1}``; analyse with :func:`harness.analysis.designs.factorial_effects`.
* ``loo`` (leave-one-out): the row with every trick, then one row per trick with that
  trick removed (``factors`` mark it 0, the others 1).
* ``stack``: the baseline, then one row per trick, each adding to the previous row
  (like the paper's Tables 6 and 8), in the given order or the paper's.

Distillation (Sec 5.3) needs a teacher trained first, so it is not a grid trick: write an
experiment file with a ``teacher:`` row instead (docs/experiments.md).
"""
from __future__ import annotations

from itertools import product
from typing import Any, Mapping

from harness.errors import HarnessError, unknown
from harness.experiments.schema import DESIGNS, Experiment, parse_experiment
from harness.models import MODEL_NAMES, check_model
from tricks.registry import BY_NAME, GRID_TRICKS, recipe_changes

# The paper's order: Sec 3 (efficient training), then Sec 5's refinements as in Table 6.
PAPER_ORDER: tuple[str, ...] = tuple(GRID_TRICKS)
MAX_FACTORIAL_TRICKS = 7  # 2^7 = 128 rows; 2^8 would be 256 rows x seeds
BASE_RECIPE = "baseline"


def parse_tricks(tricks: str | list[str] | tuple[str, ...] | None) -> list[str]:
    """``"a,b,c"`` -> ``["a", "b", "c"]``; unknown, duplicated or teacher-needing tricks raise."""
    if tricks is None:
        return []
    if isinstance(tricks, str):
        names = [t.strip() for t in tricks.split(",")]
    else:
        names = [str(t) for t in tricks]
    if any(not n for n in names):
        raise HarnessError(f"bad --tricks {tricks!r}: empty trick name; valid choices: "
                           f"{', '.join(sorted(GRID_TRICKS))}")
    for n in names:
        if n in BY_NAME and n not in GRID_TRICKS:
            raise HarnessError(f"trick {n!r} cannot be part of a grid: it {BY_NAME[n].no_grid}; "
                               f"valid choices: {', '.join(sorted(GRID_TRICKS))}")
        if n not in GRID_TRICKS:
            raise unknown("trick", n, GRID_TRICKS)
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise HarnessError(f"duplicate trick {dup[0]!r} in --tricks {','.join(names)}; "
                           "give each trick once")
    return names


def factorial_label(factors: Mapping[str, int]) -> str:
    """``{"cosine": 1, "mixup": 0}`` -> ``"cosine=1 mixup=0"`` (the row label of a factorial)."""
    return " ".join(f"{t}={int(v)}" for t, v in factors.items())


def _factorial_rows(tricks: list[str]) -> list[dict[str, Any]]:
    rows = []
    # Standard (Yates) order: row i switches on trick j iff bit j of i is set.
    for bits in product((0, 1), repeat=len(tricks)):
        factors = dict(zip(tricks, reversed(bits)))
        on = [t for t in tricks if factors[t]]
        rows.append({"label": factorial_label(factors), "recipe": recipe_changes(on), "factors": factors})
    return rows


def _loo_rows(tricks: list[str]) -> list[dict[str, Any]]:
    rows = [{"label": "all tricks", "recipe": recipe_changes(tricks), "factors": {t: 1 for t in tricks}}]
    for t in tricks:
        rest = [u for u in tricks if u != t]
        rows.append({"label": f"without {t}", "recipe": recipe_changes(rest),
                     "factors": {u: int(u != t) for u in tricks}})
    return rows


def _stack_rows(tricks: list[str]) -> list[dict[str, Any]]:
    rows = [{"label": "baseline", "factors": {t: 0 for t in tricks}}]
    for i, t in enumerate(tricks):
        rows.append({"label": f"+ {t}", "recipe": recipe_changes([t]),
                     "factors": {u: int(j <= i) for j, u in enumerate(tricks)}})
    return rows


def grid_data(model: str | None, tricks: str | list[str] | None, design: str,
              seeds: int | None = None) -> dict[str, Any]:
    """The grid as an experiment file's content (what ``grid_experiment`` parses)."""
    if design not in DESIGNS:
        raise unknown("design", design, DESIGNS)
    if not model:
        raise HarnessError(f"run grid needs --model; valid choices: {', '.join(MODEL_NAMES)}")
    check_model(model)  # a registered model, timm:NAME or torchvision:NAME
    names = parse_tricks(tricks)
    if not names:
        if design == "factorial":
            raise HarnessError("run grid --design factorial needs --tricks (2 to "
                               f"{MAX_FACTORIAL_TRICKS} of: {', '.join(sorted(GRID_TRICKS))})")
        names = list(PAPER_ORDER)
    if design == "factorial" and len(names) > MAX_FACTORIAL_TRICKS:
        raise HarnessError(f"bad --tricks: {len(names)} tricks make 2^{len(names)} = "
                           f"{2 ** len(names)} rows; valid: at most {MAX_FACTORIAL_TRICKS} tricks "
                           "for a factorial (or use --design loo)")
    rows = {"factorial": _factorial_rows, "loo": _loo_rows, "stack": _stack_rows}[design](names)
    what = {"factorial": f"2^{len(names)} factorial", "loo": "leave-one-out",
            "stack": "stacked"}[design]
    data: dict[str, Any] = {
        "name": f"grid-{design}-{model.replace(':', '_')}-{'-'.join(names)}",  # a file name
        "title": f"{model}: {what} design over {', '.join(names)}",
        "base_recipe": BASE_RECIPE,
        "design": design,
        "rows": rows,
        "columns": [{"label": model, "model": model}],
        "notes": ["Tricks are recipe deltas from the Sec 2.1 baseline: "
                  + "; ".join(f"{t} = {recipe_changes([t])}" for t in names)],
    }
    if design == "stack":
        # Rows hold only their own trick's delta and add to the previous row (Table 6 style).
        data.update(cumulative=True, stacked=True)
    if seeds is not None:
        data["seeds"] = seeds
    return data


def grid_experiment(model: str | None, tricks: str | list[str] | None, design: str,
                    seeds: int | None = None) -> Experiment:
    """``run grid``: a factorial, leave-one-out or stacked experiment over ``tricks``."""
    # parse_experiment runs check_design, as for a file
    return parse_experiment(grid_data(model, tricks, design, seeds), src=f"grid --design {design}")


def design_factors(exp: Experiment) -> dict[str, dict[str, int]]:
    """Row label -> factors {trick: 0|1} for the rows that have them."""
    return {r.label: {t: int(v) for t, v in r.factors.items()} for r in exp.rows if r.factors}


def design_tricks(exp: Experiment) -> list[str]:
    """The tricks an experiment's factors vary, in the order the first row names them."""
    out: list[str] = []
    for r in exp.rows:
        out.extend(t for t in r.factors if t not in out)
    return out
