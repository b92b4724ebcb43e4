"""Experiment files: a table as data (rows x columns of recipe deltas), parsed safely.

One format serves the paper's tables (``harness/experiments/paper_table*.yaml``) and
users' own tables (YAML via ``yaml.safe_load`` or TOML via ``tomllib``). Unknown keys,
wrong types, unknown models or recipe keys fail with the file, the key and the valid
choices, before anything runs. :func:`check_design` (run by every parse) also checks each
cell's stacked recipe (:func:`row_recipes`) and, for factorial and leave-one-out designs,
that every row's ``factors`` agree with it.
"""
from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from harness.errors import HarnessError
from harness.models import MODEL_NAMES, check_model
from harness.recipe import NAMED_RECIPES, Recipe, coerce_fields, named_recipe
from tricks.registry import BY_NAME, GRID_TRICKS

TOP_KEYS = {"name", "title", "paper_table", "base_recipe", "cumulative", "stacked", "metrics",
            "columns", "rows", "data", "requires_imagefolder", "seeds", "notes", "kind",
            "transfer", "design", "reference_column"}
COL_KEYS = {"label", "model", "recipe", "paper"}
ROW_KEYS = {"label", "model", "recipe", "after", "teacher", "paper_row", "factors"}
TEACHER_KEYS = {"model", "recipe"}
DESIGNS = ("factorial", "loo", "stack")  # trick grids (harness/experiments/grid.py)
FILE_DESIGNS = ("table",) + DESIGNS  # values of an experiment file's 'design'
METRICS = ("top1", "top5", "img_per_s", "epoch_s", "params", "macs", "map", "pixacc", "miou")


@dataclass(frozen=True)
class Column:
    label: str
    model: str | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)
    paper: Mapping[str, str] = field(default_factory=dict)  # metric -> paper table column


@dataclass(frozen=True)
class Teacher:
    model: str | None  # None: the scale's teacher model (Sec 5.3: ResNet-152-D)
    recipe: Recipe


@dataclass(frozen=True)
class Row:
    label: str
    model: str | None = None
    recipe: Mapping[str, Any] = field(default_factory=dict)
    after: str | None = None  # the row this one adds to (None: previous row if cumulative)
    teacher: Teacher | None = None
    paper_row: int | None = None
    factors: Mapping[str, int] = field(default_factory=dict)  # factorial designs: trick -> 0/1


@dataclass(frozen=True)
class Experiment:
    name: str
    title: str
    rows: tuple[Row, ...]
    columns: tuple[Column, ...]
    base_recipe: Recipe = Recipe()
    paper_table: str | None = None
    cumulative: bool = False
    stacked: bool = False  # report row deltas and verdicts (Tables 4, 5, 6, 8, 9)
    metrics: tuple[str, ...] = ("top1", "top5")
    data: str | None = None
    requires_imagefolder: bool = False
    seeds: int | None = None
    notes: tuple[str, ...] = ()
    kind: str = "classification"  # | detection | segmentation
    transfer: Mapping[str, Any] = field(default_factory=dict)
    design: str = "table"  # table | factorial | loo | stack
    source: str = ""
    # a table whose columns are recipes (Table 3): each other column vs this one, per row
    # (model) and pooled over the rows, with the stacked tables' verdicts
    reference_column: str | None = None

    @property
    def has_verdicts(self) -> bool:
        """Row deltas (stacked) or column deltas (``reference_column``) get verdicts."""
        return self.stacked or self.reference_column is not None


class ExperimentError(HarnessError):
    pass


def _err(src: str, key: str, msg: str) -> ExperimentError:
    return ExperimentError(f"{src}: {key}: {msg}")


def _mapping(obj: Any, src: str, key: str, allowed: set[str]) -> dict[str, Any]:
    if not isinstance(obj, Mapping):
        raise _err(src, key, f"expected a mapping, got {type(obj).__name__}")
    bad = sorted(set(obj) - allowed)
    if bad:
        raise _err(src, f"{key}.{bad[0]}", f"unknown key; valid keys: {', '.join(sorted(allowed))}")
    return dict(obj)


def _str(obj: Any, src: str, key: str) -> str:
    if not isinstance(obj, str) or not obj:
        raise _err(src, key, f"expected a non-empty string, got {obj!r}")
    return obj


_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,127}")


def _name(obj: Any, src: str) -> str:
    """The experiment's name becomes report and Ray folder names: no '/', '..' or other
    path tricks (same rule as baseline names in harness/regress/baseline.py)."""
    name = _str(obj, src, "name")
    if not _SAFE_NAME.fullmatch(name) or ".." in name:
        raise _err(src, "name", f"{name!r} is not a safe file name; valid: letters, digits, '_', "
                   "'.', '-' (a letter or digit first, no '..', at most 128 characters)")
    return name


def _recipe_delta(obj: Any, src: str, key: str) -> dict[str, Any]:
    if obj is None:
        return {}
    if not isinstance(obj, Mapping):
        raise _err(src, key, f"expected a mapping of recipe keys, got {type(obj).__name__}")
    try:
        return coerce_fields(obj)
    except HarnessError as exc:
        raise _err(src, key, str(exc)) from None


def _recipe(obj: Any, src: str, key: str, base: Recipe) -> Recipe:
    """A named recipe ('efficient') or a mapping of changes applied to ``base``."""
    if isinstance(obj, str):
        if obj not in NAMED_RECIPES:
            raise _err(src, key, f"unknown recipe {obj!r}; valid: {', '.join(NAMED_RECIPES)}")
        return named_recipe(obj)
    return base.replace(**_recipe_delta(obj, src, key))


def _model(obj: Any, src: str, key: str) -> str | None:
    if obj is None:
        return None
    name = _str(obj, src, key)
    if ":" in name:  # timm:NAME, torchvision:NAME
        try:
            return check_model(name)
        except HarnessError as exc:
            raise _err(src, key, str(exc)) from None
    if name not in MODEL_NAMES:
        raise _err(src, key, f"unknown model {name!r}; valid: {', '.join(MODEL_NAMES)}, "
                   "timm:NAME, torchvision:NAME")
    return name


def _column(obj: Any, src: str, i: int) -> Column:
    key = f"columns[{i}]"
    d = _mapping(obj, src, key, COL_KEYS)
    paper = d.get("paper") or {}
    if not isinstance(paper, Mapping) or any(m not in METRICS for m in paper):
        raise _err(src, f"{key}.paper", f"expected metric -> paper column; metrics: {', '.join(METRICS)}")
    return Column(label=_str(d.get("label"), src, f"{key}.label"),
                  model=_model(d.get("model"), src, f"{key}.model"),
                  recipe=_recipe_delta(d.get("recipe"), src, f"{key}.recipe"), paper=dict(paper))


def _row(obj: Any, src: str, i: int, base: Recipe) -> Row:
    key = f"rows[{i}]"
    d = _mapping(obj, src, key, ROW_KEYS)
    teacher = None
    if d.get("teacher") is not None:
        t = _mapping(d["teacher"], src, f"{key}.teacher", TEACHER_KEYS)
        teacher = Teacher(model=_model(t.get("model"), src, f"{key}.teacher.model"),
                          recipe=_recipe(t.get("recipe", {}), src, f"{key}.teacher.recipe", base))
    paper_row = d.get("paper_row")
    if paper_row is not None and not isinstance(paper_row, int):
        raise _err(src, f"{key}.paper_row", f"expected an integer row index, got {paper_row!r}")
    factors = d.get("factors") or {}
    return Row(label=_str(d.get("label"), src, f"{key}.label"),
               model=_model(d.get("model"), src, f"{key}.model"),
               recipe=_recipe_delta(d.get("recipe"), src, f"{key}.recipe"),
               after=d.get("after"), teacher=teacher, paper_row=paper_row, factors=dict(factors))


def parse_experiment(data: Any, src: str) -> Experiment:
    """Validate a parsed file's content into an Experiment (every error names src and key)."""
    d = _mapping(data, src, "<top>", TOP_KEYS)
    for req in ("name", "rows", "columns"):
        if req not in d:
            raise _err(src, req, "missing required key")
    base = _recipe(d.get("base_recipe", "baseline"), src, "base_recipe", Recipe())
    if not isinstance(d["rows"], list) or not d["rows"]:
        raise _err(src, "rows", "expected a non-empty list")
    if not isinstance(d["columns"], list) or not d["columns"]:
        raise _err(src, "columns", "expected a non-empty list")
    rows = tuple(_row(r, src, i, base) for i, r in enumerate(d["rows"]))
    cols = tuple(_column(c, src, i) for i, c in enumerate(d["columns"]))
    labels = [r.label for r in rows]
    for i, r in enumerate(rows):
        if r.after is not None and r.after not in labels[:i]:
            raise _err(src, f"rows[{i}].after", f"{r.after!r} is not an earlier row; valid: {labels[:i]}")
    for i, r in enumerate(rows):
        if not (r.model or all(c.model for c in cols)):
            raise _err(src, f"rows[{i}].model", "missing model: set it on the row or on every column")
    metrics = tuple(d.get("metrics", ("top1", "top5")))
    for m in metrics:
        if m not in METRICS:
            raise _err(src, "metrics", f"unknown metric {m!r}; valid: {', '.join(METRICS)}")
    seeds = d.get("seeds")
    if seeds is not None and (not isinstance(seeds, int) or isinstance(seeds, bool) or seeds < 1):
        raise _err(src, "seeds", f"expected an integer >= 1, got {seeds!r}")
    kind = d.get("kind", "classification")
    if kind not in ("classification", "detection", "segmentation"):
        raise _err(src, "kind", f"unknown kind {kind!r}; valid: classification, detection, segmentation")
    ref = d.get("reference_column")
    if ref is not None:
        col_labels = [c.label for c in cols]
        if ref not in col_labels or len(cols) < 2:
            raise _err(src, "reference_column", f"{ref!r} is not one of two or more columns; "
                       f"valid: {', '.join(col_labels)}")
        if d.get("stacked"):
            raise _err(src, "reference_column", "contradicts stacked: true (rows are compared "
                       "with their parents there); set one of them")
    exp = Experiment(
        name=_name(d["name"], src), title=str(d.get("title", d["name"])), rows=rows,
        columns=cols, base_recipe=base, paper_table=d.get("paper_table"),
        cumulative=bool(d.get("cumulative", False)), stacked=bool(d.get("stacked", False)),
        metrics=metrics, data=d.get("data"),
        requires_imagefolder=bool(d.get("requires_imagefolder", False)), seeds=seeds,
        notes=tuple(d.get("notes", ())), kind=kind, transfer=dict(d.get("transfer") or {}),
        design=str(d.get("design", "table")), source=src, reference_column=ref)
    return check_design(exp)


def row_recipes(exp: Experiment) -> dict[str, Recipe]:
    """Each row's recipe after stacking (before column deltas).

    Rows follow the paper's stacking: a row adds its delta to the row named in ``after``,
    else to the previous row when the table is cumulative, else to the base recipe.
    """
    out: dict[str, Recipe] = {}
    prev: Recipe | None = None
    for row in exp.rows:
        if row.after is not None:
            parent = out[row.after]
        elif exp.cumulative and prev is not None:
            parent = prev
        else:
            parent = exp.base_recipe
        out[row.label] = parent.replace(**dict(row.recipe))
        prev = out[row.label]
    return out


def check_design(exp: Experiment) -> Experiment:
    """Check ``design``, every row's ``factors`` and every cell's final recipe values.

    Factors must name grid tricks and hold 0 or 1; each must agree with the row's recipe
    (``mixup: 1`` with a recipe without mixup is an error). A factorial or loo experiment
    needs ``factors`` on every row, naming the same tricks on every row. Recipe values
    (``lr_schedule: linear``) are checked after stacking, as ``make_plan`` would, but here
    the error names the file and the row. Raises :class:`ExperimentError` naming the
    source and the key; returns ``exp`` unchanged.
    """
    src = exp.source or exp.name
    if exp.design not in FILE_DESIGNS:
        raise ExperimentError(f"{src}: design: unknown design {exp.design!r}; "
                              f"valid choices: {', '.join(FILE_DESIGNS)}")
    _check_factors(exp, src)
    _check_cells(exp, src)
    return exp


def _check_factors(exp: Experiment, src: str) -> None:
    """Factors name grid tricks with levels 0|1; factorial and loo rows all name the same ones."""
    keys: tuple[str, ...] | None = None
    for i, row in enumerate(exp.rows):
        key = f"rows[{i}].factors"
        if not isinstance(row.factors, Mapping):
            raise ExperimentError(f"{src}: {key}: expected a mapping trick -> 0|1, "
                                  f"got {type(row.factors).__name__}")
        for t, v in row.factors.items():
            if t not in GRID_TRICKS:
                hint = f" ({BY_NAME[t].no_grid})" if t in BY_NAME else ""
                raise ExperimentError(f"{src}: {key}.{t}: unknown trick {t!r}{hint}; "
                                      f"valid choices: {', '.join(sorted(GRID_TRICKS))}")
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


def _check_cells(exp: Experiment, src: str) -> None:
    """Every cell's stacked recipe is valid and has each trick on exactly when its factor is 1."""
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
                        f"{dict(GRID_TRICKS[t].recipe)} (on) or leave those keys at the baseline (off)")


def read_experiment_file(path: Path) -> Experiment:
    """Parse a .yaml/.yml (safe_load) or .toml (tomllib) file; no code is ever executed."""
    import yaml  # here, not at the top: `harness train` imports this package and needs no PyYAML

    src = str(path)
    if not path.is_file():
        tables = ", ".join(sorted(p.stem for p in Path(__file__).parent.glob("paper_table*.yaml")))
        raise ExperimentError(f"{src}: experiment file not found; valid: {tables}, grid, "
                              "or the path of an existing .yaml/.toml file")
    try:
        text = path.read_text()
        if path.suffix == ".toml":
            data = tomllib.loads(text)
        elif path.suffix in (".yaml", ".yml"):
            data = yaml.safe_load(text)
        else:
            raise _err(src, "<file>", "unknown extension; valid: .yaml, .yml, .toml")
    except (yaml.YAMLError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ExperimentError(f"{src}: malformed file: {first}") from None
    return parse_experiment(data, src)
