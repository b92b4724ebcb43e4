"""Stored trials read back by spec hash: the one reader behind the reports and the gate.

Trials are matched by :attr:`TrialSpec.hash` only, never by labels: tables share trials
(Table 4's last row is Table 5's first), and a stored label names whichever table ran it.
Each trial comes back as the store's own :class:`~harness.store.TrialRecord`, with a
missing value as None: SQLite gives a NaN back as NULL and pandas reads a NULL number as
NaN, and both become None here.
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from typing import Any

import pandas as pd

from harness.metrics import STORE_COLUMN, number
from harness.store import Store, TrialRecord

__all__ = ["StoredTrials", "read_trials", "metric_value"]

COLUMNS = tuple(f.name for f in fields(TrialRecord) if f.name not in ("epochs_rows", "extra", "metrics"))


@dataclass(frozen=True)
class StoredTrials:
    """The trials a store holds among the hashes asked for."""

    records: dict[str, TrialRecord]  # spec hash -> trial (epoch rows not read)
    frame: pd.DataFrame  # the same trials as :meth:`Store.trials_df` rows, for analyses by column


def _value(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else v


def _record(row: dict[str, Any]) -> TrialRecord:
    rec = TrialRecord(**{c: _value(row.get(c)) for c in COLUMNS})
    rec.extra, rec.metrics = row.get("extra") or {}, row.get("metrics") or {}
    return rec


def read_trials(store: Store, hashes: Iterable[str]) -> StoredTrials:
    """The trials of ``hashes`` that ``store`` holds (any status), in one query."""
    frame = store.trials_df(spec_hash=list(dict.fromkeys(hashes)))
    return StoredTrials({r["spec_hash"]: _record(r) for r in frame.to_dict("records")}, frame)


def metric_value(rec: TrialRecord, metric: str) -> float | None:
    """``rec``'s value of ``metric``: a trials column (top1, img_per_s, params, ...) or, for a
    task's own metric (map, miou, ...), its ``metrics``; None when it has no number."""
    column = STORE_COLUMN.get(metric, metric)
    return number(getattr(rec, column) if column in COLUMNS else (rec.metrics or {}).get(metric))
