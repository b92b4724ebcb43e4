"""bench/gate_power.py's real-bug procedure end to end at smoke (cheap): a clean baseline,
a clean night, then each bug patched into the training stack in its own subprocess, trained
and gated. Smoke accuracy never gates, so what is checked is that the procedure runs, the
clean night is bit-identical (the determinism tier says 'same') and passes, every bug is
really applied (it changes the computation of at least one cell it touches) and the gate's
invariant checks (what ran: harness/applied.py) fail each bug's night."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_real_bugs_procedure_at_smoke(tmp_path):
    exp = ROOT / "bench" / "gate_bugs.yaml"
    out = subprocess.run([sys.executable, "bench/gate_power.py", "--bugs", "--scale", "smoke",
                          "--table", str(exp), "--seeds", "1", "--work", str(tmp_path / "w")],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {r["bug"]: r for r in (json.loads(x) for x in out.stdout.splitlines() if x.startswith("{"))}
    assert set(rows) == {"none", "label_smoothing_off", "weight_decay_on_all", "wrong_normalisation",
                         "cosine_as_step", "mixup_off", "zero_gamma_off"}
    assert rows["none"]["exit_code"] == 0 and rows["none"]["changed_cells"] == 0
    for bug, r in rows.items():
        assert r["exit_code"] in (0, 1) and Path(r["report"]).is_file()
        if bug != "none":
            assert r["changed_cells"] >= 1, bug
            assert r["caught"] and "invariant" in r["caught_by"], (bug, r)


@pytest.mark.slow
def test_a_fine_tune_from_a_random_backbone_is_caught_at_smoke(tmp_path):
    """bench/gate_bugs_transfer.yaml (Table 9's FCN on two backbones): a fine-tune that
    silently starts from a random backbone changes its cells and fails the night on the
    backbone_rms invariant; the clean night passes unchanged."""
    exp = ROOT / "bench" / "gate_bugs_transfer.yaml"
    out = subprocess.run([sys.executable, "bench/gate_power.py", "--bugs", "--scale", "smoke",
                          "--table", str(exp), "--seeds", "1", "--bug", "backbone_not_loaded",
                          "--work", str(tmp_path / "w")],
                         cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    rows = {r["bug"]: r for r in (json.loads(x) for x in out.stdout.splitlines() if x.startswith("{"))}
    assert set(rows) == {"none", "backbone_not_loaded"}
    assert rows["none"]["exit_code"] == 0 and rows["none"]["changed_cells"] == 0
    bug = rows["backbone_not_loaded"]
    assert bug["changed_cells"] == 2 and bug["caught"] and bug["caught_by"] == ["invariant"]
    report = Path(bug["report"]).read_text()
    assert "backbone_rms changed" in report
