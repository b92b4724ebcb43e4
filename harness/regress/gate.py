"""The gate itself: train a table (unless told not to), pick the baseline entry of today's
machine class, run the night's checks, give the cells in the rerun band more seeds (look
again, within ``budget`` trials), write ``reports/regress/<table>-<scale>-<stamp>.md`` and
``.json``, and append the night to the store's ``gate_history``.

:func:`regress` is the whole gate as the CLI runs it; its ``train`` argument is the one
place training can be swapped (tests pass a function that fills the store).
"""
from __future__ import annotations

import dataclasses
import math
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from harness import provenance
from harness.atomic import write_text_atomic
from harness.errors import HarnessError
from harness.experiments import Plan
from harness.machine import device_label, parse_device
from harness.regress.baseline import (check_name, entry_class, read_cells, select_entry,
                                      write_json_atomic)
from harness.regress.checks import FAMILY_METHOD, SPENDING, Looks
from harness.regress.comparison import (CellVerdict, Evaluation, Key, Thresholds, Trick,
                                        run_night, thresholds_for)
from harness.regress.history import append_history, history_rows
from harness.regress.markdown import render_markdown
from harness.spec import TrialSpec
from harness.store import Store
from harness.trial import pick_device

if TYPE_CHECKING:  # the orchestrator imports Ray; the gate imports it only to train
    from harness.orchestrator import RunOptions

__all__ = ["EXIT_PASS", "EXIT_REGRESSION", "EXIT_BAD_INPUT", "REPORTS_DIR", "offset_seeds",
           "train_plan", "write_reports", "GateOptions", "RegressResult", "regress", "parents_of",
           "models_of", "column_tricks"]

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


def write_reports(summary: dict[str, Any], ev: Evaluation, th: Thresholds,
                  out_dir: Path | None = None) -> tuple[Path, Path]:
    """Write the markdown report and the JSON summary (+ every cell and check) under
    ``out_dir`` (default :data:`REPORTS_DIR`) with a fresh time-stamped stem; (md, json)."""
    out_dir = Path(out_dir) if out_dir is not None else REPORTS_DIR
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        stem = _report_stem(summary["table"], summary["scale"], out_dir)
        md, js = stem.with_suffix(".md"), stem.with_suffix(".json")
        summary["report"], summary["report_json"] = str(md), str(js)
        write_text_atomic(md, render_markdown(summary, ev, th))
        write_json_atomic(js, {**summary, "cells": [v.to_json() for v in ev.cells],
                               "checks": [c.to_json() for c in ev.checks]})
    except OSError as exc:
        raise HarnessError(f"cannot write the regression report under {out_dir}: "
                           f"{exc.strerror or exc}") from None
    return md, js


# ---- the gate ---------------------------------------------------------------------------
@dataclass(frozen=True)
class GateOptions:
    """How the gate decides (CLI: ``--rerun-undecided``, ``--budget``, ``--max-seeds``,
    ``--strict-determinism``, ``--machine``, ``--no-speed``, ``--no-history``).

    rerun_undecided: give checks in the rerun band more seeds and look again.
    budget: extra cell trials a night may train for that (None: as many as the plan has).
    max_seeds: seeds a cell may grow to (None: three times the plan's).
    strict_determinism: a cell whose computation changed fails (else a note).
    machine: the baseline entry (machine class) to compare with (None: today's class).
    speed: gate training speed (off: a shared runner whose load differs from the baseline's).
    history: append the night to the store's gate_history.
    """

    rerun_undecided: bool = True
    budget: int | None = None
    max_seeds: int | None = None
    strict_determinism: bool = False
    machine: str | None = None
    speed: bool = True
    history: bool = True


@dataclass
class RegressResult:
    exit_code: int
    verdicts: list[CellVerdict]
    report: Path
    report_json: Path
    summary: dict[str, Any] = field(default_factory=dict)
    evaluation: Evaluation | None = None

    @property
    def message(self) -> str:
        s = self.summary
        head = (f"regress {s['table']} @ {s['scale']}: {len(self.verdicts)} cells, "
                f"{len(s['checks_run'])} checks, {len(s['failures'])} failing")
        if self.exit_code == EXIT_PASS:
            tail = ""
            if s["undecided"]:
                tail = " with UNDECIDED " + "; ".join(s["undecided"])
            if s["computation_changed"]:
                tail += f"; computation changed in {len(s['computation_changed'])} cell(s)"
            return f"{head}: PASS{tail}; report {self.report}"
        return f"{head}: REGRESSION in " + "; ".join(s["failures"]) + f"; report {self.report}"


def models_of(plan: Plan) -> dict[tuple[str, str], str]:
    """Each cell's model group: its row where the table's rows name the models and its
    columns do not (Tables 2, 3, 5: one model a row), else its column (Tables 4, 6, 8, 9)."""
    exp = plan.experiment
    by_row = all(r.model for r in exp.rows) and not any(c.model for c in exp.columns)
    return {key: key[0] if by_row else key[1] for key in plan.trials}


def parents_of(plan: Plan) -> dict[str, str]:
    """Row -> the row its trick is measured against, for stacked tables (as the reports:
    ``after`` when set, else the previous row); {} otherwise."""
    exp = plan.experiment
    if not exp.stacked:
        return {}
    labels = [r.label for r in exp.rows]
    out = {}
    for i, row in enumerate(exp.rows):
        parent = row.after if row.after is not None else (labels[i - 1] if i > 0 else None)
        if parent is not None:
            out[row.label] = parent
    return out


def column_tricks(plan: Plan) -> list[Trick]:
    """A table with a ``reference_column`` (Table 3): each other column is a trick measured
    against that column, row by row (a row a model), as its verdicts are; [] otherwise."""
    ref = plan.experiment.reference_column
    if ref is None:
        return []
    rows = list(dict.fromkeys(r for r, _ in plan.trials))
    columns = list(dict.fromkeys(c for _, c in plan.trials if c != ref))
    return [Trick(col, ref, tuple(((r, col), (r, ref)) for r in rows
                                  if (r, col) in plan.trials and (r, ref) in plan.trials))
            for col in columns]


def _with_seed(spec: TrialSpec, seed: int) -> TrialSpec:
    """``spec`` with another seed (a transfer trial's backbone too)."""
    backbone = spec.backbone and dataclasses.replace(spec.backbone, seed=seed)
    return dataclasses.replace(spec, seed=seed, backbone=backbone)


def _more_seeds(plan: Plan, cur: Plan, cells: list[Key], step: int, max_seeds: int,
                budget: int) -> tuple[Plan, Plan, int]:
    """(what to train, the whole plan after it, trials added) for ``cells``, most suspicious
    first, ``step`` seeds each up to ``max_seeds``, within ``budget`` trials."""
    extra: dict[Key, list[TrialSpec]] = {}
    used = 0
    for key in cells:
        specs = cur.trials.get(key)
        if not specs:
            continue
        have = [t.seed for t in specs]
        n = min(step, max_seeds - len(have))
        if n <= 0 or used + n > budget:
            continue
        start = max(have) + 1
        extra[key] = [_with_seed(specs[0], s) for s in range(start, start + n)]
        used += n
    train = dataclasses.replace(plan, trials=extra,
                                backbones=[t.backbone for ts in extra.values() for t in ts if t.backbone])
    whole = dataclasses.replace(cur, trials={k: v + extra.get(k, []) for k, v in cur.trials.items()})
    return train, whole, used


def _host_class() -> str | None:
    """This machine's class as today's trials will record it, when the device strings
    they record name it (see harness.machine); None while they are legacy strings."""
    device = pick_device(None)
    if parse_device(provenance.device_name(device)).legacy:
        return None
    return parse_device(device_label(device)).hardware


def _entry_for(baseline: dict[str, Any], now_class: str | None, opts: GateOptions) -> dict[str, Any]:
    return select_entry(baseline, now_class, opts.machine)


def _summary(plan: Plan, entry: dict[str, Any], ev: Evaluation, th: Thresholds, store: str,
             rerun: bool, no_train: bool, now_class: str, looks: Looks, extra: int,
             opts: GateOptions) -> dict[str, Any]:
    failures = [f"{v.cell}: {v.reason()}" for v in ev.cells if v.failed]
    failures += [f"{c.kind} {c.name}: {c.metric} drop {c.drop.drop:.3g} >= {c.drop.floor:g} "
                 f"(p {c.p:.2g}, {c.note})" for c in ev.checks
                 if c.failed and c.kind not in ("cell", "speed", "invariant")]  # those fail their cell
    failures += [f"invariant {c.name}: what ran changed: {c.note}" for c in ev.checks
                 if c.failed and c.kind == "invariant"]
    undecided = [f"{c.kind} {c.name}" for c in ev.checks if c.outcome == "undecided"]
    status = "regression" if failures else "undecided" if undecided else "pass"
    return {
        "table": plan.experiment.name, "scale": plan.scale.name, "status": status,
        "exit_code": EXIT_REGRESSION if failures else EXIT_PASS, "failures": failures,
        "undecided": undecided,
        "computation_changed": [v.cell for v in ev.cells if v.computation_changed],
        "created_at": provenance.utc_now(), "git_commit": provenance.git_commit(),
        "gate_id": uuid.uuid4().hex[:12],
        "baseline": entry.get("_path"), "baseline_provenance": entry.get("provenance"),
        "baseline_seeds": entry.get("seeds"), "machine_class": now_class,
        "baseline_machine_class": entry.get("machine_class"),
        "baseline_machine_classes": entry.get("machine_classes"),
        "baseline_selected_by": entry.get("selected_by"),
        "seeds": list(plan.seeds), "store": store, "rerun": rerun, "no_train": no_train,
        "thresholds": asdict(th),
        "family": {"method": FAMILY_METHOD, "alpha": th.alpha, "spending": SPENDING,
                   "looks": looks.seeds, "look": ev.look, "look_alpha": ev.alpha,
                   "checks": sum(1 for c in ev.checks if c.gating and c.outcome != "n/a"  # Holm's family:
                                 and c.drop is not None and math.isfinite(c.drop.p))},  # tested ones
        "rerun_trials": extra, "options": asdict(opts), "confirmations": ev.confirmations(),
        "checks_run": [f"{c.kind} {c.name}" for c in ev.checks],
        "counts": {verdict: sum(1 for v in ev.cells if v.verdict == verdict)
                   for verdict in sorted({v.verdict for v in ev.cells})},
    }


def regress(plan: Plan, baseline: dict[str, Any], *, store: str, rerun: bool = False,
            no_train: bool = False, run_options: RunOptions | None = None,
            train: Train | None = None, log: Callable[[str], None] | None = None,
            out_dir: Path | None = None, options: GateOptions | None = None) -> RegressResult:
    """Train (unless ``no_train``), compare with ``baseline``, rerun the undecided, report.

    ``rerun`` trains into a fresh temporary store so nothing is reused; that store is
    removed when the gate passes and kept (its path is in the report) when it fails.
    ``train(plan, store, run_options)`` trains what ``store`` lacks (default
    :func:`train_plan`: the orchestrator, with ``run_options``). The night's history goes
    to ``store`` (the one given, not the temporary one).
    """
    if rerun and no_train:
        raise HarnessError("--rerun and --no-train contradict each other; pass one of them")
    opts = options or GateOptions()
    check_name(plan.experiment.name, "table name")  # it becomes the report's file name
    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    train = train or train_plan
    th = thresholds_for(plan.scale.name)
    history_store = store
    if opts.machine is not None or (not no_train and len(baseline.get("entries") or []) > 1):
        # a wrong --machine, or a file without this machine's class, costs no training
        host = None if opts.machine is not None else _host_class()
        if opts.machine is not None or host is not None:
            _entry_for(baseline, host, opts)
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
    now_class = entry_class(now)
    entry = _entry_for(baseline, now_class, opts)
    n0 = max(1, len(plan.seeds))
    max_seeds = opts.max_seeds or 3 * n0
    can_rerun = opts.rerun_undecided and not no_train
    looks = Looks(n0, n0, max_seeds if can_rerun else n0, len(entry.get("seeds") or []) or n0)
    state = {"plan": plan}

    def more(cells: list[Key], left: int):
        todo, whole, n = _more_seeds(plan, state["plan"], cells, n0, max_seeds, left)
        if n == 0:
            return None
        log(f"rerun band: {len(todo.trials)} cell(s) get {n} more trial(s)")
        train(todo, store, run_options)
        state["plan"] = whole
        with Store(store, readonly=True) as st:
            return read_cells(whole, st), n

    budget = opts.budget if opts.budget is not None else sum(len(v) for v in plan.trials.values())
    ev, now, extra = run_night(entry, now, th, looks=looks, more=more if can_rerun else None,
                               budget=budget, parents=parents_of(plan), models=models_of(plan),
                               tricks=column_tricks(plan),
                               strict_determinism=opts.strict_determinism, speed=opts.speed)
    cur = state["plan"]
    summary = _summary(cur, entry, ev, th, store, rerun, no_train, now_class, looks, extra, opts)
    summary["seeds"] = list(plan.seeds)
    if tmp_dir is not None and summary["failures"]:
        summary["kept_store"] = store  # for the post-mortem: logs and checkpoints are there
    md, js = write_reports(summary, ev, th, out_dir)
    if opts.history:
        try:
            append_history(history_store, history_rows(summary, ev.checks, ev.cells))
        except HarnessError as exc:
            log(f"warning: the night was not added to the gate history: {exc}")
    if tmp_dir is not None and not summary["failures"]:
        shutil.rmtree(tmp_dir, ignore_errors=True)
    return RegressResult(summary["exit_code"], ev.cells, md, js, summary, ev)
