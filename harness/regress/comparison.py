"""The gate's comparison: thresholds per scale, seed statistics and per-cell verdicts.

Pure: dicts in, verdicts out, nothing read or trained, so it is tested on hand-made numbers.
Both sides are per-seed entries in the baseline file's format (``seed``, ``status``, the
gated metric, ``img_per_s``, ``device``; :mod:`harness.regress.baseline`).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass
from typing import Any

from harness.errors import unknown
from harness.metrics import number

__all__ = ["Key", "Thresholds", "THRESHOLDS", "thresholds_for", "CellVerdict", "FAIL_VERDICTS",
           "pooled_sd", "cell_device", "baseline_cells", "compare"]

Key = tuple[str, str]  # (row, column)
FAIL_VERDICTS = ("regression", "missing", "failed")


@dataclass(frozen=True)
class Thresholds:
    """How far a cell may fall before the gate fails.

    floor: smallest allowed drop of the gated metric (top-1, mAP, mIoU), in points.
    k: allowed drop in pooled per-seed standard deviations (the larger of the two wins).
    speed_frac: allowed fractional drop of training images/s on the same device.
    """

    floor: float
    k: float
    speed_frac: float


THRESHOLDS: dict[str, Thresholds] = {
    # Smoke trains a few iterations on 256 synthetic images and tests on 128 (one image is
    # 0.78 points): accuracy is plumbing noise, so it never gates (floor 100 points).
    "smoke": Thresholds(floor=100.0, k=3.0, speed_frac=0.5),
    # Local: Fashion-MNIST (10,000 test images: ~0.3 points of sampling noise per seed at
    # ~90% accuracy) on shared CPUs running two trials at a time.
    "local": Thresholds(floor=1.0, k=3.0, speed_frac=0.25),
    # Paper: ImageNet on a dedicated GPU; 0.3 points is the size of the paper's smaller
    # gains (Table 5: ResNet-50-C +0.21, -D +0.29), so a drop that large erases a trick.
    "paper": Thresholds(floor=0.3, k=3.0, speed_frac=0.05),
}


def thresholds_for(scale: str) -> Thresholds:
    if scale not in THRESHOLDS:
        raise unknown("scale (no regression thresholds)", scale, THRESHOLDS)
    return THRESHOLDS[scale]


@dataclass
class CellVerdict:
    """One cell's comparison. ``verdict`` is the accuracy verdict: pass | improved |
    regression | missing | failed | new; ``speed_verdict``: pass | improved | regression |
    not comparable | n/a."""

    row: str
    column: str
    verdict: str
    base_mean: float | None = None
    now_mean: float | None = None
    delta: float | None = None
    threshold: float | None = None  # allowed drop of the metric, points
    pooled_sd: float | None = None
    n_base: int = 0
    n_now: int = 0
    speed_verdict: str = "n/a"
    base_speed: float | None = None
    now_speed: float | None = None
    speed_delta: float | None = None  # fractional change, now / base - 1
    speed_min: float | None = None  # lowest images/s that still passes
    base_device: str | None = None
    now_device: str | None = None
    note: str = ""
    metric: str = "top1"  # the gated metric: top1, or a transfer table's map / miou

    @property
    def cell(self) -> str:
        return f"{self.row} / {self.column}"

    @property
    def failed(self) -> bool:
        return self.verdict in FAIL_VERDICTS or self.speed_verdict == "regression"

    def reason(self) -> str:
        """One phrase saying why the cell fails (empty when it passes)."""
        parts = []
        if self.verdict == "regression":
            parts.append(f"{self.metric} {self.now_mean:.2f} < baseline {self.base_mean:.2f} - "
                         f"{self.threshold:.2f}")
        elif self.verdict in ("missing", "failed"):
            parts.append(f"{self.verdict}" + (f" ({self.note})" if self.note else ""))
        if self.speed_verdict == "regression":
            parts.append(f"speed {self.now_speed:.1f} img/s < {self.speed_min:.1f} "
                         f"(baseline {self.base_speed:.1f})")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"cell": self.cell, **asdict(self), "failed": self.failed}


# ---- statistics -------------------------------------------------------------------------
def _values(trials: list[dict[str, Any]], key: str) -> list[float]:
    return [v for v in (number(t.get(key)) for t in trials) if v is not None]


def pooled_sd(base: list[float], now: list[float]) -> float:
    """sqrt((var_b (n_b - 1) + var_n (n_n - 1)) / (n_b + n_n - 2)); 0 when not computable."""
    nb, nn = len(base), len(now)
    if nb + nn - 2 <= 0:
        return 0.0
    vb = statistics.variance(base) if nb >= 2 else 0.0
    vn = statistics.variance(now) if nn >= 2 else 0.0
    return math.sqrt((vb * (nb - 1) + vn * (nn - 1)) / (nb + nn - 2))


def _mean(xs: list[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def cell_device(trials: list[dict[str, Any]]) -> str | None:
    """The device of a cell's trials: one string, or 'mixed: a | b' when they differ."""
    devices = sorted({t["device"] for t in trials if t.get("device")})
    if not devices:
        return None
    return devices[0] if len(devices) == 1 else "mixed: " + " | ".join(devices)


# ---- the comparison ---------------------------------------------------------------------
def _speed(v: CellVerdict, base_trials: list[dict], base_dev: str | None,
           now_trials: list[dict], th: Thresholds) -> None:
    v.base_speed = _mean(_values(base_trials, "img_per_s"))
    v.now_speed = _mean(_values(now_trials, "img_per_s"))
    v.base_device, v.now_device = base_dev, cell_device(now_trials)
    if v.base_speed is None or v.now_speed is None:
        v.speed_verdict = "n/a"
        return
    v.speed_delta = v.now_speed / v.base_speed - 1.0 if v.base_speed else None
    if not v.base_device or v.base_device != v.now_device:
        v.speed_verdict = "not comparable"
        return
    v.speed_min = v.base_speed * (1.0 - th.speed_frac)
    if v.now_speed < v.speed_min:
        v.speed_verdict = "regression"
    elif v.now_speed > v.base_speed * (1.0 + th.speed_frac):
        v.speed_verdict = "improved"
    else:
        v.speed_verdict = "pass"


def _problem(now_trials: list[dict[str, Any]], metric: str = "top1") -> tuple[str, str] | None:
    """('failed'|'missing', note) when a cell's trials did not all finish, else None."""
    if not now_trials:
        return "missing", "no trials"
    bad = [t for t in now_trials if t.get("status") in ("failed", "diverged")]
    if bad:
        return "failed", ", ".join(f"seed {t.get('seed')} {t.get('status')}" for t in bad)
    missing = [t for t in now_trials if t.get("status") != "done"]
    if missing:
        return "missing", ", ".join(f"seed {t.get('seed')} {t.get('status', 'missing')}"
                                    for t in missing)
    if not _values(now_trials, metric):
        return "failed", f"done without a {metric} value"
    return None


def baseline_cells(baseline: dict[str, Any]) -> dict[Key, dict[str, Any]]:
    """The baseline's cells keyed by (row, column)."""
    return {(c["row"], c["column"]): c for c in baseline["cells"]}


def compare(baseline: dict[str, Any], now: dict[Key, list[dict[str, Any]]],
            thresholds: Thresholds) -> list[CellVerdict]:
    """Verdicts for every baseline cell (then any cell only ``now`` has), in that order.

    ``now`` maps (row, column) to per-seed dicts with at least: seed, status ('done' |
    'failed' | 'diverged' | 'missing'), top1, img_per_s, device.
    """
    base = baseline_cells(baseline)
    metric = baseline.get("metric", "top1")  # baselines before transfer gating: top-1
    out: list[CellVerdict] = []
    for key in list(base) + [k for k in now if k not in base]:
        row, col = key
        bcell = base.get(key)
        now_trials = now.get(key, [])
        b_trials = [t for t in (bcell or {}).get("trials", []) if t.get("status", "done") == "done"]
        b_vals = _values(b_trials, metric)
        n_vals = _values([t for t in now_trials if t.get("status") == "done"], metric)
        v = CellVerdict(row=row, column=col, verdict="pass", n_base=len(b_vals), n_now=len(n_vals),
                        base_mean=_mean(b_vals), now_mean=_mean(n_vals), metric=metric)
        out.append(v)
        problem = _problem(now_trials, metric)
        if bcell is None:
            v.note = "not in the baseline"
        if problem is not None:
            v.verdict, note = problem
            v.note = "; ".join(x for x in (note, v.note) if x)
            continue
        if v.base_mean is not None:
            v.delta = v.now_mean - v.base_mean
            v.pooled_sd = pooled_sd(b_vals, n_vals)
            v.threshold = max(thresholds.floor, thresholds.k * v.pooled_sd)
            if v.now_mean < v.base_mean - v.threshold:
                v.verdict = "regression"
            elif v.now_mean > v.base_mean + v.threshold:
                v.verdict = "improved"
        else:
            v.verdict = "new"
        base_dev = (bcell or {}).get("device") or cell_device(b_trials)
        _speed(v, b_trials, base_dev, [t for t in now_trials if t.get("status") == "done"], thresholds)
    return out
