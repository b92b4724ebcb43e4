"""Low-precision (FP16) training -- paper Sec. 3.2.

"[...] store all parameters and activations in FP16 and use FP16 to compute
gradients. At the same time, all parameters have an copy in FP32 for parameter
updating. In addition, multiplying a scalar to the loss to better align the
range of the gradient into FP16 is also a practical solution."

Here this is realised with PyTorch automatic mixed precision: parameters stay
FP32 (the "FP32 master copy"), ``torch.autocast`` runs eligible ops in
FP16/BF16, and ``torch.amp.GradScaler`` does dynamic loss scaling for FP16.
On CPU, autocast's low-precision type is bfloat16, so ``"fp16"`` is resolved
to ``"bf16"`` there (bf16 has FP32's exponent range: no loss scaling needed) --
but only on CPUs with native bf16 arithmetic (AVX512-BF16 or AMX). Elsewhere
(e.g. AVX2-only CPUs, where bf16 convolutions were measured ~10x slower than
fp32) it resolves to ``"fp32"``; the effective precision is what results record.
"""
from __future__ import annotations

import contextlib
import os

import torch

from tricks.trick import Trick

__all__ = ["resolve_precision", "autocast", "make_scaler", "cpu_has_native_bf16", "set_tf32",
           "guard_skipped_first_step", "TRICK"]

TRICK = Trick("fp16", "3.2", {"precision": "fp16"},
              lambda r: r.precision != "fp32")  # bf16 is low precision too

_PRECISIONS = ("fp32", "fp16", "bf16")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16}


def cpu_has_native_bf16() -> bool:
    """True when the CPU computes bf16 natively (x86 flags avx512_bf16 or amx_bf16).

    ``HARNESS_CPU_BF16=1``/``0`` overrides the detection.
    """
    env = os.environ.get("HARNESS_CPU_BF16")
    if env in ("0", "1"):
        return env == "1"
    try:
        with open("/proc/cpuinfo") as fh:
            flags = next((ln for ln in fh if ln.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(requested: str, device_type: str, cpu_bf16: bool | None = None) -> str:
    """Sec. 3.2: map a requested precision to what ``device_type`` runs.

    ``"fp16"`` on ``"cpu"`` becomes ``"bf16"`` (CPU autocast's low-precision
    dtype) when the CPU has native bf16 (``cpu_bf16``; None = detect), else
    ``"fp32"``; ``"fp32"`` and ``"bf16"`` are returned unchanged, as is
    ``"fp16"`` on accelerators (and on a CPU under ``HARNESS_CPU_FP16=1``).  Anything else
    raises ``ValueError``.
    """
    if requested not in _PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}; expected one of {_PRECISIONS}")
    if requested == "fp16" and device_type == "cpu" and os.environ.get("HARNESS_CPU_FP16") != "1":
        native = cpu_has_native_bf16() if cpu_bf16 is None else cpu_bf16
        return "bf16" if native else "fp32"
    return requested


def autocast(precision: str, device_type: str):
    """Sec. 3.2: context manager running the forward pass in ``precision``.

    ``torch.autocast(device_type, dtype=float16/bfloat16)`` for fp16/bf16 (the
    precision is first passed through :func:`resolve_precision`, so fp16 on CPU
    gives bf16), ``contextlib.nullcontext()`` for fp32.
    """
    precision = resolve_precision(precision, device_type)
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type, dtype=_DTYPES[precision])


def make_scaler(precision: str, device_type: str) -> torch.amp.GradScaler:
    """Sec. 3.2 loss scaling: a ``GradScaler`` enabled only for fp16 (CUDA, or a CPU under
    ``HARNESS_CPU_FP16=1``).

    Disabled otherwise (bf16 and fp32 need no loss scaling): a disabled
    scaler's ``scale(loss)`` returns ``loss`` and ``step(opt)`` just calls
    ``opt.step()``, so the training loop can use it unconditionally.
    """
    precision = resolve_precision(precision, device_type)
    return torch.amp.GradScaler(device_type, enabled=precision == "fp16")


def set_tf32(enabled: bool) -> None:
    """TF32 for fp32 matmuls (cuBLAS) and convolutions (cuDNN), process-wide; off is IEEE fp32,
    the paper's FP32 baseline (torch turns cuDNN's on by default). Through the legacy flags,
    which keep both of torch's TF32 APIs readable (setting only the new per-backend ones
    makes ``torch.backends.cudnn.allow_tf32`` raise)."""
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def guard_skipped_first_step(optimizer: torch.optim.Optimizer) -> None:
    """Loss scaling with torch's fused SGD: give momentum buffers a value before step 1.

    Fused SGD creates its momentum buffers with ``torch.empty_like`` on its first step and
    lets the kernel fill them; when the scaler found inf gradients (fp16's first steps at
    scale 2^16 often do) the kernel skips everything, and every later step reads
    uninitialised memory: a NaN model one step later (seen here on a CPU; LibreYOLO PR 771
    on CUDA). Zero buffers give the same first update (b = m * 0 + g = g, dampening 0) and
    are left alone by a skipped step. Groups with dampening, without momentum or not fused
    are left as they are."""
    for group in optimizer.param_groups:
        if not (group.get("fused") and group.get("momentum", 0) and group.get("dampening", 0) == 0):
            continue
        for p in group["params"]:
            state = optimizer.state[p]
            if state.get("momentum_buffer") is None:
                state["momentum_buffer"] = torch.zeros_like(p, memory_format=torch.preserve_format)
