"""bench/gate_power.py's resampled nights run against the committed Table 6 baseline (a
format-2 file with two machine classes) and report, per scenario, which check kinds failed."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _rows(*args: str) -> dict:
    out = subprocess.run([sys.executable, "bench/gate_power.py", "--synthetic", "--jobs", "1", *args],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True,
                         text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    return {r["scenario"]: r for r in (json.loads(x) for x in out.stdout.splitlines() if x.startswith("{"))}


def test_synthetic_nights_null_and_a_vanished_trick():
    rows = _rows("--nights", "30", "--detect-nights", "10", "--only", "null", "cosine decay delta")
    null = rows["null"]
    assert null["nights"] == 30 and 0.0 <= null["failed"] <= 0.2
    trick = next(r for k, r in rows.items() if k.startswith("trick + cosine decay"))
    assert trick["failed"] >= 0.8 and "trick" in trick["failed_by"]  # a +3-point delta gone


def test_no_speed_leaves_no_speed_check():
    rows = _rows("--nights", "20", "--detect-nights", "1", "--only", "null", "--no-speed")
    assert not any(k.startswith("speed") for k in rows["null"]["failed_by"])
