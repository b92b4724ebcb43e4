"""The stages of ``bench/gpu_suite.sh`` (run one per process, so a stage's time limit kills
only that stage), and the closing summary.

    python bench/gpu_suite.py stage versions|trials|decode|steps|data|compile --out DIR [--cpu-check]
    python bench/gpu_suite.py note STAGE MESSAGE --out DIR
    python bench/gpu_suite.py summary --out DIR

Every row goes to stdout as it comes and is appended to DIR/gpu.json (one JSON object a
line) and DIR/gpu.md. ``--cpu-check``: every stage at a tiny size on the CPU, to prove the script before a GPU is
there: the trials stage forces the fp16 path (HARNESS_CPU_FP16=1, the branches CUDA takes),
the benchmarks run fp32 (CPU fp16 convolutions are slow, and only the script is checked).
Needs only torch and torchvision; stage ``versions`` says which optional modules are missing.
"""
from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from benchlib import REPO, emit  # noqa: E402

OPTIONAL = ("yaml", "ray", "pandas", "tabulate", "matplotlib", "scipy")
HEAVY_FOR_TRAIN = ("yaml", "ray", "pandas", "tabulate", "matplotlib")


def _env(cpu_check: bool, fp16: bool = False) -> dict[str, str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)}
    if cpu_check:
        env["CUDA_VISIBLE_DEVICES"] = ""
        if fp16:
            env["HARNESS_CPU_FP16"] = "1"
    return env


def _python(args: list[str], cpu_check: bool, fp16: bool = False) -> subprocess.CompletedProcess:
    """``python ARGS`` from the repository root; its stdout (the rows) passes straight through."""
    return subprocess.run([sys.executable, *args], cwd=REPO, env=_env(cpu_check, fp16), text=True)


def _version(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


# ---- stage 0 -----------------------------------------------------------------------------
def stage_versions(out: Path, cpu_check: bool) -> bool:
    import torch
    import torchvision

    def row(item: str, value, ok=True) -> None:
        emit({"stage": "versions", "item": item, "value": value, "ok": ok}, out)

    cuda = torch.cuda.is_available()
    row("gpu", torch.cuda.get_device_name() if cuda else "none (CPU)", ok=cuda or cpu_check)
    if cuda:
        props = torch.cuda.get_device_properties(0)
        row("gpu memory GiB / capability", f"{props.total_memory / 2**30:.0f} / {props.major}.{props.minor}")
    smi = shutil.which("nvidia-smi")
    if smi:
        q = subprocess.run([smi, "--query-gpu=driver_version", "--format=csv,noheader"], capture_output=True, text=True)
        row("driver", q.stdout.strip().splitlines()[0] if q.stdout.strip() else q.stderr.strip()[:200])
    else:
        row("driver", "nvidia-smi not found", ok=cpu_check)
    row("torch", torch.__version__)
    row("cuda (torch built with)", torch.version.cuda)
    row("cudnn", torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None)
    row("torchvision", torchvision.__version__)
    row("triton", _version("triton"), ok=_version("triton") is not None or not cuda)
    row("python", sys.version.split()[0])
    gcc = shutil.which("gcc") or shutil.which("cc")
    if gcc:
        first = subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout.splitlines()
        row("gcc (torch.compile)", first[0] if first else gcc)
    else:
        row("gcc (torch.compile)", "missing: torch.compile cannot build its kernels", ok=False)
    header = Path(sysconfig.get_paths()["include"]) / "Python.h"
    row("Python.h (torch.compile)", str(header) if header.exists() else f"missing ({header}): install python3-dev",
        ok=header.exists())
    row("cpu cores available", len(os.sched_getaffinity(0)))
    row("disk free GiB", round(shutil.disk_usage(out).free / 2**30, 1))
    missing = [m for m in OPTIONAL if importlib.util.find_spec(m) is None]
    row("optional modules missing", ", ".join(missing) or "none")
    probe = ("import sys, harness.cli, harness.commands.train, harness.trainer; "
             f"print(','.join(m for m in {HEAVY_FOR_TRAIN!r} if m in sys.modules))")
    got = subprocess.run([sys.executable, "-c", probe], cwd=REPO, env=_env(cpu_check), capture_output=True, text=True)
    heavy = got.stdout.strip()
    row("`python -m harness train` imports", heavy or "torch, torchvision, numpy only", ok=got.returncode == 0 and not heavy)
    if "yaml" in missing:
        row("PyYAML", "missing: `train` does not need it; the paper tables (YAML) cannot be planned here, "
                      "so the Table 6 estimate of stage trials is skipped", ok=True)
    return True


# ---- stage 1 -----------------------------------------------------------------------------
# --cpu-check: the compile stage trains this very trial again, so inductor's cache (shared
# through HARNESS_COMPILE_CACHE) serves it: one cold compile per CPU check, not two
CPU_COMPILE_TRIAL = ("--model", "resnet18", "--recipe", "efficient", "--compile-mode", "reduce-overhead")


def _train_cmd(cpu_check: bool, *args: str) -> list[str]:
    return [sys.executable, "-m", "harness", "train", "--scale", "smoke", "--device",
            "cpu" if cpu_check else "cuda", *args]


def _train_row(out: Path, label: str, done: subprocess.CompletedProcess) -> bool:
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    res = json.loads(lines[-1]) if lines else {}
    ok = done.returncode == 0 and res.get("status") == "done"
    emit({"stage": "trials", "check": label, "status": res.get("status", f"exit {done.returncode}"),
          "top1": res.get("top1"), "img_s": res.get("train_img_per_s"), "precision": res.get("precision"),
          "wall_s": res.get("wall_s"), "error": None if ok else (res.get("error") or done.stderr.strip()[-400:]),
          "ok": ok}, out)
    return ok


def stage_trials(out: Path, cpu_check: bool) -> bool:
    """The smoke trials and the sync check run side by side on a GPU box (checks, not
    timings); the fractional-GPU measurement runs alone after them. On a CPU the trials run
    in the precision a CPU resolves to (fp16 on a CPU is tests/test_fp16_cpu.py's job, and
    slow), the sync check with fp16 forced (the scaler's branches)."""
    teacher = out / "teacher"
    env = _env(cpu_check)
    chains = {  # label -> commands run one after the other
        "mixup": [("smoke mixup (python -m harness train)", _train_cmd(cpu_check, "--model", "resnet18",
                                                                         "--recipe", "mixup"))],
        "compile": [("smoke efficient, --compile-mode reduce-overhead", _train_cmd(cpu_check, *CPU_COMPILE_TRIAL))],
        "distill": [("smoke distillation teacher", _train_cmd(cpu_check, "--model", "resnet101_d", "--recipe",
                                                              "label_smoothing", "--checkpoint-dir", str(teacher))),
                    ("smoke distillation from the teacher's checkpoint",
                     _train_cmd(cpu_check, "--model", "resnet50_d", "--recipe", "distill",
                                "--teacher", str(teacher / "ckpt.pt")))],
    }
    # on a GPU mixup's host draws are CPU tensors (no sync); on a CPU every host read counts
    recipes = ["efficient", "label_smoothing"] + ([] if cpu_check else ["mixup"])
    sync = subprocess.Popen([sys.executable, "bench/sync_check.py", "--device", "cpu" if cpu_check else "cuda",
                             "--steps", "3" if cpu_check else "20", "--out", str(out), *[x for r in recipes for x in ("--recipe", r)]], cwd=REPO,
                            env=_env(cpu_check, fp16=True))
    results: dict[str, bool] = {}

    def run_chain(name: str) -> None:
        ok = True
        for label, cmd in chains[name]:
            if not ok:
                emit({"stage": "trials", "check": label, "error": "skipped: the step before failed", "ok": False}, out)
                continue
            ok = _train_row(out, label, subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True))
        results[name] = ok

    if cpu_check:  # two cores: one at a time (side by side they only thrash)
        sync.wait()
        for name in chains:
            run_chain(name)
    else:
        import threading

        threads = [threading.Thread(target=run_chain, args=(name,)) for name in chains]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    ok = all(results.values()) & (sync.wait() == 0)
    frac = ["--trials", "2", "--scale", "smoke", "--device", "cpu"] if cpu_check else \
        ["--trials", "4", "--scale", "local", "--device", "cuda"]
    ok &= _python(["bench/fractional.py", *frac, "--out", str(out)], cpu_check).returncode == 0
    return ok


# ---- stages 2-5 --------------------------------------------------------------------------
def stage_decode(out: Path, cpu_check: bool) -> bool:
    iters = ["--iters", "3", "--images", "8"] if cpu_check else ["--iters", "40"]
    return _python(["bench/decode_check.py", *iters, "--out", str(out)], cpu_check).returncode == 0


def stage_steps(out: Path, cpu_check: bool) -> bool:
    tiny = ["--tiny", "--precision", "fp32"] if cpu_check else []
    return _python(["bench/step_bench.py", "--compile", "off", *tiny, "--out", str(out)], cpu_check).returncode == 0


def stage_data(out: Path, cpu_check: bool) -> bool:
    tiny = ["--tiny", "--workers", "1", "--precision", "fp32"] if cpu_check else []
    return _python(["bench/data_bench.py", *tiny, "--out", str(out)], cpu_check).returncode == 0


def stage_compile(out: Path, cpu_check: bool) -> bool:
    tiny = ["--tiny", "--figures", "loop", "--compile-mode", "reduce-overhead"] if cpu_check else []
    ok = _python(["bench/step_bench.py", "--compile", "on", *tiny, "--out", str(out)], cpu_check).returncode == 0
    # the folder in effect: a TORCHINDUCTOR_CACHE_DIR the user set wins (harness/compile_cache.py;
    # `make` sets it to .cache/inductor), else the harness's HARNESS_COMPILE_CACHE
    user = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    user = user if user and "torchinductor_" not in Path(user).name else None
    cache = Path(user or os.environ.get("HARNESS_COMPILE_CACHE", out / "inductor"))
    files = sum(1 for _ in cache.rglob("*")) if cache.is_dir() else 0
    emit({"stage": "compile", "check": "compiled kernels land in the compile cache in effect", "folder": str(cache),
          "files": files, "ok": files > 0}, out)
    return ok and files > 0


STAGES = {"versions": stage_versions, "trials": stage_trials, "decode": stage_decode, "steps": stage_steps,
          "data": stage_data, "compile": stage_compile}


# ---- summary -----------------------------------------------------------------------------
def summary(out: Path) -> int:
    """Failed checks, then the last thing printed: card, figure, images/s, ratio."""
    path = out / "gpu.json"
    rows = [json.loads(ln) for ln in path.read_text().splitlines() if ln.strip()] if path.exists() else []
    failed = [r for r in rows if r.get("ok") is False]
    stages = sorted({r.get("stage") for r in rows if r.get("stage")})
    print(f"\n{len(rows)} rows from stages {', '.join(stages)}; {len(failed)} failed check(s)")
    for r in failed:
        what = r.get("check") or r.get("item") or r.get("figure") or "?"
        print(f"  FAILED [{r.get('stage')}] {what}: {r.get('error') or r.get('value') or r}")
    figures = [r for r in rows if r.get("figure") and r.get("img_s") is not None]
    print("\n| card | figure | images/s | ratio | target |")
    print("|---|---|---:|---:|---:|")
    for r in figures:
        ratio = "" if r.get("ratio") is None else f"{r['ratio']:.3f}"
        target = "" if r.get("target") is None else f">= {r['target']}"
        print(f"| {r.get('card', '')} | {r['figure']} | {r['img_s']:.0f} | {ratio} | {target} |")
    return 1 if failed else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    st = sub.add_parser("stage")
    st.add_argument("name", choices=list(STAGES))
    st.add_argument("--cpu-check", action="store_true")
    nt = sub.add_parser("note")
    nt.add_argument("name")
    nt.add_argument("message")
    sm = sub.add_parser("summary")
    for p in (st, nt, sm):
        p.add_argument("--out", type=Path, required=True)
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    if a.cmd == "stage":
        print(f"== stage {a.name}", flush=True)
        return 0 if STAGES[a.name](a.out, a.cpu_check) else 1
    if a.cmd == "note":
        emit({"stage": a.name, "check": "stage", "error": a.message, "ok": False}, a.out)
        return 0
    return summary(a.out)


if __name__ == "__main__":
    sys.exit(main())
