"""The gate's history: store schema 4 (a v3 store opens and migrates), every gate run
appended, and `report history TABLE` (one plot per gated metric, change points by ruptures)."""
from __future__ import annotations

import json
import sqlite3

import numpy as np

from harness.regress import read_history
from harness.regress.history import HISTORY_COLUMNS, append_history
from harness.report.history import change_points, write_history
from harness.store import SCHEMA_VERSION, Store, TrialRecord
from test_regress import TABLE, cli, fill, plan_for, work  # noqa: F401


def _make_v3(path) -> None:
    """A store as schema 3 left it: today's layout without gate_history, version 3."""
    with Store(path) as s:
        s.put_trial(TrialRecord(spec_hash="old", run_id="r", status="done", top1=71.5))
    conn = sqlite3.connect(path)
    conn.execute("DROP TABLE gate_history")
    conn.execute("UPDATE meta SET value='3' WHERE key='schema_version'")
    conn.commit()
    conn.close()


def test_v3_store_opens_and_migrates_to_v4(tmp_path):
    """Read-only, a v3 store is read as it is (no history); opened for writing it gains an
    empty gate_history table and version 4, its trials untouched."""
    path = tmp_path / "v3.sqlite"
    _make_v3(path)
    with Store(path, readonly=True) as ro:
        assert ro.schema_version() == 3
    assert read_history(path, TABLE, "local") == []
    with Store(path) as s:
        assert s.schema_version() == SCHEMA_VERSION == 4
        cols = [r[1] for r in s.conn.execute("PRAGMA table_info(gate_history)")]
        assert cols[0] == "id" and cols[1:] == list(HISTORY_COLUMNS)
        assert s.get_trial("old").top1 == 71.5 and s.integrity_ok()
    assert read_history(path, TABLE, "local") == []


def test_every_gate_run_is_appended(work, capsys):
    """Two gate runs add their checks to --store's gate_history, each under its own gate id;
    --no-history adds nothing."""
    fill(work / "s.sqlite", plan_for("local"))
    assert cli(capsys, "baseline", "save", TABLE, "--scale", "local", "--store", "s.sqlite")[0] == 0
    for _ in range(2):
        assert cli(capsys, "regress", TABLE, "--scale", "local", "--store", "s.sqlite", "--no-train")[0] == 0
    rows = read_history(work / "s.sqlite", TABLE, "local")
    assert len({r["gate_id"] for r in rows}) == 2
    kinds = {r["check_kind"] for r in rows}
    assert kinds == {"cell", "model", "trick", "speed", "speed-model", "invariant"}
    assert len(rows) == 2 * (18 + 3 + 5 + 18 + 3 + 18)  # invariant: each cell's precision
    assert {r["status"] for r in rows} == {"pass"} and {r["exit_code"] for r in rows} == {0}
    assert cli(capsys, "regress", TABLE, "--scale", "local", "--store", "s.sqlite", "--no-train",
               "--no-history")[0] == 0
    assert len(read_history(work / "s.sqlite", TABLE, "local")) == len(rows)


def test_change_points_find_a_step_and_not_noise():
    """PELT finds a 2-point step at run 6 in noise of sd 0.3, and nothing in pure noise."""
    rng = np.random.default_rng(7)
    noise = list(80 + 0.3 * rng.standard_normal(20))
    assert change_points(noise) == []
    step = [v - (2.0 if i >= 6 else 0.0) for i, v in enumerate(noise[:14])]
    assert change_points(step) == [6]
    assert change_points([1.0, 2.0, 3.0]) == []  # too few runs


def _night(i: int, value: float, outcome: str = "pass") -> dict:
    return {"gate_id": f"g{i:02d}", "created_at": f"2026-12-{i + 1:02d}T02:00:00+00:00",
            "table_name": TABLE, "scale": "local", "git_commit": f"c{i}", "machine_class": "cpu:x",
            "baseline": "b.json", "status": "pass", "exit_code": 0, "check_kind": "cell",
            "check_name": "+ label smoothing / MobileNet", "metric": "top1", "base_value": 80.0,
            "now_value": value, "delta": value - 80.0, "p": 0.5, "outcome": outcome, "n_base": 2,
            "n_now": 2, "extra_json": json.dumps({})}


def test_report_history_plots_and_change_points(work, capsys):
    """`report history TABLE` writes one plot per gated series and names the change point of
    a series that stepped down; bad input exits 2 with one line."""
    store = work / "s.sqlite"
    rng = np.random.default_rng(3)
    rows = [_night(i, 80 + 0.3 * rng.standard_normal() - (1.5 if i >= 8 else 0.0),
                   "regression" if i >= 8 else "pass") for i in range(14)]
    rows += [dict(r, check_kind="speed", check_name="Efficient / MobileNet", metric="img_per_s",
                  base_value=2000.0, now_value=2000.0 + 5 * i) for i, r in enumerate(rows[:14])]
    append_history(store, rows)
    page = write_history(store, TABLE, "local", work / "reports")
    text = page.read_text()
    assert "14 gate run(s)" in text
    assert "run 8 (2026-12-09T02:00:00+00:00)" in text  # the step, found
    assert len(list((page.parent / f"{TABLE}-local").glob("*.png"))) == 2
    rc, out, err = cli(capsys, "report", "history", TABLE, "--scale", "local", "--store", "s.sqlite")
    assert rc == 0, err
    assert out.strip().endswith("reports/history/paper_table6-local.md")
    rc, _, err = cli(capsys, "report", "history", "--store", "s.sqlite")
    assert rc == 2 and "report history needs a table" in err
    rc, _, err = cli(capsys, "report", "history", TABLE, "--scale", "paper", "--store", "s.sqlite")
    assert rc == 2 and "no gate history for paper_table6 @ paper" in err
    rc, _, err = cli(capsys, "report", "history", "paper_table99", "--store", "s.sqlite")
    assert rc == 2 and len(err.strip().splitlines()) == 1
