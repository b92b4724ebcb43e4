"""Trick grids: factorial, leave-one-out and stacking designs over the paper's tricks.

``python -m harness run grid --model M --tricks a,b,c --design factorial|loo|stack``
builds an :class:`Experiment` here. The grid is written as the same plain data an
experiment file holds and goes through :func:`parse_experiment`, so a grid and a file
are validated by one mechanism and plan to the same trials (same spec hashes).

Every trick is a recipe delta relative to the Sec 2.1 baseline (:data:`TRICKS`):

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
from harness.experiments.schema import Experiment, ExperimentError, parse_experiment

# Recipe deltas relative to the Sec 2.1 baseline, one per trick.
TRICKS: dict[str, dict[str, Any]] = {
    "linear_scaling": {"batch_size": 1024, "linear_scaling": True},  # Sec 3.1
    "warmup": {"warmup_epochs": 5},  # Sec 3.1
    "zero_gamma": {"zero_gamma": True},  # Sec 3.1
    "no_bias_decay": {"no_bias_decay": True},  # Sec 3.1
    "fp16": {"precision": "fp16"},  # Sec 3.2
    "cosine": {"lr_schedule": "cosine"},  # Sec 5.1
    "label_smoothing": {"label_smoothing": 0.1},  # Sec 5.2
    "mixup": {"mixup": True, "epochs": 200},  # Sec 5.4 (mixup trains 200 epochs)
}
# The paper's order: Sec 3 (efficient training), then Sec 5's refinements as in Table 6.
PAPER_ORDER: tuple[str, ...] = ("linear_scaling", "warmup", "zero_gamma", "no_bias_decay", "fp16",
                                "cosine", "label_smoothing", "mixup")
DESIGNS: tuple[str, ...] = ("factorial", "loo", "stack")
FILE_DESIGNS: tuple[str, ...] = ("table",) + DESIGNS  # values of an experiment file's 'design'
MAX_FACTORIAL_TRICKS = 7  # 2^7 = 128 rows; 2^8 would be 256 rows x seeds
BASE_RECIPE = "baseline"
NO_GRID_TRICKS = {"distill": "needs a teacher trained first (Sec 5.3); write an experiment file "
                            "with a 'teacher:' row instead (docs/experiments.md)"}


def trick_delta(on: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """The recipe delta (relative to the baseline) that switches on the tricks in ``on``."""
    out: dict[str, Any] = {}
    for t in on:
        out.update(TRICKS[t])
    return out


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
                           f"{', '.join(sorted(TRICKS))}")
    for n in names:
        if n in NO_GRID_TRICKS:
            raise HarnessError(f"trick {n!r} cannot be part of a grid: it {NO_GRID_TRICKS[n]}; "
                               f"valid choices: {', '.join(sorted(TRICKS))}")
        if n not in TRICKS:
            raise unknown("trick", n, TRICKS)
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
        rows.append({"label": factorial_label(factors), "recipe": trick_delta(on), "factors": factors})
    return rows


def _loo_rows(tricks: list[str]) -> list[dict[str, Any]]:
    rows = [{"label": "all tricks", "recipe": trick_delta(tricks), "factors": {t: 1 for t in tricks}}]
    for t in tricks:
        rest = [u for u in tricks if u != t]
        rows.append({"label": f"without {t}", "recipe": trick_delta(rest),
                     "factors": {u: int(u != t) for u in tricks}})
    return rows


def _stack_rows(tricks: list[str]) -> list[dict[str, Any]]:
    rows = [{"label": "baseline", "factors": {t: 0 for t in tricks}}]
    for i, t in enumerate(tricks):
        rows.append({"label": f"+ {t}", "recipe": dict(TRICKS[t]),
                     "factors": {u: int(j <= i) for j, u in enumerate(tricks)}})
    return rows


def grid_data(model: str | None, tricks: str | list[str] | None, design: str,
              seeds: int | None = None) -> dict[str, Any]:
    """The grid as an experiment file's content (what ``grid_experiment`` parses)."""
    from harness.models import MODEL_NAMES

    if design not in DESIGNS:
        raise unknown("design", design, DESIGNS)
    if not model:
        raise HarnessError(f"run grid needs --model; valid choices: {', '.join(MODEL_NAMES)}")
    if model not in MODEL_NAMES:
        raise unknown("model", model, MODEL_NAMES)
    names = parse_tricks(tricks)
    if not names:
        if design == "factorial":
            raise HarnessError("run grid --design factorial needs --tricks (2 to "
                               f"{MAX_FACTORIAL_TRICKS} of: {', '.join(sorted(TRICKS))})")
        names = list(PAPER_ORDER)
    if design == "factorial" and len(names) > MAX_FACTORIAL_TRICKS:
        raise HarnessError(f"bad --tricks: {len(names)} tricks make 2^{len(names)} = "
                           f"{2 ** len(names)} rows; valid: at most {MAX_FACTORIAL_TRICKS} tricks "
                           "for a factorial (or use --design loo)")
    rows = {"factorial": _factorial_rows, "loo": _loo_rows, "stack": _stack_rows}[design](names)
    what = {"factorial": f"2^{len(names)} factorial", "loo": "leave-one-out",
            "stack": "stacked"}[design]
    data: dict[str, Any] = {
        "name": f"grid-{design}-{model}-{'-'.join(names)}",
        "title": f"{model}: {what} design over {', '.join(names)}",
        "base_recipe": BASE_RECIPE,
        "design": design,
        "rows": rows,
        "columns": [{"label": model, "model": model}],
        "notes": ["Tricks are recipe deltas from the Sec 2.1 baseline: "
                  + "; ".join(f"{t} = {TRICKS[t]}" for t in names)],
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
    data = grid_data(model, tricks, design, seeds)
    return check_design(parse_experiment(data, src=f"grid --design {design}"))


def check_design(exp: Experiment) -> Experiment:
    """Check ``design``, every row's ``factors`` and every cell's final recipe values.

    Factors must name grid tricks and hold 0 or 1; each must agree with the row's recipe
    (``mixup: 1`` with a recipe without mixup is an error). A factorial or loo experiment
    needs ``factors`` on every row, naming the same tricks on every row. Recipe values
    (``lr_schedule: linear``) are checked after stacking, as ``make_plan`` would, but here
    the error names the file and the row. Raises :class:`ExperimentError` naming the
    source and the key; returns ``exp`` unchanged.
    """
    from harness.experiments.plan import row_recipes

    src = exp.source or exp.name
    if exp.design not in FILE_DESIGNS:
        raise ExperimentError(f"{src}: design: unknown design {exp.design!r}; "
                              f"valid choices: {', '.join(FILE_DESIGNS)}")
    keys: tuple[str, ...] | None = None
    for i, row in enumerate(exp.rows):
        key = f"rows[{i}].factors"
        if not isinstance(row.factors, Mapping):
            raise ExperimentError(f"{src}: {key}: expected a mapping trick -> 0|1, "
                                  f"got {type(row.factors).__name__}")
        for t, v in row.factors.items():
            if t not in TRICKS:
                hint = f" ({NO_GRID_TRICKS[t]})" if t in NO_GRID_TRICKS else ""
                raise ExperimentError(f"{src}: {key}.{t}: unknown trick {t!r}{hint}; "
                                      f"valid choices: {', '.join(sorted(TRICKS))}")
            if isinstance(v, bool) or v not in (0, 1):
                raise ExperimentError(f"{src}: {key}.{t}: expected 0 or 1, got {v!r}")
        if exp.design in ("factorial", "loo"):
            if not row.factors:
                raise ExperimentError(f"{src}: {key}: missing; every row of a {exp.design} "
                                      "design needs factors {trick: 0|1}")
            if keys is None:
                keys = tuple(row.factors)
            elif set(row.factors) != set(keys):
                raise ExperimentError(f"{src}: {key}: names tricks {sorted(row.factors)} but "
                                      f"rows[0].factors names {sorted(keys)}; use the same "
                                      "tricks on every row")
    recipes = row_recipes(exp)
    for i, row in enumerate(exp.rows):
        for j, col in enumerate(exp.columns):
            recipe = recipes[row.label].replace(**dict(col.recipe))
            try:
                recipe.validate()
            except HarnessError as exc:
                where = f" (with columns[{j}].recipe)" if col.recipe else ""
                raise ExperimentError(f"{src}: rows[{i}].recipe{where}: {exc}") from None
            on = set(recipe.tricks())
            for t, v in row.factors.items():
                if (t in on) != bool(v):
                    where = f" with columns[{j}]" if len(exp.columns) > 1 else ""
                    raise ExperimentError(
                        f"{src}: rows[{i}].factors.{t}: says {t}={int(v)} but the row's recipe{where} "
                        f"has {t} {'on' if t in on else 'off'}; set the recipe to "
                        f"{TRICKS[t]} (on) or leave those keys at the baseline (off)")
    return exp


def design_factors(exp: Experiment) -> dict[str, dict[str, int]]:
    """Row label -> factors {trick: 0|1} for the rows that have them."""
    return {r.label: {t: int(v) for t, v in r.factors.items()} for r in exp.rows if r.factors}


def design_tricks(exp: Experiment) -> list[str]:
    """The tricks an experiment's factors vary, in the order the first row names them."""
    out: list[str] = []
    for r in exp.rows:
        out.extend(t for t in r.factors if t not in out)
    return out
