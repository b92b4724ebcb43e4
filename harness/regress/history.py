"""Every gate run appended to the store's ``gate_history`` table (schema 4), and read back.

One row per check of the night (cells, models, tricks, speed) plus one per cell whose
computation changed; ``harness report history TABLE`` plots them over the nights
(:mod:`harness.report.history`). A store of schema 3 is migrated when opened for writing;
read-only, a store without the table has no history.
"""
from __future__ import annotations

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

from harness.regress.checks import Check
from harness.regress.comparison import CellVerdict
from harness.store import Store, StoreError

__all__ = ["HISTORY_COLUMNS", "history_rows", "append_history", "read_history"]

HISTORY_COLUMNS = ("gate_id", "created_at", "table_name", "scale", "git_commit", "machine_class",
                   "baseline", "status", "exit_code", "check_kind", "check_name", "metric",
                   "base_value", "now_value", "delta", "p", "outcome", "n_base", "n_now",
                   "extra_json")


def _finite(x: Any) -> float | None:
    try:
        f = float(x)
    except (TypeError, ValueError):
        return None
    return f if f == f and abs(f) != float("inf") else None


def history_rows(summary: dict[str, Any], checks: list[Check],
                 cells: list[CellVerdict]) -> list[dict[str, Any]]:
    """The rows one gate run adds (``summary``: the gate's JSON summary)."""
    common = {"gate_id": summary.get("gate_id") or uuid.uuid4().hex[:12],
              "created_at": summary.get("created_at"), "table_name": summary.get("table"),
              "scale": summary.get("scale"), "git_commit": summary.get("git_commit"),
              "machine_class": summary.get("machine_class"), "baseline": summary.get("baseline"),
              "status": summary.get("status"), "exit_code": summary.get("exit_code")}
    rows = []
    for c in checks:
        d = c.drop
        delta = None if c.base is None or c.now is None else c.now - c.base
        rows.append({**common, "check_kind": c.kind, "check_name": c.name, "metric": c.metric,
                     "base_value": _finite(c.base), "now_value": _finite(c.now),
                     "delta": _finite(delta), "p": _finite(d.p if d else None),
                     "outcome": c.outcome, "n_base": c.n_base, "n_now": c.n_now,
                     "extra_json": json.dumps({"drop": _finite(d.drop) if d else None,
                                               "floor": _finite(d.floor) if d else None,
                                               "look": c.look, "note": c.note})})
    for v in cells:
        if v.verdict in ("missing", "failed", "not comparable"):
            rows.append({**common, "check_kind": "cell", "check_name": v.cell, "metric": v.metric,
                         "base_value": _finite(v.base_mean), "now_value": _finite(v.now_mean),
                         "delta": None, "p": None, "outcome": v.verdict, "n_base": v.n_base,
                         "n_now": v.n_now, "extra_json": json.dumps({"note": v.note})})
        if v.computation_changed:
            rows.append({**common, "check_kind": "determinism", "check_name": v.cell,
                         "metric": v.metric, "base_value": None, "now_value": None, "delta": None,
                         "p": None, "outcome": "computation changed", "n_base": v.n_base,
                         "n_now": v.n_now, "extra_json": json.dumps({"seeds": v.changed_seeds})})
    return rows


def append_history(store_path: str | Path, rows: list[dict[str, Any]]) -> int:
    """Insert ``rows`` in one transaction (the store is migrated to schema 4 if older)."""
    cols = ", ".join(HISTORY_COLUMNS)
    marks = ", ".join("?" for _ in HISTORY_COLUMNS)
    with Store(store_path) as store:
        conn = store.conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            conn.executemany(f"INSERT INTO gate_history ({cols}) VALUES ({marks})",
                             [tuple(r.get(c) for c in HISTORY_COLUMNS) for r in rows])
            conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise StoreError(f"cannot write the gate history to {store_path}: {exc}") from None
    return len(rows)


def read_history(store_path: str | Path, table: str, scale: str) -> list[dict[str, Any]]:
    """Every history row of ``table`` at ``scale``, oldest first (none in a schema-3 store)."""
    with Store(store_path, readonly=True) as store:
        conn = store.conn
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "gate_history" not in names:
            return []
        cur = conn.execute(f"SELECT {', '.join(HISTORY_COLUMNS)} FROM gate_history WHERE "
                           "table_name=? AND scale=? ORDER BY created_at, id", (table, scale))
        return [dict(zip(HISTORY_COLUMNS, r)) for r in cur.fetchall()]
