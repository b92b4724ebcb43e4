"""Run the benchmarks and write bench/RESULTS.md (card or CPU, versions, date, numbers).

    python bench/run_all.py [--store results/harness.sqlite ...] [--gpu-steps 30]

On a CUDA machine it times the trainer step at 224 px (FP16, channels_last, compile off/on)
against a plain torchvision AMP loop; everywhere it times the `local` scale trainer against
a naive per-image DataLoader loop, trains the `local` miniature ResNet-50-D with the full
Table 6 recipe alone (accuracy and seconds; the `local` trial, then all 60k training images
for 7 epochs with seeds 0 and 1), and reads whole-table wall times and Ray's
overhead from the store. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
import torchvision
from tabulate import tabulate

HERE = Path(__file__).resolve().parent
BUDGET_EPOCHS = 7  # all 60k images: ~140 s on 2 cores, inside accuracy_bench's 180 s goal


def _run(args: list[str]) -> list[dict]:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent)}
    out = subprocess.run([sys.executable, *args], cwd=HERE.parent, capture_output=True, text=True, check=True,
                         env=env)
    return [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", nargs="+", default=["results/harness.sqlite"],
                    help="results stores to read table runs from (the latest run per table wins)")
    ap.add_argument("--gpu-steps", type=int, default=30)
    ap.add_argument("--skip-accuracy", action="store_true", help="skip the accuracy trials (~6 minutes)")
    a = ap.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
    lines = ["# Benchmark results\n", f"- date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
             f"- device: {device}", f"- torch {torch.__version__}, torchvision {torchvision.__version__}, python {platform.python_version()}\n"]
    if torch.cuda.is_available():
        rows = _run(["bench/step_bench.py", "--steps", str(a.gpu_steps)])
        lines += ["## Trainer step vs plain torchvision AMP loop (224 px, batch 256)\n",
                  tabulate(rows, headers="keys", tablefmt="pipe"), ""]
    data = _run(["bench/data_bench.py"] + ([] if torch.cuda.is_available() else ["--small"]))
    lines += ["## Data path: JPEG files vs in-memory images (one epoch of the trainer)\n",
              tabulate(data, headers="keys", tablefmt="pipe"), ""]
    local = _run(["bench/local_bench.py"])[0]
    lines += ["## `local` scale: harness trainer vs naive per-image DataLoader loop\n",
              tabulate([local], headers="keys", tablefmt="pipe"), ""]
    if not a.skip_accuracy:
        threads = str(os.cpu_count() or 1)
        acc = _run(["bench/accuracy_bench.py", "--threads", threads])
        for seed in ("0", "1"):  # the 180 s budget spent on all 60k images, 7 epochs
            acc += _run(["bench/accuracy_bench.py", "--threads", threads, "--seed", seed,
                         "--train-images", "0", "--epochs", str(BUDGET_EPOCHS)])
        lines += ["## Miniature ResNet-50-D, full Table 6 recipe, trained alone: the `local` trial "
                  f"(15k images), then all 60k images for {BUDGET_EPOCHS} epochs (two seeds)\n",
                  tabulate(acc, headers="keys", tablefmt="pipe"), ""]
    latest: dict[str, dict] = {}
    for store in a.store:
        for row in _run(["bench/table_times.py", "--store", store]):
            if row["table"] not in latest or row["started"] > latest[row["table"]]["started"]:
                latest[row["table"]] = row
    tables = [latest[t] for t in sorted(latest)]
    if tables:
        lines += ["## Whole-table runs (latest run per table in the store(s); Ray overhead = "
                  "1 - compute / (wall x concurrency))\n", tabulate(tables, headers="keys", tablefmt="pipe"), ""]
    text = "\n".join(lines) + "\n"
    (HERE / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
