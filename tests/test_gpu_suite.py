"""bench/gpu_suite.sh works before a GPU is there: ``--cpu-check`` runs every stage at a tiny
size on this CPU and must pass. Slow (a cold torch.compile and a dozen Python processes);
numbers are not asserted, only that every stage ran, every check passed and the closing
table came last."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
STAGES = {"versions", "trials", "decode", "steps", "data", "compile"}


@pytest.mark.slow
def test_gpu_suite_cpu_check_runs_every_stage(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "PYTHONPATH": str(ROOT)}
    env.pop("HARNESS_COMPILE_CACHE", None)
    t0 = time.perf_counter()
    done = subprocess.run(["bash", "bench/gpu_suite.sh", "--cpu-check", str(tmp_path / "out")], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=900)
    took = time.perf_counter() - t0
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    rows = [json.loads(ln) for ln in (tmp_path / "out" / "gpu.json").read_text().splitlines()]
    assert {r["stage"] for r in rows} == STAGES
    assert not [r for r in rows if r.get("ok") is False]
    checks = {r.get("check") for r in rows}
    for needed in ("smoke mixup (python -m harness train)", "smoke efficient, --compile-mode reduce-overhead",
                   "smoke distillation from the teacher's checkpoint", "harness decode_batch with queued work",
                   "compiled kernels land in the compile cache in effect"):
        assert needed in checks
    assert any(c and c.startswith("no sync inside the step") for c in checks)
    figures = {r.get("figure") for r in rows}
    assert {"resnet50 step", "resnet50_d step", "resnet50 trainer loop", "data in-memory", "data jpeg/workers",
            "data jpeg/device", "data plain torchvision loop", "resnet50 trainer loop (compiled)"} <= figures
    md = (tmp_path / "out" / "gpu.md").read_text()
    assert md.count("\n") >= len(rows)
    tail = done.stdout.strip().splitlines()
    table = [ln for ln in tail[-12:] if ln.startswith("|")]
    assert tail[-1].startswith("| ") and "| card | figure | images/s | ratio | target |" in table
    print(f"gpu_suite --cpu-check: {took:.0f}s")
