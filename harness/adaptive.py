"""Adaptive seeds (``run TABLE --until-decisive``): add seeds only where a verdict is still
undecided, wave by wave through the same orchestrator, until every verdict is decided, a
cell reaches ``--max-seeds`` or ``--budget`` is spent.

The first wave runs ``Looks.first`` seeds per cell. After each wave the table's verdicts
are computed from the store (``harness.report.verdicts``) at the nominal level of each
comparison's look under a Lan-DeMets alpha-spending rule, so the interim looks do not
inflate the error rate; every cell that feeds an undecided verdict (the row and its parent
of a per-model verdict, every model's row and parent of a pooled per-trick one) gets one
more seed. Seeds are added in order (0, 1, 2, ...), so each wave's trials are ordinary
trials shared with plain runs, and an interrupted adaptive run continues from the store.
"""
from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from harness.errors import HarnessError
from harness.experiments import Experiment, make_plan, subplan
from harness.metrics import main_metric
from harness.orchestrator import RunOptions, RunSummary, run_plan
from harness.report.columns import table_cell
from harness.report.tables import load_report_data
from harness.report.verdicts import Looks, TrickVerdicts
from harness.scales import Scale, ScaleOverrides

Cell = tuple[str, str]
@dataclass
class Wave:
    seeds: dict[str, int]  # "row / column" -> seeds per cell after this wave
    trained: int
    wall_s: float
    decided: int
    comparisons: int
    trick_decided: int
    tricks: int


@dataclass
class AdaptiveSummary:
    table: str
    scale: str
    looks: dict[str, Any]
    waves: list[Wave] = field(default_factory=list)
    stopped: str = ""
    wall_s: float = 0.0
    trials: int = 0
    failed: int = 0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def cells_to_grow(v: TrickVerdicts) -> set[Cell]:
    """The cells that feed an undecided verdict (per model, or pooled per trick)."""
    grow: set[Cell] = set()
    for c in v.per_model:
        if not c.decided and c.verdict.name != "not run":
            grow |= {table_cell(c.row, c.column, v.swapped), table_cell(c.parent, c.column, v.swapped)}
    for t in v.per_trick:
        if not t.decided:
            for m in t.members:
                if m.verdict.name != "not run":
                    grow |= {table_cell(m.row, m.column, v.swapped),
                             table_cell(m.parent, m.column, v.swapped)}
    return grow


def until_decisive(exp: Experiment, scale: Scale, opts: RunOptions, looks: Looks,
                   budget_s: float | None = None, data: str | None = None,
                   log: Callable[[str], None] = print,
                   overrides: ScaleOverrides = ScaleOverrides()) -> AdaptiveSummary:
    """Run ``exp`` in waves until its verdicts decide; see the module docstring.
    ``overrides``: the run's --image-size / --epochs (in every trial's hash)."""
    full = make_plan(exp, scale, seeds=looks.max_seeds, data=data, overrides=overrides)
    seeds = {cell: looks.first for cell in full.trials}
    out = AdaptiveSummary(exp.name, scale.name, asdict(looks))
    metric = main_metric(exp.kind)
    t0 = time.time()
    last_rate = None  # seconds of wall time per trained trial in the last wave
    while True:
        wave = subplan(full, seeds)
        todo = len(wave.all_trials())
        if budget_s is not None and last_rate is not None and out.waves:
            left = budget_s - (time.time() - t0)
            if left <= 0 or last_rate * _new_trials(out, wave) > left:
                out.stopped = f"budget of {budget_s:.0f} s spent"
                break
        summary: RunSummary = run_plan(wave, opts)
        out.trials, out.failed = todo, summary.failed
        trained = summary.done + summary.failed + summary.diverged
        last_rate = summary.wall_s / trained if trained else last_rate
        report = load_report_data(exp, scale, opts.store, data=data, looks=looks, overrides=overrides)
        for cell, n in _prefix_seeds(report).items():  # an interrupted run may have stored more
            seeds[cell] = max(seeds[cell], n)
        v = report.verdicts(metric, power=False) if exp.has_verdicts else None
        out.waves.append(_wave(seeds, trained, summary.wall_s, v))
        log(f"wave {len(out.waves)}: {trained} trained in {summary.wall_s:.0f}s; " + _decided(out.waves[-1]))
        grow = {c for c in (cells_to_grow(v) if v else set()) if seeds[c] < looks.max_seeds}
        if v is None or not cells_to_grow(v):
            out.stopped = "every verdict decided" if v else "no verdicts in this table (neither stacked nor a reference column)"
            break
        if not grow:
            out.stopped = f"undecided cells reached --max-seeds {looks.max_seeds}"
            break
        for cell in grow:
            seeds[cell] += 1
    out.wall_s = time.time() - t0
    return out


def _new_trials(out: AdaptiveSummary, wave: Any) -> int:
    """Trials the next wave adds: one per grown cell (a rough count for the budget check)."""
    before = sum(out.waves[-1].seeds.values())
    return max(1, sum(len(ts) for ts in wave.trials.values()) - before)


def _prefix_seeds(report: Any) -> dict[Cell, int]:
    return {cell: len(specs) for cell, specs in report.plan.trials.items()}


def _wave(seeds: dict[Cell, int], trained: int, wall_s: float, v: TrickVerdicts | None) -> Wave:
    per_model = v.per_model if v else []
    per_trick = v.per_trick if v else []
    return Wave(seeds={f"{r} / {c}": n for (r, c), n in seeds.items()}, trained=trained,
                wall_s=wall_s, decided=sum(c.decided for c in per_model), comparisons=len(per_model),
                trick_decided=sum(c.decided for c in per_trick), tricks=len(per_trick))


def _decided(w: Wave) -> str:
    return (f"{w.decided}/{w.comparisons} per-model and {w.trick_decided}/{w.tricks} per-trick "
            f"verdicts decided; {sum(w.seeds.values())} cell-seeds")
