"""What a cell's trials ran on, and whether two sides may be compared.

* **speed** only within one hardware class (and at one effective precision);
* **accuracy** only at one effective precision (autocast precision + the policy that lowers
  fp32: TF32 on CUDA, oneDNN's fp32 precision on CPUs);
* the **determinism tier** (same seed, same top-1 to the last digit) only on a CPU, within
  one fully recorded hardware class, precision and torch version.

Device strings come from :func:`harness.machine.device_label` (``<class> | <policy>``).
Strings written before it (``cpu:x86_64 x1``) do not name the CPU's ISA; for those the class
is derived from what the trials themselves show: a recipe asking for fp16 runs bf16 on a CPU
with native bf16 (AVX512-BF16/AMX) and fp32 elsewhere (``tricks/mixed_precision.py``), so
``cpu:x86_64 x1 [native bf16: yes]`` and ``... [native bf16: no]`` are two classes. Without
such a trial the class is ``[ISA not recorded]`` and its speed is compared with nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from harness.machine import DeviceInfo, effective_precision, parse_device

__all__ = ["Identity", "identity", "speed_comparable", "accuracy_comparable",
           "determinism_applies", "UNRECORDED_ISA"]

UNRECORDED_ISA = "[ISA not recorded]"
_UNRECORDED_GPU = "[driver/CUDA/cuDNN not recorded]"


@dataclass(frozen=True)
class Identity:
    """One side of one cell. ``hardware``: class label (None without a device); ``known``:
    a class speed may be compared on (False for a legacy CPU string without evidence, or
    mixed devices); ``recorded``: the full class was recorded (not derived); ``precision``:
    effective precision (None: not recorded); ``software``: torch version(s)."""

    hardware: str | None
    known: bool
    recorded: bool
    kind: str | None
    precision: str | None
    software: str | None
    note: str = ""


def _one(values: set[Any]) -> Any:
    """The single value of a set, 'mixed: a | b' for several, None for none."""
    values = {v for v in values if v is not None}
    if not values:
        return None
    return next(iter(values)) if len(values) == 1 else "mixed: " + " | ".join(sorted(map(str, values)))


def _legacy_cpu_class(device: str, trials: list[dict[str, Any]]) -> tuple[str, bool, str]:
    """A legacy CPU string's class from its fp16 trials (see the module docstring)."""
    seen = {t.get("precision") for t in trials if t.get("device") == device
            and t.get("requested_precision") == "fp16" and t.get("precision") in ("bf16", "fp32")}
    if seen == {"bf16"}:
        return f"{device} [native bf16: yes]", True, "class derived: fp16 recipe ran bf16"
    if seen == {"fp32"}:
        return f"{device} [native bf16: no]", True, "class derived: fp16 recipe ran fp32"
    if seen:
        return f"{device} [bf16 and fp32 both seen]", False, "fp16 recipes ran bf16 and fp32"
    return f"{device} {UNRECORDED_ISA}", False, "legacy device string: ISA not recorded"


def _precision(t: dict[str, Any], info: DeviceInfo | None) -> str | None:
    """A trial's effective precision; when not recorded (format-1 baselines), what its
    recipe's precision must have been where that does not depend on the CPU."""
    prec = t.get("precision")
    if not prec:
        req = t.get("requested_precision")
        kind = info.kind if info else None
        if req in ("fp32", "bf16") or (req == "fp16" and kind == "cuda"):
            prec = req
        else:
            return None
    return effective_precision(prec, info)


def identity(trials: list[dict[str, Any]], software: str | None = None,
             pool: list[dict[str, Any]] | None = None) -> Identity:
    """The identity of one side of a cell from its done trials (``software``: the torch
    version to assume for trials that do not record one, e.g. a baseline's provenance;
    ``pool``: every trial of that side, whose fp16 trials show a legacy CPU's bf16 support
    for cells whose own recipe does not ask for fp16)."""
    devices = {t.get("device") for t in trials if t.get("device")}
    precs = {_precision(t, parse_device(t.get("device"))) for t in trials}
    precision = None if None in precs else _one(precs)
    sw = _one({t.get("torch_version") or software for t in trials})
    if len(devices) != 1:
        hw = _one(devices)
        return Identity(hw, False, False, None, precision, sw,
                        "no device recorded" if not devices else "trials ran on several devices")
    device = next(iter(devices))
    info = parse_device(device)
    assert info is not None
    if not info.legacy:
        return Identity(info.hardware, True, True, info.kind, precision, sw)
    if info.kind == "cpu":
        hw, known, note = _legacy_cpu_class(device, pool if pool is not None else trials)
        return Identity(hw, known, False, "cpu", precision, sw, note)
    return Identity(f"{device} {_UNRECORDED_GPU}", True, False, info.kind, precision, sw,
                    "legacy device string: driver/CUDA/cuDNN not recorded")


def speed_comparable(base: Identity, now: Identity) -> tuple[bool, str]:
    """(True, '') when speed may be compared, else (False, the reason)."""
    for side, ident in (("baseline", base), ("now", now)):
        if not ident.known:
            return False, f"{side} hardware class unknown ({ident.note}: {ident.hardware})"
    if base.hardware != now.hardware:
        return False, f"hardware class differs: baseline {base.hardware} vs now {now.hardware}"
    if base.precision is None or base.precision != now.precision:
        return False, f"precision differs: baseline {base.precision or 'not recorded'} vs now {now.precision}"
    return True, ""


def accuracy_comparable(base: Identity, now: Identity) -> tuple[bool, str]:
    """(True, '') when both sides ran at the same known effective precision."""
    if base.precision is None:
        return False, ("baseline precision not recorded (a format-1 baseline; an fp16 recipe "
                       "runs bf16 or fp32 depending on the CPU): re-freeze it")
    if now.precision is None:
        return False, "today's precision not recorded"
    if "?" in base.precision or "?" in now.precision:
        return False, f"TF32 policy not recorded: baseline {base.precision} vs now {now.precision}"
    if base.precision != now.precision:
        return False, f"precision differs: baseline {base.precision} vs now {now.precision}"
    return True, ""


def determinism_applies(base: Identity, now: Identity) -> tuple[bool, str]:
    """Same seed must give the same number: CPU, one recorded class, precision, torch."""
    if base.kind != "cpu" or now.kind != "cpu":
        return False, "GPU kernels are not bit-deterministic" if "cuda" in (base.kind, now.kind) \
            else "no device recorded"
    if not (base.recorded and now.recorded):
        return False, "hardware class not recorded (legacy device string)"
    if base.hardware != now.hardware:
        return False, "another hardware class"
    if base.precision != now.precision:
        return False, "another precision"
    if not base.software or base.software != now.software:
        return False, f"other software (torch {base.software} vs {now.software})"
    return True, ""
