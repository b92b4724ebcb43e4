"""Fractional GPUs: several miniature trials sharing one device, as ``run --gpus-per-trial 0.25``
places them, measured without Ray (``python -m harness train`` processes started together).

    python bench/fractional.py [--trials 4] [--scale local] [--model resnet50_d] [--out DIR]

Each trial keeps its in-memory data set resident on the device (``InMemoryBatches``) and
runs the trainer as a Ray trial would. Rows: each trial's training images/s and wall time,
then the aggregate. With PyYAML present (the paper tables are YAML files) it also estimates
the wall time of the `local` Table 6 with 8 seeds on this device at that concurrency, from
the plan's training images and the measured aggregate rate. The data are synthetic images
of the scale's size (Fashion-MNIST need not be on a GPU box): RGB instead of grey, so the
first convolution does 3x the (negligible) work.
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import REPO, emit  # noqa: E402


def run_trials(n: int, scale: str, model: str, recipe: str, device: str, timeout: float) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    cmd = [sys.executable, "-m", "harness", "train", "--model", model, "--recipe", recipe, "--scale", scale,
           "--data", "synthetic", "--device", device]
    t0 = time.perf_counter()
    procs = [subprocess.Popen(cmd + ["--seed", str(k)], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(n)]
    out = []
    for k, p in enumerate(procs):
        stdout, stderr = p.communicate(timeout=timeout)
        lines = [ln for ln in stdout.splitlines() if ln.startswith("{")]
        res = json.loads(lines[-1]) if lines else {"status": "failed", "error": stderr.strip()[-300:]}
        res["process_s"] = time.perf_counter() - t0
        out.append(res)
    return out


def table6_estimate(rate: float, concurrency: int, startup_s: float, seeds: int = 8) -> dict | None:
    """Minutes for the `local` Table 6 with ``seeds`` seeds at ``rate`` images/s in aggregate
    (``concurrency`` trials at a time), or None without PyYAML (the tables are YAML)."""
    if importlib.util.find_spec("yaml") is None:
        return None
    from harness.experiments import load_experiment, make_plan
    from harness.scales import get_scale

    scale = get_scale("local")
    plan = make_plan(load_experiment("paper_table6"), scale, seeds)
    trials = plan.all_trials()
    n_train = scale.train_subset or 60000
    images = 0
    for t in trials:
        batch = scale.batch_size(t.recipe)
        images += scale.epochs(t.recipe) * (n_train // batch) * batch
    minutes = (images / rate + len(trials) * startup_s / concurrency) / 60
    return {"trials": len(trials), "train_images": images, "minutes": round(minutes, 1)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=4)
    ap.add_argument("--scale", default="local")
    ap.add_argument("--model", default="resnet50_d")
    ap.add_argument("--recipe", default="baseline")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--timeout", type=float, default=300)
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args()
    results = run_trials(a.trials, a.scale, a.model, a.recipe, a.device, a.timeout)
    ok = all(r.get("status") == "done" for r in results)
    for k, r in enumerate(results):
        emit({"stage": "trials", "check": f"fractional trial {k + 1}/{a.trials}", "scale": a.scale, "model": a.model,
              "device": r.get("device"), "status": r.get("status"), "img_s": r.get("train_img_per_s"),
              "wall_s": r.get("wall_s"), "process_s": round(r["process_s"], 1), "error": r.get("error"),
              "ok": r.get("status") == "done"}, a.out)
    if not ok:
        return 1
    agg = sum(r["train_img_per_s"] for r in results)
    # start-up per trial: process start, imports, CUDA init, data build (wall minus training)
    startup = max(r["process_s"] - r["epochs"] * r["epoch_s"] for r in results)
    row = {"stage": "trials", "figure": f"{a.trials} {a.scale} trials on one device", "card": results[0].get("device"),
           "img_s": round(agg, 1), "ratio": round(agg / max(r["train_img_per_s"] for r in results), 2),
           "ref": "the fastest of the concurrent trials", "startup_s": round(startup, 1), "ok": True}
    est = table6_estimate(agg, a.trials, startup) if a.scale == "local" else None
    if est:
        row["table6_8_seeds"] = est
    elif a.scale == "local":
        row["table6_8_seeds"] = "needs PyYAML (the paper tables are YAML files)"
    emit(row, a.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
