"""Data-parallel trials: Ray Train's TorchTrainer with 2 gloo workers on this CPU."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

EXP = """name: ddp_check
base_recipe: efficient
rows:
  - {label: base}
columns:
  - {label: ResNet-18, model: resnet18}
seeds: 1
"""


def _run(tmp_path: Path, workers: int) -> dict:
    exp = tmp_path / "ddp.yaml"
    exp.write_text(EXP)
    store = tmp_path / f"w{workers}" / "s.sqlite"
    out = subprocess.run([sys.executable, "-m", "harness", "run", str(exp), "--scale", "smoke",
                          "--store", str(store), "--workers-per-trial", str(workers), "--no-report", "--json"],
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["done"] == 1
    from harness.store import Store

    with Store(store, readonly=True) as st:
        return st.trials_df().iloc[0].to_dict()


@pytest.mark.slow
def test_two_gloo_workers_keep_the_global_batch_and_lr(tmp_path):
    """A 2-worker DDP trial reports world size 2 and the same global batch (64 = 1024/16) and
    learning rate (0.4/16) as the 1-worker trial of the same spec."""
    one, two = _run(tmp_path, 1), _run(tmp_path, 2)
    assert one["status"] == two["status"] == "done"
    assert one["extra"]["workers"] == 1 and two["extra"]["workers"] == 2
    assert one["extra"]["global_batch"] == two["extra"]["global_batch"] == 64
    assert one["extra"]["lr"] == pytest.approx(two["extra"]["lr"]) == pytest.approx(0.4 / 16)
