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


def test_data_bench_tiny_gives_every_source_and_the_plain_loop():
    """In memory, JPEG through workers, JPEG through device decode, and the plain torchvision
    ImageFolder loop, each row printed as it is measured, ratios to the in-memory row."""
    rows = _rows("bench/data_bench.py", "--tiny", "--workers", "1")
    assert [r["source"] for r in rows] == ["in-memory", "jpeg/workers", "jpeg/device", "plain torchvision loop"]
    assert all(r["img_s"] > 0 for r in rows) and rows[0]["ratio"] == 1.0


def test_table_times_reads_a_store(tmp_path):
    assert _rows("bench/table_times.py", "--store", str(tmp_path / "none.sqlite")) == []


def test_run_all_needs_only_torch_and_torchvision(tmp_path):
    """bench/run_all.py on a host with torch and torchvision only (tabulate, pandas, Ray, yaml,
    matplotlib unimportable) and no Fashion-MNIST: it writes its report and lists what it
    skipped, instead of failing on an import."""
    blocked = tmp_path / "blocked"
    blocked.mkdir()
    for mod in ("tabulate", "pandas", "ray", "yaml", "matplotlib"):
        (blocked / f"{mod}.py").write_text("raise ImportError('not on this host')\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(blocked), str(ROOT)]),
           "HARNESS_DATA_ROOT": str(tmp_path / "no-fashion-mnist"), "CUDA_VISIBLE_DEVICES": ""}
    out = tmp_path / "RESULTS.md"
    done = subprocess.run([sys.executable, "bench/run_all.py", "--skip-accuracy", "--out", str(out),
                           "--store", str(tmp_path / "none.sqlite")], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    text = out.read_text()
    assert "## Skipped here" in text and "Fashion-MNIST not installed" in text
