"""Provenance of a result: versions, git commit, device (harness/machine.py), timestamps (docs/design.md)."""
from __future__ import annotations

import datetime as _dt
import subprocess
from pathlib import Path

import torch
import torchvision

from harness import machine


def utc_now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def git_commit(cwd: str | Path | None = None) -> str:
    """The commit of the harness's own checkout ('+dirty' when it has changes), or 'unknown'."""
    where = Path(cwd) if cwd else Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=where, text=True,
                             capture_output=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               cwd=where, text=True, capture_output=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return (sha + ("+dirty" if dirty else "")) if sha else "unknown"


def ray_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("ray")
    except Exception:  # Ray is optional: the trainer runs without it
        return None


def device_name(device: torch.device) -> str:
    """The hardware class and precision policy a trial ran under (harness/machine.py): for a
    CPU its model, the ISA features that change kernels and the threads; for a GPU the card,
    driver, CUDA and cuDNN; then the TF32/oneDNN policy. The gate compares speed only within
    one class and accuracy only at one effective precision."""
    return machine.device_label(device)


def recorded_precision(precision: str, device: torch.device, tf32: bool) -> str:
    """What a trial's numbers were computed in: ``precision``, except an fp32 trial with TF32
    on, on a GPU that has it (compute capability 8.0+), which records ``"tf32"``."""
    if precision == "fp32" and tf32 and device.type == "cuda" and torch.cuda.get_device_capability(device)[0] >= 8:
        return "tf32"
    return precision


def versions() -> dict[str, str | None]:
    return {"torch_version": torch.__version__, "torchvision_version": torchvision.__version__,
            "ray_version": ray_version()}
