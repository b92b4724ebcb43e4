"""The nightly regression gate: run a table, compare every cell with a frozen baseline.

* Accuracy (top-1; a transfer table's own metric, mAP or mIoU): a cell regresses when ``now_mean < base_mean - max(floor, k * pooled_sd)``
  where ``pooled_sd`` pools the per-seed standard deviations of baseline and now (0 when
  it cannot be computed, e.g. one seed on each side). A rise by more than the same margin
  is reported as "improved", never as a failure.
* Speed (training images/s): a cell regresses when ``now < base * (1 - speed_frac)``;
  compared only when both sides ran on the same device string, else "not comparable".
* A cell whose trials failed, diverged or are missing is a failure.

``floor``, ``k`` and ``speed_frac`` depend on the scale (:data:`THRESHOLDS`; docs/nightly.md
explains the choices). :func:`compare` is pure (dicts in, verdicts out) so it is tested
without training anything; :func:`regress` is the whole gate as the CLI runs it.
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

from harness.baseline import (Key, baseline_cells, baseline_path, cell_device, check_name, collect,
                              freeze, load_baseline, save_command, write_json_atomic)
from harness.errors import HarnessError
from harness.report.tables import METRIC_NAMES

__all__ = ["Thresholds", "THRESHOLDS", "thresholds_for", "CellVerdict", "compare", "pooled_sd",
           "offset_seeds", "load_baseline", "freeze", "collect", "regress", "RegressResult",
           "REPORTS_DIR", "EXIT_PASS", "EXIT_REGRESSION", "EXIT_BAD_INPUT"]

EXIT_PASS, EXIT_REGRESSION, EXIT_BAD_INPUT = 0, 1, 2
REPORTS_DIR = Path("reports") / "regress"  # relative to the working directory
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
        from harness.errors import unknown

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
    out = []
    for t in trials:
        v = t.get(key)
        if v is not None and not (isinstance(v, float) and math.isnan(v)):
            out.append(float(v))
    return out


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


# ---- plans ------------------------------------------------------------------------------
def offset_seeds(plan, offset: int):
    """A copy of ``plan`` whose cell trials use seeds offset..offset+N-1 (new spec hashes).

    Teachers keep their fixed seed: they stand in for a pretrained model.
    """
    if offset == 0:
        return plan
    trials = {key: [dataclasses.replace(t, seed=t.seed + offset) for t in ts]
              for key, ts in plan.trials.items()}
    return dataclasses.replace(plan, seeds=[s + offset for s in plan.seeds], trials=trials)


def train_plan(plan, store: str, run_options: dict[str, Any] | None = None) -> Any:
    """Train the plan's missing trials into ``store`` through the orchestrator (Ray).

    A module-level function so tests can replace it without starting Ray.
    """
    from harness.orchestrator import RunOptions, run_plan

    return run_plan(plan, RunOptions(store=store, **(run_options or {})), argv=list(sys.argv))


# ---- reports ----------------------------------------------------------------------------
def _f(x: float | None, fmt: str = ".2f", sign: bool = False) -> str:
    if x is None:
        return "-"
    return format(x, ("+" if sign else "") + fmt)


def _acc_rows(verdicts: list[CellVerdict]) -> list[list[str]]:
    return [[v.cell, _f(v.base_mean), _f(v.now_mean), _f(v.delta, sign=True),
             "-" if v.threshold is None else f"-{v.threshold:.2f}", v.verdict
             + (f" ({v.note})" if v.note else "")] for v in verdicts]


def _speed_rows(verdicts: list[CellVerdict], th: Thresholds) -> list[list[str]]:
    rows = []
    for v in verdicts:
        delta = "-" if v.speed_delta is None else f"{v.speed_delta * 100:+.1f}%"
        thr = "-" if v.speed_min is None else f">= {v.speed_min:.1f} (-{th.speed_frac * 100:.0f}%)"
        verdict = v.speed_verdict
        if verdict == "not comparable":
            verdict += f" ({v.base_device} vs {v.now_device})"
        rows.append([v.cell, _f(v.base_speed, ".1f"), _f(v.now_speed, ".1f"), delta, thr, verdict])
    return rows


def render_markdown(summary: dict[str, Any], verdicts: list[CellVerdict], th: Thresholds) -> str:
    from tabulate import tabulate

    status = "PASS" if summary["status"] == "pass" else "FAIL"
    bprov = summary.get("baseline_provenance") or {}
    lines = [
        f"# Regression gate: {summary['table']} @ {summary['scale']}: {status}",
        "",
        f"- date: {summary['created_at']}; commit: {summary['git_commit']}",
        f"- baseline: `{summary['baseline']}` (commit {bprov.get('git_commit', '?')}, "
        f"{bprov.get('created_at', '?')}, seeds {summary.get('baseline_seeds')})",
        f"- now: seeds {summary['seeds']} from `{summary['store']}`"
        + (" (fresh temporary store: every trial retrained)" if summary.get("rerun") else "")
        + (" (stored results only, nothing trained)" if summary.get("no_train") else ""),
        f"- accuracy gate: regression when now < baseline - max({th.floor:g}, {th.k:g} x pooled sd)"
        + (" (never, at this scale)" if th.floor >= 100 else ""),
        f"- speed gate: regression when now < baseline x (1 - {th.speed_frac:g}), same device only",
    ]
    if summary.get("kept_store"):
        lines.append(f"- the temporary store was kept for inspection: `{summary['kept_store']}`")
    if summary["failures"]:
        lines += ["", "**Failing cells:**", ""] + [f"- {f}" for f in summary["failures"]]
    headers = ["cell", "baseline mean", "now mean", "delta", "threshold", "verdict"]
    metric = verdicts[0].metric if verdicts else "top1"
    title = METRIC_NAMES.get(metric, metric)
    lines += ["", f"## {title}", "",
              tabulate(_acc_rows(verdicts), headers=headers, tablefmt="github", disable_numparse=True),
              "", "## Training speed (images/s)", "",
              tabulate(_speed_rows(verdicts, th), headers=headers, tablefmt="github",
                       disable_numparse=True), ""]
    return "\n".join(lines)


def _report_stem(table: str, scale: str, out_dir: Path) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    stem = out_dir / f"{table}-{scale}-{stamp}"
    i = 1
    while stem.with_suffix(".md").exists() or stem.with_suffix(".json").exists():
        stem = out_dir / f"{table}-{scale}-{stamp}-{i}"
        i += 1
    return stem


def write_reports(summary: dict[str, Any], verdicts: list[CellVerdict], th: Thresholds,
                  out_dir: Path | None = None) -> tuple[Path, Path]:
    out_dir = Path(out_dir) if out_dir is not None else REPORTS_DIR
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = _report_stem(summary["table"], summary["scale"], out_dir)
        md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
        summary["report"], summary["report_json"] = str(md), str(js)
        tmp = md.with_name(f".{md.name}.tmp")
        tmp.write_text(render_markdown(summary, verdicts, th))
        tmp.replace(md)
        write_json_atomic(js, {**summary, "cells": [v.to_json() for v in verdicts]})
    except OSError as exc:
        raise HarnessError(f"cannot write the regression report under {out_dir}: "
                           f"{exc.strerror or exc}") from None
    return md, js


# ---- the gate ---------------------------------------------------------------------------
@dataclass
class RegressResult:
    exit_code: int
    verdicts: list[CellVerdict]
    report: Path
    report_json: Path
    summary: dict[str, Any] = field(default_factory=dict)

    @property
    def message(self) -> str:
        s = self.summary
        head = (f"regress {s['table']} @ {s['scale']}: {len(self.verdicts)} cells, "
                f"{len(s['failures'])} failing")
        if self.exit_code == EXIT_PASS:
            return f"{head}: PASS; report {self.report}"
        return f"{head}: REGRESSION in " + "; ".join(s["failures"]) + f"; report {self.report}"


def resolve_baseline(exp_name: str, table_arg: str, scale: str, name: str | None,
                     baseline_file: str | None, store: str | None = None,
                     default_store: str = "results/harness.sqlite") -> dict[str, Any]:
    """Load the baseline (explicit file, or the named/default one) or raise a one-line
    HarnessError naming the expected path and the command that creates it."""
    if baseline_file:
        path = Path(baseline_file)
        how = f"pass an existing file to --baseline, or create one with: {save_command(table_arg, scale, name)}"
    else:
        path = baseline_path(exp_name, scale, name)
        how = "create it with: " + save_command(table_arg, scale, name)
    if store and store != default_store:
        how += f" --store {store}"
    if not path.is_file():
        raise HarnessError(f"no baseline at {path}; {how}")
    data = load_baseline(path)
    if data.get("table") != exp_name or data.get("scale") != scale:
        raise HarnessError(f"baseline {path} is for {data.get('table')} @ {data.get('scale')}, "
                           f"not {exp_name} @ {scale}; {how}")
    data["_path"] = str(path)
    return data


def regress(plan, baseline: dict[str, Any], *, store: str, rerun: bool = False,
            no_train: bool = False, run_options: dict[str, Any] | None = None,
            train: Callable[..., Any] | None = None, log: Callable[[str], None] | None = None,
            out_dir: Path | None = None) -> RegressResult:
    """Train (unless ``no_train``), compare with ``baseline``, write the reports.

    ``rerun`` trains into a fresh temporary store so nothing is reused; that store is
    removed when the gate passes and kept (its path is in the report) when it fails.
    """
    from harness import provenance
    from harness.store import Store

    if rerun and no_train:
        raise HarnessError("--rerun and --no-train contradict each other; pass one of them")
    check_name(plan.experiment.name, "table name")  # it becomes the report's file name
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    train = train or train_plan
    th = thresholds_for(plan.scale.name)
    tmp_dir = None
    if rerun:
        tmp_dir = Path(tempfile.mkdtemp(prefix="harness-regress-"))
        store = str(tmp_dir / "harness.sqlite")
        log(f"--rerun: training every trial into the fresh store {store}")
    if not no_train:
        Store(store).close()  # an unwritable or corrupt store fails here, before Ray starts
        train(plan, store, run_options)
    with Store(store, readonly=True) as st:
        now = collect(plan, st)
    verdicts = compare(baseline, now, th)
    failures = [f"{v.cell}: {v.reason()}" for v in verdicts if v.failed]
    summary = {
        "table": plan.experiment.name, "scale": plan.scale.name,
        "status": "pass" if not failures else "regression",
        "exit_code": EXIT_PASS if not failures else EXIT_REGRESSION,
        "failures": failures, "created_at": provenance.utc_now(),
        "git_commit": provenance.git_commit(), "baseline": baseline.get("_path"),
        "baseline_provenance": baseline.get("provenance"), "baseline_seeds": baseline.get("seeds"),
        "seeds": list(plan.seeds), "store": store, "rerun": rerun, "no_train": no_train,
        "thresholds": asdict(th),
        "counts": {verdict: sum(1 for v in verdicts if v.verdict == verdict)
                   for verdict in sorted({v.verdict for v in verdicts})},
    }
    if tmp_dir is not None and failures:
        summary["kept_store"] = store  # for the post-mortem: logs and checkpoints are there
    md, js = write_reports(summary, verdicts, th, out_dir)
    if tmp_dir is not None and not failures:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return RegressResult(summary["exit_code"], verdicts, md, js, summary)
