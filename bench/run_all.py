"""Run the benchmarks this machine can run and write bench/RESULTS.md (card or CPU, versions,
date, numbers).

    python bench/run_all.py [--store results/harness.sqlite ...] [--skip-accuracy] [--out PATH]

Needs only torch and torchvision: on a GPU host with nothing else it runs the GPU rows
(``step_bench.py``: trainer vs a plain AMP + channels_last loop; ``data_bench.py``: JPEG files
vs in-memory vs a plain torchvision loop) and says which rows it skipped and why. Where
Fashion-MNIST is installed it also times the `local` trainer against a naive loop and
trains the `local` ResNet-50-D alone (accuracy and seconds); where pandas and a store exist
it reads whole-table wall times. Every benchmark runs in its own process and its rows are
kept even when a later one fails. Run it on an otherwise idle machine. (The whole GPU
suite, checks included, is ``bash bench/gpu_suite.sh OUTDIR``.)
"""
from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import torch
import torchvision

HERE = Path(__file__).resolve().parent
BUDGET_EPOCHS = 7  # all 60k images: ~140 s on 2 cores, inside accuracy_bench's 180 s goal


def markdown_table(rows: list[dict]) -> str:
    """A GitHub markdown table of ``rows`` (the union of their keys, in first-seen order)."""
    if not rows:
        return "(no rows)"
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]

    def cell(v) -> str:
        if v is None:
            return ""
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "/")

    lines = ["| " + " | ".join(keys) + " |", "|" + "|".join("---" for _ in keys) + "|"]
    lines += ["| " + " | ".join(cell(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def _run(args: list[str]) -> tuple[list[dict], str | None]:
    """(rows printed by ``python ARGS``, error text or None); rows survive a failure."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(HERE.parent), os.environ.get("PYTHONPATH")) if p)}
    out = subprocess.run([sys.executable, *args], cwd=HERE.parent, capture_output=True, text=True, env=env)
    rows = [json.loads(ln) for ln in out.stdout.splitlines() if ln.startswith("{")]
    err = None if out.returncode == 0 else (out.stderr.strip().splitlines() or ["exit %d" % out.returncode])[-1]
    return rows, err


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _fashion_mnist() -> bool:
    try:
        from harness.data import find_fashion_mnist

        find_fashion_mnist()
        return True
    except Exception:
        return False


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--store", nargs="+", default=["results/harness.sqlite"],
                    help="results stores to read table runs from (the latest run per table wins)")
    ap.add_argument("--gpu-steps", type=int, default=30)
    ap.add_argument("--skip-accuracy", action="store_true", help="skip the accuracy trials (~6 minutes)")
    ap.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    a = ap.parse_args()
    sys.path.insert(0, str(HERE.parent))
    cuda = torch.cuda.is_available()
    device = torch.cuda.get_device_name() if cuda else f"CPU {platform.processor() or platform.machine()} ({os.cpu_count()} cores)"
    lines = ["# Benchmark results\n", f"- date: {dt.datetime.now(dt.timezone.utc).isoformat(timespec='seconds')}",
             f"- device: {device}", f"- torch {torch.__version__}, torchvision {torchvision.__version__}, "
             f"python {platform.python_version()}\n"]
    skipped: list[str] = []

    def section(title: str, args: list[str]) -> list[dict]:
        rows, err = _run(args)
        lines.extend([f"## {title}\n", markdown_table(rows), ""])
        if err:
            lines.extend([f"(failed: {err})", ""])
        print(f"{title}: {len(rows)} row(s){' - failed: ' + err if err else ''}", file=sys.stderr, flush=True)
        return rows

    if cuda:
        section("Trainer vs plain torchvision AMP + channels_last loop (224 px, batch 256, FP16)",
                ["bench/step_bench.py", "--steps", str(a.gpu_steps)])
        section("Data path: JPEG files vs in-memory images vs a plain torchvision loop",
                ["bench/data_bench.py"])
    else:
        skipped.append("GPU step and data benchmarks (no CUDA device)")
    if _fashion_mnist():
        section("`local` scale: harness trainer vs naive per-image DataLoader loop", ["bench/local_bench.py"])
        if not a.skip_accuracy:
            threads = str(os.cpu_count() or 1)
            acc, _ = _run(["bench/accuracy_bench.py", "--threads", threads])
            for seed in ("0", "1"):  # the 180 s budget spent on all 60k images, 7 epochs
                more, _ = _run(["bench/accuracy_bench.py", "--threads", threads, "--seed", seed,
                                "--train-images", "0", "--epochs", str(BUDGET_EPOCHS)])
                acc += more
            lines += ["## Miniature ResNet-50-D, full Table 6 recipe, trained alone: the `local` trial "
                      f"(15k images), then all 60k images for {BUDGET_EPOCHS} epochs (two seeds)\n",
                      markdown_table(acc), ""]
    else:
        skipped.append("`local` benchmarks (Fashion-MNIST not installed: `python -m harness data ensure`)")
    if _has("pandas") and any(Path(s).exists() for s in a.store):
        latest: dict[str, dict] = {}
        for store in a.store:
            for row in _run(["bench/table_times.py", "--store", store])[0]:
                if row["table"] not in latest or row["started"] > latest[row["table"]]["started"]:
                    latest[row["table"]] = row
        tables = [latest[t] for t in sorted(latest)]
        if tables:
            lines += ["## Whole-table runs (latest run per table in the store(s); Ray overhead = "
                      "1 - compute / (wall x concurrency))\n", markdown_table(tables), ""]
    else:
        skipped.append("whole-table wall times (needs pandas and a results store)")
    if skipped:
        lines += ["## Skipped here\n"] + [f"- {s}" for s in skipped] + [""]
    text = "\n".join(lines) + "\n"
    a.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
