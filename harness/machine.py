"""Machine identity: the hardware class a trial ran on, and the precision policy that changes
its numbers (docs/nightly.md, "Machine classes").

The gate compares speed only within one hardware class and accuracy only at one effective
precision, so a trial must say more than ``cpu:x86_64 x1``:

* CPU: the model name from ``/proc/cpuinfo`` and the ISA features that select different
  kernels (:data:`ISA_FLAGS`: AVX2, AVX-512, AVX512-BF16, AMX ...), ATen's dispatch level and
  the thread count;
* CUDA: the card name, compute capability, driver, CUDA and cuDNN versions;
* the precision policy: TF32 on/off for matmuls and cuDNN convolutions (CUDA, compute
  capability >= 8 only: older cards have no TF32), and oneDNN's fp32 precision on CPUs
  (``bf16``/``tf32`` make fp32 matmuls and convolutions lower precision on AMX CPUs).

:func:`device_label` packs both into one device string,
``<hardware class> | <policy>``, e.g.
``cpu:Intel(R) Xeon(R) Processor [avx2 avx512f avx512_bf16 amx_bf16] AVX512 x1 | fp32=ieee``;
:func:`parse_device` reads it back, and also reads the device strings written before it
(``cpu:x86_64 x1``, ``cuda:NVIDIA H100 80GB HBM3``), marked ``legacy``. Imports torch and the
standard library only (``harness train`` needs nothing else).
"""
from __future__ import annotations

import functools
import platform
import re
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

__all__ = ["ISA_FLAGS", "POLICY_SEP", "cpu_info", "machine_class", "precision_policy",
           "class_label", "policy_label", "device_label", "machine_record", "DeviceInfo",
           "parse_device", "effective_precision"]

# x86 and Arm features whose presence changes which kernels oneDNN/ATen run (and so speed,
# and float rounding): vector width, FMA, int8 dot products, native bf16/fp16, AMX tiles.
ISA_FLAGS = ("fma", "avx2", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
             "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8", "amx_fp16",
             "asimd", "asimddp", "sve", "sve2", "bf16", "i8mm")
POLICY_SEP = " | "  # between the hardware class and the precision policy in a device label
_CPUINFO = Path("/proc/cpuinfo")
_NVIDIA_VERSION = Path("/proc/driver/nvidia/version")


# ---- hardware -------------------------------------------------------------------------
def cpu_info(text: str | None = None) -> dict[str, Any]:
    """``{"model": name, "isa": [flags in ISA_FLAGS order]}`` from ``/proc/cpuinfo`` text
    (read when ``text`` is None; the platform's processor name where there is none)."""
    if text is None:
        return dict(_host_cpu_info())
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = " ".join(value.split())
        elif key in ("flags", "features") and not flags:
            flags = set(value.split())
    model = model or platform.processor() or platform.machine() or "unknown"
    return {"model": model, "isa": [f for f in ISA_FLAGS if f in flags]}


@functools.lru_cache(maxsize=1)
def _host_cpu_info() -> tuple[tuple[str, Any], ...]:
    try:
        text = _CPUINFO.read_text()
    except OSError:
        text = ""
    info = cpu_info(text)
    return (("model", info["model"]), ("isa", tuple(info["isa"])))


def _cpu_capability() -> str | None:
    """ATen's CPU dispatch level (DEFAULT, AVX2, AVX512 ...), None where torch lacks it."""
    try:
        return str(torch.backends.cpu.get_cpu_capability())
    except (AttributeError, RuntimeError):
        return None


@functools.lru_cache(maxsize=1)
def _nvidia_driver() -> str | None:
    """The NVIDIA kernel driver's version: /proc/driver/nvidia/version, else nvidia-smi."""
    try:
        m = re.search(r"Kernel Module(?: for \S+)?\s+([0-9][0-9.]+)", _NVIDIA_VERSION.read_text())
        if m:
            return m.group(1)
    except OSError:
        pass
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=10).stdout.split()
        return out[0] if out else None
    except (OSError, subprocess.SubprocessError):
        return None


def machine_class(device: torch.device | str) -> dict[str, Any]:
    """The hardware class of ``device``: what decides which kernels run and how fast.

    CPU: ``kind, model, isa, capability`` (ATen's dispatch level), ``threads``; CUDA: ``kind,
    name, capability`` ("9.0"), ``driver``, ``cuda``, ``cudnn`` (versions; None when unknown).
    """
    device = torch.device(device)
    if device.type == "cuda":
        index = device.index if device.index is not None else torch.cuda.current_device()
        major, minor = torch.cuda.get_device_capability(index)
        cudnn = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
        return {"kind": "cuda", "name": torch.cuda.get_device_name(index),
                "capability": f"{major}.{minor}", "driver": _nvidia_driver(),
                "cuda": torch.version.cuda, "cudnn": cudnn}
    info = cpu_info()
    return {"kind": device.type, "model": info["model"], "isa": list(info["isa"]),
            "capability": _cpu_capability(), "threads": torch.get_num_threads()}


def class_label(cls: dict[str, Any]) -> str:
    """One line naming a hardware class (the part of a device label before ``' | '``)."""
    if cls.get("kind") == "cuda":
        return (f"cuda:{cls.get('name')} sm{cls.get('capability')} driver {cls.get('driver')} "
                f"cuda {cls.get('cuda')} cudnn {cls.get('cudnn')}")
    isa = " ".join(cls.get("isa") or ()) or "-"
    return f"{cls.get('kind', 'cpu')}:{cls.get('model')} [{isa}] {cls.get('capability')} x{cls.get('threads')}"


# ---- precision policy -----------------------------------------------------------------
def _flag(obj: Any, name: str) -> Any:
    """``obj.name`` with deprecation warnings silenced; None where this torch lacks it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return getattr(obj, name)
        except (AttributeError, RuntimeError):
            return None


def precision_policy() -> dict[str, Any]:
    """The process's settings that change fp32 numbers: TF32 for CUDA matmuls and cuDNN
    (``torch.backends.cuda.matmul.allow_tf32``, ``torch.backends.cudnn.allow_tf32``),
    ``torch.get_float32_matmul_precision()``, and oneDNN's fp32 precision on CPUs
    (``torch.backends.mkldnn.{matmul,conv}.fp32_precision``: 'none'/'ieee' = full fp32)."""
    mkldnn = getattr(torch.backends, "mkldnn", None)
    cpu = {op: _flag(getattr(mkldnn, op, None), "fp32_precision") for op in ("matmul", "conv")}
    return {"matmul_tf32": bool(_flag(torch.backends.cuda.matmul, "allow_tf32")),
            "cudnn_tf32": bool(_flag(torch.backends.cudnn, "allow_tf32")),
            "float32_matmul_precision": torch.get_float32_matmul_precision(),
            "cpu_fp32": {k: v for k, v in cpu.items() if v is not None}}


def _tf32_capable(cls: dict[str, Any]) -> bool:
    try:
        return int(str(cls.get("capability", "0")).split(".")[0]) >= 8
    except ValueError:
        return False


def policy_label(cls: dict[str, Any], policy: dict[str, Any]) -> str:
    """The part of the policy that changes numbers on this hardware class: CUDA
    ``tf32=matmul,cudnn`` / ``tf32=cudnn`` / ``tf32=off`` (``tf32=n/a`` before Ampere);
    CPU ``fp32=ieee``, or e.g. ``fp32=matmul:bf16,conv:bf16`` when oneDNN lowers fp32."""
    if cls.get("kind") == "cuda":
        if not _tf32_capable(cls):
            return "tf32=n/a"
        on = [k for k, key in (("matmul", "matmul_tf32"), ("cudnn", "cudnn_tf32")) if policy.get(key)]
        return "tf32=" + (",".join(on) if on else "off")
    lowered = {op: p for op, p in (policy.get("cpu_fp32") or {}).items() if p not in ("none", "ieee")}
    return "fp32=" + (",".join(f"{op}:{p}" for op, p in sorted(lowered.items())) if lowered else "ieee")


def device_label(device: torch.device | str) -> str:
    """The device string a trial records: ``<class_label> | <policy_label>``."""
    cls = machine_class(device)
    return class_label(cls) + POLICY_SEP + policy_label(cls, precision_policy())


def machine_record(device: torch.device | str) -> dict[str, Any]:
    """Everything above as one dict, for a trial's extras or a baseline's entry."""
    cls = machine_class(device)
    policy = precision_policy()
    return {"class": class_label(cls), "policy": policy_label(cls, policy), "machine": cls,
            "precision_policy": policy}


# ---- reading device strings back ------------------------------------------------------
@dataclass(frozen=True)
class DeviceInfo:
    """A recorded device string, read back.

    ``hardware``: the hardware class label; ``policy``: the precision-policy label (None when
    not recorded); ``kind``: cpu | cuda | ...; ``legacy``: written before device labels named
    the hardware class (``cpu:<processor> x<threads>``, ``cuda:<name>``): on a CPU its ISA is
    unknown, on CUDA its driver/CUDA/cuDNN versions.
    """

    hardware: str
    policy: str | None
    kind: str
    legacy: bool


def parse_device(device: str | None) -> DeviceInfo | None:
    """:class:`DeviceInfo` of a recorded device string (None for None/empty)."""
    if not device:
        return None
    kind = device.split(":", 1)[0] if ":" in device else device
    if POLICY_SEP in device:
        hardware, _, policy = device.rpartition(POLICY_SEP)
        return DeviceInfo(hardware.strip(), policy.strip(), kind, False)
    return DeviceInfo(device.strip(), None, kind, True)


def effective_precision(precision: str | None, info: DeviceInfo | None) -> str | None:
    """What a trial's arithmetic really was: its recorded autocast precision (fp32, bf16,
    fp16) plus the policy when that lowers fp32 (``fp32+tf32=cudnn``,
    ``fp32+fp32=matmul:bf16``). None when the precision was not recorded; on CUDA a legacy
    device string leaves the TF32 policy unknown (``fp32+tf32=?``)."""
    if not precision:
        return None
    if info is None:
        return precision
    if info.kind == "cuda" and info.policy is None:
        return f"{precision}+tf32=?"
    if info.policy and info.policy not in ("tf32=off", "tf32=n/a", "fp32=ieee"):
        return f"{precision}+{info.policy}"
    return precision
