"""The gate itself: train a table (unless told not to), compare every cell with its
baseline, write ``reports/regress/<table>-<scale>-<stamp>.md`` and ``.json``.

:func:`regress` is the whole gate as the CLI runs it; its ``train`` argument is the one
place training can be swapped (tests pass a function that fills the store).
"""
from __future__ import annotations

import dataclasses
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harness import provenance
from harness.atomic import write_text_atomic
from harness.errors import HarnessError
from harness.experiments import Plan
from harness.regress.baseline import check_name, read_cells, write_json_atomic
from harness.regress.comparison import CellVerdict, Thresholds, compare, thresholds_for
from harness.regress.markdown import render_markdown
from harness.store import Store

if TYPE_CHECKING:  # the orchestrator imports Ray; the gate imports it only to train
    from harness.orchestrator import RunOptions

__all__ = ["EXIT_PASS", "EXIT_REGRESSION", "EXIT_BAD_INPUT", "REPORTS_DIR", "offset_seeds",
           "train_plan", "write_reports", "RegressResult", "regress"]

EXIT_PASS, EXIT_REGRESSION, EXIT_BAD_INPUT = 0, 1, 2
REPORTS_DIR = Path("reports") / "regress"  # relative to the working directory
Train = Callable[[Plan, str, "RunOptions | None"], Any]  # (plan, store path, options)


# ---- plans ------------------------------------------------------------------------------
def offset_seeds(plan: Plan, offset: int) -> Plan:
    """A copy of ``plan`` whose cell trials use seeds offset..offset+N-1 (new spec hashes).

    Teachers keep their fixed seed: they stand in for a pretrained model.
    """
    if offset == 0:
        return plan
    trials = {key: [dataclasses.replace(t, seed=t.seed + offset) for t in ts]
              for key, ts in plan.trials.items()}
    return dataclasses.replace(plan, seeds=[s + offset for s in plan.seeds], trials=trials)


def train_plan(plan: Plan, store: str, run_options: RunOptions | None = None) -> Any:
    """Train the plan's missing trials into ``store`` through the orchestrator (Ray).

    ``run_options``' own ``store`` is replaced by ``store`` (the gate's, a temporary one
    under ``--rerun``).
    """
    from harness.orchestrator import RunOptions, run_plan

    opts = dataclasses.replace(run_options, store=store) if run_options else RunOptions(store=store)
    return run_plan(plan, opts, argv=list(sys.argv))


# ---- reports ----------------------------------------------------------------------------
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
    """Write the markdown report and the JSON summary (+ every cell) under ``out_dir``
    (default :data:`REPORTS_DIR`) with a fresh time-stamped stem; returns (md, json)."""
    out_dir = Path(out_dir) if out_dir is not None else REPORTS_DIR
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = _report_stem(summary["table"], summary["scale"], out_dir)
        md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
        summary["report"], summary["report_json"] = str(md), str(js)
        write_text_atomic(md, render_markdown(summary, verdicts, th))
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


def regress(plan: Plan, baseline: dict[str, Any], *, store: str, rerun: bool = False,
            no_train: bool = False, run_options: RunOptions | None = None,
            train: Train | None = None, log: Callable[[str], None] | None = None,
            out_dir: Path | None = None) -> RegressResult:
    """Train (unless ``no_train``), compare with ``baseline``, write the reports.

    ``rerun`` trains into a fresh temporary store so nothing is reused; that store is
    removed when the gate passes and kept (its path is in the report) when it fails.
    ``train(plan, store, run_options)`` trains what ``store`` lacks (default
    :func:`train_plan`: the orchestrator, with ``run_options``).
    """
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
        now = read_cells(plan, st)
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
