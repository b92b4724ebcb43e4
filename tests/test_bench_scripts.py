"""The benchmark scripts run end to end at a tiny size (numbers are not asserted: speed
lives in bench/RESULTS.md, never in tests)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rows(*args: str) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
                         timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def test_data_bench_small_gives_the_three_sources():
    rows = _rows("bench/data_bench.py", "--small", "--images", "64", "--workers", "1", "--threads", "1")
    assert [r["source"] for r in rows] == ["synthetic (in memory)", "jpeg/workers", "jpeg/device"]
    assert all(r["img_s"] > 0 for r in rows) and rows[0]["vs_synthetic"] == 1.0


def test_table_times_reads_a_store(tmp_path):
    assert _rows("bench/table_times.py", "--store", str(tmp_path / "none.sqlite")) == []
