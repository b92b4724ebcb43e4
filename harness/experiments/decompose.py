"""Rows that change more than one knob at once, and their decomposition (issue 23).

The paper's "+ mixup" rows of Table 6 switch mixing on (Sec 5.4) *and* train 200 epochs
instead of 120; a report that credits the whole delta to mixup credits the longer schedule
too. ``compound_rows`` finds every stacked row whose recipe differs from its parent's in
more than one knob (a recipe field that changes a trial's numbers), and
``decompose_experiment`` builds the 2^k factorial of those knobs between the parent and the
row: the missing corners (e.g. the 200-epoch row without mixing) are new trials, the parent
and the row themselves are the table's own trials (same recipes, same spec hashes), so
``run TABLE --decompose ROW`` trains only the corners the table lacks.
"""
from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, replace
from typing import Any

from harness.errors import HarnessError, unknown
from harness.experiments.schema import Experiment, Row, row_recipes
from harness.recipe import Recipe
from harness.spec import EXECUTION_FIELDS


@dataclass(frozen=True)
class Knob:
    """One recipe field a row changes relative to its parent."""

    field: str
    parent: Any
    row: Any

    def describe(self) -> str:
        return f"{self.field}: {_fmt(self.parent)} -> {_fmt(self.row)}"

    def on(self) -> str:
        return f"{self.field}={_fmt(self.row)}"


def _fmt(v: Any) -> str:
    if isinstance(v, bool):
        return "on" if v else "off"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def knobs(parent: Recipe, row: Recipe) -> list[Knob]:
    """The fields that differ (speed-only fields such as channels_last excluded)."""
    a, b = parent.to_dict(), row.to_dict()
    return [Knob(k, a[k], b[k]) for k in a if k not in EXECUTION_FIELDS and a[k] != b[k]]


def parent_of(exp: Experiment, i: int) -> int | None:
    """The row a stacked row is compared with: ``after`` if set, else the previous row."""
    row = exp.rows[i]
    if row.after is not None:
        return [r.label for r in exp.rows].index(row.after)
    return i - 1 if i > 0 else None


def compound_rows(exp: Experiment) -> dict[str, tuple[str, list[Knob]]]:
    """Row label -> (parent label, knobs) for each stacked row that changes >= 2 knobs."""
    recipes = row_recipes(exp)
    out = {}
    for i, row in enumerate(exp.rows):
        p = parent_of(exp, i)
        if p is None:
            continue
        parent = exp.rows[p].label
        ks = knobs(recipes[parent], recipes[row.label])
        if len(ks) >= 2:
            out[row.label] = (parent, ks)
    return out


def corner_label(parent: str, on: list[Knob]) -> str:
    return parent if not on else f"{parent} + " + ", ".join(k.on() for k in on)


def decompose_experiment(exp: Experiment, row_label: str) -> Experiment:
    """The 2^k factorial between ``row_label``'s parent and the row over its knobs. Rows are
    the corners (the parent's label for none on, the row's label for all on); a corner that
    distills keeps the row's teacher. Not cumulative: every corner is the parent's recipe
    plus its knobs."""
    compound = compound_rows(exp)
    if row_label not in compound:
        raise unknown("--decompose row", row_label, list(compound) or ["(this table has no compound row)"])
    parent_label, ks = compound[row_label]
    recipes = row_recipes(exp)
    row = next(r for r in exp.rows if r.label == row_label)
    rows = []
    for bits in itertools.product((0, 1), repeat=len(ks)):
        on = [k for k, b in zip(ks, bits) if b]
        label = row_label if len(on) == len(ks) else corner_label(parent_label, on)
        recipe = recipes[parent_label].replace(**{k.field: k.row for k in on})
        teacher = row.teacher if recipe.distill else None
        if recipe.distill and teacher is None:
            parent_row = next(r for r in exp.rows if r.label == parent_label)
            teacher = parent_row.teacher
        rows.append(Row(label=label, recipe={k.field: k.row for k in on}, teacher=teacher,
                        factors={k.field: b for k, b in zip(ks, bits)}))
    slug = re.sub(r"[^a-z0-9]+", "-", row_label.lower()).strip("-")
    knob_text = "; ".join(k.describe() for k in ks)
    return replace(exp, name=f"{exp.name}-decompose-{slug}",
                   title=f"{exp.title}: '{row_label}' decomposed ({knob_text})",
                   rows=tuple(rows), base_recipe=recipes[parent_label], cumulative=False,
                   stacked=False, paper_table=None, design="decompose",
                   notes=(*exp.notes, f"2^{len(ks)} corners between '{parent_label}' and "
                          f"'{row_label}' over {knob_text}"))


def knob_names(exp: Experiment) -> list[str]:
    """The factors of a decomposition experiment, in order."""
    if exp.design != "decompose" or not exp.rows:
        raise HarnessError(f"{exp.name} is not a decomposition")
    return list(exp.rows[0].factors)
