"""The data behind a report: the plan's trials read back from the store by spec hash
(:mod:`harness.results`), the paper's numbers, and the tables in the paper's layout (rows x
columns, ours beside paper).
"""
from __future__ import annotations

import dataclasses
import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml
from tabulate import tabulate

from harness.errors import HarnessError
from harness.experiments import Experiment, Plan, load_experiment, make_plan, subplan
from harness.report.columns import ColumnView
from harness.report.stats import finite, mean_ci
from harness.report.verdicts import Comparison, Looks, TrickVerdicts, analyse
from harness.results import metric_value, read_trials
from harness.scales import Scale, ScaleOverrides
from harness.data_scale import plan_scale
from harness.spec import TrialSpec
from harness.store import Store, TrialRecord

PAPER_DATA = Path(__file__).resolve().parent.parent / "paper_data.yaml"
FIG3_TABLE, FIG3_ROWS = "paper_table6", ("Efficient", "+ cosine decay")

NOT_DONE = "not run"


# ---- the paper's numbers ----------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def paper_data() -> dict[str, Any]:
    """``harness/paper_data.yaml`` (the paper's tables, rows in paper order)."""
    with open(PAPER_DATA) as fh:
        return yaml.safe_load(fh)


def paper_rows(exp: Experiment) -> list[dict[str, Any]]:
    if not exp.paper_table:
        return []
    table = paper_data().get("tables", {}).get(exp.paper_table)
    return list(table.get("rows", [])) if table else []


_UNITS = {"s": 1.0, "sec": 1.0, "min": 60.0, "h": 3600.0, "k": 1e3, "K": 1e3, "M": 1e6,
          "G": 1e9, "B": 1e9, "T": 1e12, "": 1.0}


def parse_quantity(value: Any) -> float | None:
    """A paper entry as a number in base units: 77.16 -> 77.16, '4.4 min' -> 264.0 (s),
    '25 M' -> 25e6, '3.8 G' -> 3.8e9; None for '-' / null / unparsable."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value) if finite(value) else None
    m = re.fullmatch(r"\s*([-+]?\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    if not m or m.group(2) not in _UNITS:
        return None
    return float(m.group(1)) * _UNITS[m.group(2)]


# ---- formatting -------------------------------------------------------------------------
def si(value: float, digits: int = 3) -> str:
    """25_557_032 -> '25.6 M', 4.1e9 -> '4.1 G', 131186 -> '131 K'."""
    for factor, unit in ((1e12, "T"), (1e9, "G"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= factor:
            return f"{value / factor:.{digits}g} {unit}"
    return f"{value:.{digits}g}"


def _seconds_unit(mean: float) -> tuple[float, str]:
    if abs(mean) >= 7200:
        return 3600.0, "h"
    if abs(mean) >= 120:
        return 60.0, "min"
    return 1.0, "s"


def fmt_number(metric: str, value: float) -> str:
    if metric in ("params", "macs"):
        return si(value)
    if metric == "epoch_s":
        div, unit = _seconds_unit(value)
        return f"{value / div:.3g} {unit}"
    if metric == "img_per_s":
        return f"{value:,.0f}" if abs(value) >= 100 else f"{value:.1f}"
    return f"{value:.2f}"


def fmt_ci(metric: str, mean: float, hw: float, n: int) -> str:
    """'76.12 ± 0.35 (n=3)'; one seed: '76.12 (n=1)'; units follow the mean."""
    if n == 0 or not finite(mean):
        return "—"
    if metric in ("params", "macs"):  # a property of the model: the same for every seed
        return si(mean)
    if metric == "epoch_s":
        div, unit = _seconds_unit(mean)
        body = f"{mean / div:.3g}" + (f" ± {hw / div:.2g}" if finite(hw) else "") + f" {unit}"
    elif metric == "img_per_s":
        body = fmt_number(metric, mean) + (f" ± {fmt_number(metric, hw)}" if finite(hw) else "")
    else:
        body = f"{mean:.2f}" + (f" ± {hw:.2f}" if finite(hw) else "")
    return f"{body} (n={n})"


def fmt_delta(mean: float, hw: float, n: int) -> str:
    if n == 0 or not finite(mean):
        return "—"
    return f"{mean:+.2f}" + (f" ± {hw:.2f}" if finite(hw) else "") + f" (n={n})"


def fmt_paper(metric: str, value: Any) -> str:
    """The paper's entry as printed ('4.4 min', '25 M'); numbers with 2 decimals."""
    if value is None:
        return "—"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value:.2f}" if metric not in ("params", "macs", "img_per_s") else si(value)
    return str(value)


def md_cell(text: Any) -> str:
    """Text safe inside a pipe table cell (no newlines, pipes escaped)."""
    return " ".join(str(text).split()).replace("|", "\\|")


def md_table(headers: list[str], rows: list[list[Any]]) -> str:
    return tabulate([[md_cell(c) for c in r] for r in rows], headers=[md_cell(h) for h in headers],
                    tablefmt="pipe", disable_numparse=True)


def short_error(err: Any, limit: int = 80) -> str:
    text = " ".join(str(err or "unknown error").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- trials of a cell -------------------------------------------------------------------
@dataclass
class CellData:
    """One table cell: its trials (one per seed) and what the store holds for each."""

    row: str
    column: str
    specs: list[TrialSpec]
    records: list[TrialRecord | None]
    backbone_records: list[TrialRecord | None] = field(default_factory=list)

    def values(self, metric: str) -> dict[int, float]:
        """seed -> value, over the trials stored as done."""
        out: dict[int, float] = {}
        records = self.records
        if metric in ("top1", "top5") and any(self.backbone_records):
            records = self.backbone_records  # transfer tables: the backbone's ImageNet-style top-1
        for spec, rec in zip(self.specs, records):
            if rec is not None and rec.status == "done":
                v = metric_value(rec, metric)
                if finite(v):
                    out[spec.seed] = v
        return out

    def counts(self) -> dict[str, int]:
        c = {"done": 0, "failed": 0, "diverged": 0, "missing": 0}
        for rec in self.records:
            c[rec.status if rec else "missing"] += 1
        return c

    def reason(self) -> str:
        """Why the cell has no number: 'not run', 'failed: <error>' or 'diverged'."""
        failed = [r for r in self.records if r and r.status == "failed"]
        if failed:
            return f"failed: {short_error(failed[0].error)}"
        if any(r and r.status == "diverged" for r in self.records):
            return "diverged"
        return NOT_DONE

    def text(self, metric: str) -> str:
        vals = self.values(metric)
        c = self.counts()
        if not vals:
            return self.reason() if c["done"] == 0 else "—"
        text = fmt_ci(metric, *mean_ci(vals.values()))
        notes = [f"{c[k]} {k if k != 'missing' else NOT_DONE}" for k in ("failed", "diverged", "missing")
                 if c[k]]
        return text + (f" [{', '.join(notes)}]" if notes else "")


@dataclass
class ReportData:
    """Everything a report shows, read once from the store."""

    exp: Experiment
    scale: Scale
    plan: Plan
    trials: dict[str, TrialRecord]  # spec hash -> stored trial (plan + figure trials)
    epochs: pd.DataFrame  # epoch rows of those trials
    trials_df: pd.DataFrame  # the plan's stored trials (for design analyses)
    data_root: str | None = None
    fig3_plan: Plan | None = None
    looks: Looks | None = None  # the group-sequential rule of an adaptive (--until-decisive) run
    cells: dict[tuple[str, str], CellData] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for (row, col), specs in self.plan.trials.items():
            self.cells[(row, col)] = CellData(
                row, col, specs, [self.trials.get(s.hash) for s in specs],
                [self.trials.get(s.backbone.hash) if s.backbone else None for s in specs])

    # -- paper --------------------------------------------------------------------------
    def paper_value(self, row_index: int, column_index: int, metric: str) -> Any:
        rows = paper_rows(self.exp)
        row = self.exp.rows[row_index]
        idx = row.paper_row if row.paper_row is not None else row_index
        key = self.exp.columns[column_index].paper.get(metric)
        if key is None or not 0 <= idx < len(rows):
            return None
        return rows[idx].get(key)

    def parent_index(self, i: int) -> int | None:
        """The row a stacked row is compared with: ``after`` if set, else the previous row."""
        row = self.exp.rows[i]
        if row.after is not None:
            return [r.label for r in self.exp.rows].index(row.after)
        return i - 1 if i > 0 else None

    # -- trials -------------------------------------------------------------------------
    def trial_status(self) -> list[tuple[TrialSpec, TrialRecord | None]]:
        return [(s, self.trials.get(s.hash)) for s in self.plan.all_trials()]

    def counts(self) -> dict[str, int]:
        c = {"total": 0, "done": 0, "failed": 0, "diverged": 0, "missing": 0}
        for _, rec in self.trial_status():
            c["total"] += 1
            c[rec.status if rec else "missing"] += 1
        return c

    def paper_delta(self, i: int, p: int, j: int, metric: str) -> float | None:
        """The paper's delta of row ``i`` over row ``p`` in column ``j`` (None if it lacks one)."""
        a, b = (parse_quantity(self.paper_value(k, j, metric)) for k in (i, p))
        return a - b if a is not None and b is not None else None

    def paper_column_delta(self, i: int, a: int, b: int, metric: str) -> float | None:
        """The paper's column ``a`` minus column ``b`` on row ``i`` (None if it lacks one)."""
        x, y = (parse_quantity(self.paper_value(i, k, metric)) for k in (a, b))
        return x - y if x is not None and y is not None else None

    def verdict_view(self) -> Any:
        """What the verdicts compare: this table (rows vs parents), or, with a
        ``reference_column``, its columns vs that one (:class:`ColumnView`)."""
        ref = self.exp.reference_column
        return ColumnView(self, ref) if ref is not None else self

    def verdicts(self, metric: str = "top1", power: bool = True) -> TrickVerdicts:
        """Each row vs its parent (stacked tables), or each column vs the reference column,
        per model and pooled over the models."""
        v = analyse(self.verdict_view(), metric, self.scale.equivalence_margin, self.looks, power)
        return dataclasses.replace(v, swapped=self.exp.reference_column is not None)


def _stored_dataset(store: Store, exp: Experiment, scale: Scale) -> str | None:
    """The ImageFolder a table like Table 7 was run on, as the store recorded it."""
    df = store.trials_df(table_name=exp.name, scale=scale.name)
    df = df[df["data"].notna() & (df["data"] != "")]
    if df.empty:
        return None
    return str(df.sort_values("finished_at")["data"].iloc[-1])


def load_report_data(exp: Experiment, scale: Scale, store_path: str | Path,
                     seeds: list[int] | None = None, data: str | None = None,
                     data_root: str | None = None, looks: Looks | None = None,
                     overrides: ScaleOverrides = ScaleOverrides()) -> ReportData:
    """Build the plan (as ``run`` did) and read its trials (and Figure 3's) from the store.
    The report's scale is the one the trials ran at (``harness.data_scale.plan_scale``: a
    user's folder gives its own image size, mean/std, image counts and schedule).

    With ``looks`` (an adaptive run), each cell holds every seed stored for it in order,
    from 0 up to ``looks.max_seeds`` (at least ``looks.first``), and the verdicts use the
    looks' nominal levels."""
    if not Path(store_path).is_file():
        raise HarnessError(f"no results store at {store_path}; run the table first "
                           "(python -m harness run ...) or pass --store PATH")
    n = len(seeds) if seeds else None
    with Store(store_path, readonly=True) as store:
        if data is None and exp.requires_imagefolder and scale.dataset != "imagefolder":
            data = _stored_dataset(store, exp, scale)
        plan = make_plan(exp, scale, seeds=looks.max_seeds if looks else n, data=data, overrides=overrides)
        if looks:
            plan = subplan(plan, stored_prefixes(store, plan, looks.first))
        hashes = [t.hash for t in plan.all_trials()]
        fig3 = None
        if exp.kind == "classification":
            try:
                fig3 = make_plan(load_experiment(FIG3_TABLE), scale, seeds=len(plan.seeds),
                                 data=_own_data(plan), overrides=overrides)
            except HarnessError:
                fig3 = None
        extra = [t.hash for ts in (fig3.trials.values() if fig3 else []) for t in ts]
        stored = read_trials(store, hashes + extra)
        epochs = store.epochs_df(list(stored.records))
    df = stored.frame
    plan_df = df[df["spec_hash"].isin(set(hashes))].reset_index(drop=True)
    return ReportData(exp=exp, scale=plan_scale(plan, data_root), plan=plan, trials=stored.records, epochs=epochs,
                      trials_df=plan_df, data_root=data_root, fig3_plan=fig3, looks=looks)


def _own_data(plan: Plan) -> str | None:
    """The data set the plan's trials name themselves (a user's folder), for Figure 3's plan."""
    trials = plan.all_trials()
    return trials[0].data or None if trials else None


def stored_prefixes(store: Store, plan: Plan, first: int) -> dict[tuple[str, str], int]:
    """Per cell, how many of its seeds 0, 1, ... are stored in a row (at least ``first``)."""
    stored = set(read_trials(store, [t.hash for t in plan.all_trials()]).records)
    out = {}
    for cell, specs in plan.trials.items():
        n = 0
        while n < len(specs) and specs[n].hash in stored:
            n += 1
        out[cell] = max(first, n)
    return out


# ---- tables -----------------------------------------------------------------------------
def metric_table(data: ReportData, metric: str) -> str:
    """The paper's layout for one metric: rows x (column ours, column paper)."""
    headers = [""]
    for col in data.exp.columns:
        headers += [f"{col.label} (ours)", f"{col.label} (paper)"]
    rows = []
    for i, row in enumerate(data.exp.rows):
        line = [row.label]
        for j, col in enumerate(data.exp.columns):
            line += [data.cells[(row.label, col.label)].text(metric),
                     fmt_paper(metric, data.paper_value(i, j, metric))]
        rows.append(line)
    return md_table(headers, rows)


def _signed(x: float | None, digits: int = 2) -> str:
    """``x`` with its sign; a value that rounds to zero is +0.00, never -0.00."""
    return "—" if x is None or not finite(x) else f"{round(x, digits) + 0.0:+.{digits}f}"


def _interval(c: Comparison) -> str:
    iv = c.interval
    if iv is None:
        return "—"
    if not finite(iv.lo):
        return f"{_signed(iv.mean)} (no interval)"
    return f"{_signed(iv.mean)} [{_signed(iv.lo)}, {_signed(iv.hi)}]"


def _verdict(c: Comparison) -> str:
    return c.verdict.name + (f"; {c.verdict.vs_paper}" if c.verdict.vs_paper else "")


def _pairing(c: Comparison) -> str:
    iv = c.interval
    if iv is None or iv.corr is None or not finite(iv.corr):
        return "—"
    return f"{'paired' if iv.paired else 'moderated'}, r={iv.corr:+.2f}"


def _needed(c: Comparison) -> str:
    if c.decided or c.paper is None or not c.paper:
        return ""
    return "> 64" if c.seeds_needed is None else str(c.seeds_needed)


def delta_table(v: TrickVerdicts, label: str = "top-1") -> str:
    """Per model: row vs parent, seeds, interval, pairing, the paper's delta, verdict, MDE."""
    rows = [[c.row, c.parent, c.column, f"{c.n_row}/{c.n_parent}", _interval(c), _pairing(c),
             _signed(c.paper), _verdict(c), "" if c.decided else _signed(c.mde).lstrip("+"),
             _needed(c)] for c in v.per_model]
    return md_table(["row", "vs", "column", "seeds", f"Δ {label} (ours) [CI]", "noise",
                     f"Δ {label} (paper)", "verdict", "MDE (80%)", "seeds for paper's Δ"], rows)


def trick_table(v: TrickVerdicts, label: str = "top-1") -> str:
    """Per trick: the fixed-effect mean over the models, heterogeneity, verdict."""
    rows = [[c.row, c.parent, _interval(c),
             "—" if c.pooled is None else f"{c.pooled.i2:.0%}", _signed(c.paper), _verdict(c),
             "" if c.decided else _signed(c.mde).lstrip("+")] for c in v.per_trick]
    return md_table(["row", "vs", f"Δ {label} pooled [CI]", "I²", f"Δ {label} (paper, mean)",
                     "verdict", "MDE (80%)"], rows)


def regime_table(data: ReportData) -> str | None:
    """Per cell: mean top-1 on training images (eval transform) and on the test set, and the
    gap, over the seeds that stored both; None when no trial stored a training top-1."""
    rows, any_stored = [], False
    for row in data.exp.rows:
        line = [row.label]
        for col in data.exp.columns:
            cell = data.cells[(row.label, col.label)]
            train, test = cell.values("train_top1"), cell.values("top1")
            seeds = sorted(set(train) & set(test))
            if not seeds:
                line.append("—")
                continue
            any_stored = True
            tr = sum(train[s] for s in seeds) / len(seeds)
            te = sum(test[s] for s in seeds) / len(seeds)
            line.append(f"{tr:.2f} / {te:.2f} ({tr - te:+.2f}, n={len(seeds)})")
        rows.append(line)
    if not any_stored:
        return None
    return md_table([""] + [c.label for c in data.exp.columns], rows)


def noise_table(v: TrickVerdicts) -> str:
    rows = [[col, "—" if not finite(n.sd) else f"{n.sd:.2f}", n.df, n.n_cells, n.n]
            for col, n in v.noise.items()]
    return md_table(["column", "seed SD (pooled)", "df", "cells", "trials"], rows)


def speed_columns(exp: Experiment) -> tuple[int, int] | None:
    """(baseline, efficient) column indices for Table 3's speed section, if any."""
    labels = [c.label.lower() for c in exp.columns]
    if "epoch_s" not in exp.metrics or "baseline" not in labels or "efficient" not in labels:
        return None
    return labels.index("baseline"), labels.index("efficient")


def _ratio(num: dict[int, float], den: dict[int, float]) -> tuple[float, float, int]:
    """Per-seed ratio num/den with its t-interval; ratio of means when no seed is common."""
    common = [s for s in num if s in den and den[s]]
    if common:
        return mean_ci([num[s] / den[s] for s in common])
    if num and den:
        d = sum(den.values()) / len(den)
        return (sum(num.values()) / len(num) / d if d else math.nan), math.nan, 1
    return math.nan, math.nan, 0


def fmt_ratio(mean: float, hw: float, n: int) -> str:
    if n == 0 or not finite(mean):
        return "—"
    return f"{mean:.2f}x" + (f" ± {hw:.2f}" if finite(hw) else "") + f" (n={n})"


def speed_table(data: ReportData) -> str | None:
    """Table 3: time per epoch and images/s, Baseline vs Efficient, ours and the paper's."""
    idx = speed_columns(data.exp)
    if idx is None:
        return None
    b, e = idx
    cb, ce = data.exp.columns[b].label, data.exp.columns[e].label
    rows = []
    for i, row in enumerate(data.exp.rows):
        base, eff = data.cells[(row.label, cb)], data.cells[(row.label, ce)]
        tb, te = base.values("epoch_s"), eff.values("epoch_s")
        ib, ie = base.values("img_per_s"), eff.values("img_per_s")
        pb, pe = (data.paper_value(i, k, "epoch_s") for k in (b, e))
        qb, qe = parse_quantity(pb), parse_quantity(pe)
        paper_speedup = f"{qb / qe:.1f}x ({fmt_paper('epoch_s', pb)} -> {fmt_paper('epoch_s', pe)})" \
            if qb and qe else "—"
        rows.append([row.label,
                     base.text("epoch_s") if tb else base.reason(),
                     eff.text("epoch_s") if te else eff.reason(),
                     fmt_ratio(*_ratio(tb, te)), paper_speedup,
                     base.text("img_per_s") if ib else base.reason(),
                     eff.text("img_per_s") if ie else eff.reason(),
                     fmt_ratio(*_ratio(ie, ib))])
    headers = ["model", f"{cb} time/epoch", f"{ce} time/epoch", "speed-up (ours)",
               "speed-up (paper)", f"{cb} img/s", f"{ce} img/s", "img/s ratio (ours)"]
    return md_table(headers, rows)


def not_done_table(data: ReportData) -> str | None:
    """Every trial of the plan without a result: hash prefix, row, column, seed, why."""
    rows = []
    for spec, rec in data.trial_status():
        if rec is not None and rec.status == "done":
            continue
        if rec is None:
            status, why = "missing", "not in the store (not run yet)"
            if spec.teacher is not None:
                t = data.trials.get(spec.teacher.hash)
                if t is None or t.status != "done":
                    why += f"; its teacher {spec.teacher.hash[:8]} is not done either"
        else:
            status = rec.status
            why = short_error(rec.error, 200) if rec.error else status
        rows.append([spec.hash[:8], spec.row, spec.column, spec.seed, status, why])
    if not rows:
        return None
    return md_table(["trial", "row", "column", "seed", "status", "reason"], rows)


def headline(data: ReportData) -> str:
    """One line for the index: the last row's top-1 in the first column, ours vs paper."""
    metric = "top1" if "top1" in data.exp.metrics else data.exp.metrics[0]
    i, row, col = len(data.exp.rows) - 1, data.exp.rows[-1], data.exp.columns[0]
    ours = data.cells[(row.label, col.label)].text(metric)
    paper = fmt_paper(metric, data.paper_value(i, 0, metric))
    label = row.label if len(data.exp.columns) == 1 else f"{row.label} / {col.label}"
    return f"{label} {metric}: ours {ours} vs paper {paper}"

