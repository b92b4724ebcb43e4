"""Column deltas: a table whose columns are recipes (Table 3: Efficient vs Baseline, Sec 3.3),
seen with its rows and columns swapped so that the stacked tables' verdict code
(:func:`harness.report.verdicts.analyse`) compares each column with the reference column,
per row (model) and pooled over the rows.

In the view, the "rows" are the table's columns (the reference first, the parent of every
other) and the "columns" are the table's rows (the models); a comparison's ``row`` is the
compared column, its ``parent`` the reference and its ``column`` the model, so the
verdict tables read "Efficient vs Baseline on ResNet-50". :func:`table_cell` maps a
comparison's (row, column) back to the table's own cell key, (model row, recipe column).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from harness.experiments.schema import Column, Experiment, Row

__all__ = ["ColumnView", "table_cell"]


@dataclass(frozen=True)
class _SwappedExperiment:
    """What the verdict code reads of an experiment: its rows and columns (labels)."""

    rows: tuple[Column, ...]
    columns: tuple[Row, ...]


class _SwappedCells(Mapping):
    """(column label, row label) -> the table's cell (row label, column label)."""

    def __init__(self, cells: Mapping[tuple[str, str], Any]) -> None:
        self._cells = cells

    def __getitem__(self, key: tuple[str, str]) -> Any:
        return self._cells[(key[1], key[0])]

    def __iter__(self):
        return ((c, r) for r, c in self._cells)

    def __len__(self) -> int:
        return len(self._cells)


class ColumnView:
    """A :class:`harness.report.tables.ReportData` with rows and columns swapped."""

    def __init__(self, data: Any, reference: str) -> None:
        exp: Experiment = data.exp
        labels = [c.label for c in exp.columns]
        ref = labels.index(reference)
        self._order = [ref] + [i for i in range(len(labels)) if i != ref]
        self.data = data
        self.exp = _SwappedExperiment(tuple(exp.columns[i] for i in self._order), exp.rows)
        self.cells = _SwappedCells(data.cells)
        self.looks = data.looks

    def parent_index(self, i: int) -> int | None:
        """Every compared column's parent is the reference (index 0)."""
        return None if i == 0 else 0

    def paper_delta(self, i: int, p: int, j: int, metric: str) -> float | None:
        """The paper's column ``i`` minus column ``p`` on the table's row ``j``."""
        return self.data.paper_column_delta(j, self._order[i], self._order[p], metric)


def table_cell(row: str, column: str, swapped: bool) -> tuple[str, str]:
    """The table's cell key of a comparison's (row, column)."""
    return (column, row) if swapped else (row, column)
