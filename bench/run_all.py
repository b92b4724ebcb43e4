"""Run the benchmarks and write bench/RESULTS.md (card or CPU, versions, date, numbers).

    python bench/run_all.py [--store results/harness.sqlite] [--gpu-steps 30]

On a CUDA machine it times the trainer step at 224 px (FP16, channels_last, compile off/on)
against a plain torchvision AMP loop; everywhere it times the `local` scale trainer against
a naive per-image DataLoader loop and reads Ray's overhead from the store.
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


def _run(args: list[str]) -> list[dict]:
    out = subprocess.run([sys.executable, *args], cwd=HERE.parent, capture_output=True, text=True, check=True)
    return [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", default="results/harness.sqlite")
    ap.add_argument("--gpu-steps", type=int, default=30)
    a = ap.parse_args()
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
    lines = [f"# Benchmark results\n", f"- date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
             f"- device: {device}", f"- torch {torch.__version__}, torchvision {torchvision.__version__}, python {platform.python_version()}\n"]
    if torch.cuda.is_available():
        rows = _run(["bench/step_bench.py", "--steps", str(a.gpu_steps)])
        lines += ["## Trainer step vs plain torchvision AMP loop (224 px, batch 256)\n",
                  tabulate(rows, headers="keys", tablefmt="pipe"), ""]
    local = _run(["bench/local_bench.py", "--store", a.store])[0]
    ray = local.pop("ray")
    lines += ["## `local` scale: harness trainer vs naive per-image DataLoader loop\n",
              tabulate([local], headers="keys", tablefmt="pipe"), ""]
    if ray:
        lines += ["## Ray overhead (latest Table 6 run in the store)\n", tabulate([ray], headers="keys", tablefmt="pipe"), ""]
    text = "\n".join(lines) + "\n"
    (HERE / "RESULTS.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
