"""The report's figures, drawn with matplotlib's Agg canvas (no pyplot, no display) and
written atomically (temp file + ``os.replace``):

* Figure 3 analogue: learning rate vs iteration, step and cosine (both with warmup), at the
  report's scale, and validation top-1 vs epoch of those two rows of Table 6 when stored;
* Figure 4 analogue: the theoretical logit gap of label smoothing, and the distribution of
  (max logit - mean of the other logits) on the test set, with and without smoothing;
* ours vs the paper's per-trick deltas (grouped bars) for stacked tables.

Each function returns a :class:`Figure` whose ``path`` is None (with a note) when it could
not be drawn; a report never fails because a figure could not be made.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.store import TrialRecord
from harness.atomic import atomic_write
from harness.report.stats import finite
from harness.report.tables import ReportData
from harness.report.verdicts import Comparison

__all__ = ["Figure", "save_figure", "lr_schedule_figure", "label_smoothing_figure", "deltas_figure"]

DATASET_TRAIN_SIZE = {"fashion_mnist": 60000, "synthetic": 2048, "imagefolder": 1281167}


@dataclass
class Figure:
    title: str
    path: Path | None
    caption: str = ""
    notes: list[str] = field(default_factory=list)


def _new_figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure as MplFigure

    fig = MplFigure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def save_figure(fig, path: Path) -> Path:
    """Write the PNG atomically (readers never see half a figure)."""
    with atomic_write(path, "wb") as fh:
        fig.savefig(fh, format="png", dpi=100, bbox_inches="tight")
    return path


# ---- Figure 3: learning-rate schedules --------------------------------------------------
def train_size(scale) -> int:
    """Training images per epoch: the scale's count (a user's folder: measured), else the preset's."""
    return scale.train_images or scale.train_subset or DATASET_TRAIN_SIZE.get(scale.dataset, 1281167)


def lr_schedule_figure(data: ReportData, path: Path) -> Figure:
    """LR vs iteration (step and cosine, both with warmup) and top-1 vs epoch when stored."""
    from harness.trainer import make_schedule

    title = "Figure 3 analogue: step vs cosine learning-rate decay (both with warmup)"
    plan = data.fig3_plan
    if plan is None:
        return Figure(title, None, notes=["Table 6's recipes cannot be planned at this scale"])
    col = plan.experiment.columns[0].label
    cells = {c.row: c for c in plan.cells if c.column == col}
    scale = data.scale
    fig = _new_figure(11, 4)
    ax_lr, ax_acc = fig.subplots(1, 2)
    notes = []
    for row, style in zip(("Efficient", "+ cosine decay"), ("-", "--")):
        recipe = cells[row].recipe
        ipe = max(1, train_size(scale) // scale.batch_size(recipe))
        sched = make_schedule(recipe, scale, ipe)
        its = np.arange(sched.total_iters)
        lrs = [sched(int(i)) for i in its]
        label = f"{recipe.lr_schedule} ({row})"
        ax_lr.plot(its, lrs, style, marker="o" if len(its) <= 40 else None, label=label)
        notes.append(f"{label}: {sched.total_iters} iterations ({ipe}/epoch), base lr {sched.base_lr:g}, "
                     f"warmup {sched.warmup_iters} iterations"
                     + (f", milestones {list(sched.milestones)}" if recipe.lr_schedule == "step" else ""))
    where = f" on {train_size(scale):,} training images" if scale.from_data else ""
    ax_lr.set(xlabel="iteration", ylabel="learning rate", title=f"LR schedule at the {scale.name} scale{where}")
    ax_lr.legend()
    plotted = 0
    for row, style in zip(("Efficient", "+ cosine decay"), ("-", "--")):
        hashes = [t.hash for t in plan.trials[(row, col)]]
        ep = data.epochs[data.epochs["spec_hash"].isin(hashes)] if not data.epochs.empty else data.epochs
        ep = ep.dropna(subset=["top1"]) if not ep.empty else ep
        if ep.empty:
            continue
        color = "C0" if row == "Efficient" else "C1"
        for _, g in ep.groupby("spec_hash"):
            ax_acc.plot(g["epoch"], g["top1"], style, alpha=0.3, color=color)
        mean = ep.groupby("epoch")["top1"].mean()
        ax_acc.plot(mean.index, mean.values, style, marker="o", color=color,
                    label=f"{row} (mean of {ep['spec_hash'].nunique()})")
        plotted += 1
    if plotted:
        ax_acc.legend()
    else:
        ax_acc.text(0.5, 0.5, "no epoch rows stored for\nTable 6 'Efficient' / '+ cosine decay'",
                    ha="center", va="center", transform=ax_acc.transAxes)
        notes.append("validation curves: no stored epoch rows for Table 6's 'Efficient' and "
                     "'+ cosine decay' trials at this scale")
    ax_acc.set(xlabel="epoch", ylabel="validation top-1 (%)", title=f"{col}: validation top-1")
    save_figure(fig, path)
    return Figure(title, path, caption="Left: learning rate per iteration; right: validation "
                  "top-1 per epoch (faint: single seeds).", notes=notes)


# ---- Figure 4: label smoothing ----------------------------------------------------------
def _smoothing_pair(data: ReportData) -> tuple[str, str] | None:
    """(row with label smoothing, its parent without), preferring '+ label smoothing'."""
    exp = data.exp
    col = exp.columns[0].label
    recipes = {c.row: c.recipe for c in data.plan.cells if c.column == col}
    pairs = []
    for i, row in enumerate(exp.rows):
        p = data.parent_index(i)
        if p is None:
            continue
        parent = exp.rows[p].label
        r, q = recipes[row.label], recipes[parent]
        if r.label_smoothing > 0 and q.label_smoothing == 0 and not r.mixup and not r.distill:
            pairs.append((row.label, parent))
    pairs.sort(key=lambda pr: pr[0] != "+ label smoothing")
    return pairs[0] if pairs else None


def _ideal_gap(eps: float, k: int, form: str) -> float:
    from tricks.label_smoothing import theoretical_gap

    if form == "uniform":  # q_y = 1 - eps + eps/K, q_other = eps/K
        return math.log(1.0 + k * (1.0 - eps) / eps)
    return theoretical_gap(eps, k)


def stored_gaps(rec: TrialRecord) -> dict[str, Any] | None:
    """The logit-gap summary the trial stored when it finished (harness.tasks.classification)."""
    gap = (rec.metrics or {}).get("logit_gap")
    return gap if isinstance(gap, dict) and gap.get("quantiles") else None


def label_smoothing_figure(data: ReportData, path: Path) -> Figure | None:
    """Figure 4: theoretical gap vs eps, and the empirical gap distribution of both models.

    None when the table has no label-smoothing row; a Figure without path (and a note) when
    the checkpoints or the test data are missing.
    """
    pair = _smoothing_pair(data)
    if pair is None:
        return None
    row, parent = pair
    col = data.exp.columns[0].label
    title = f"Figure 4 analogue: logit gap with ('{row}') and without ('{parent}') label smoothing"
    specs, gaps = {}, {}
    for label in (row, parent):
        spec = next((s for s in data.plan.trials[(label, col)] if s.seed == 0), None)
        rec = data.trials.get(spec.hash) if spec else None
        if rec is None or rec.status != "done":
            return Figure(title, None, notes=[f"skipped: trial '{label}' / {col} seed 0 has no result "
                                              "in the store"])
        gap = stored_gaps(rec)
        if gap is None:
            return Figure(title, None, notes=[f"skipped: trial '{label}' / {col} seed 0 "
                                              f"({spec.hash[:8]}) was stored without logit gaps "
                                              "(trained by a harness older than store v3)"])
        specs[label], gaps[label] = spec, gap
    recipe = specs[row].recipe
    eps, form = recipe.label_smoothing, recipe.label_smoothing_form
    k = int(gaps[row]["classes"])
    ideal = _ideal_gap(eps, k, form)
    fig = _new_figure(11, 4)
    ax_t, ax_h = fig.subplots(1, 2)
    e = np.linspace(0.01, 0.5, 200)
    for kk, style in ((k, "-"), (1000, "--")):
        ax_t.plot(e, [_ideal_gap(float(x), kk, form) for x in e], style, label=f"K={kk}")
    ax_t.axvline(eps, color="grey", lw=0.8)
    ax_t.set(xlabel="ε", ylabel="optimal gap z*_y - z*_other", title=f"theoretical gap ({form} form)")
    ax_t.legend()
    quantiles = {lbl: np.asarray(g["quantiles"], dtype=float) for lbl, g in gaps.items()}
    every = np.concatenate(list(quantiles.values()))
    lo, hi = float(every.min()), float(every.max())
    bins = np.linspace(lo, hi, 30) if hi > lo else np.linspace(lo - 0.5, lo + 0.5, 11)
    for label, color in ((parent, "C0"), (row, "C1")):
        # equally spaced quantiles are equal-mass points: their histogram is the distribution's
        ax_h.hist(quantiles[label], bins=bins, alpha=0.55, density=True, color=color,
                  label=f"{label} (mean {gaps[label]['mean']:.2f})")
    ax_h.axvline(ideal, color="C1", ls="--", label=f"theory ε={eps:g}, K={k}: {ideal:.2f}")
    ax_h.set(xlabel="max logit - mean of the other logits", ylabel="density",
             title=f"{col} seed 0, test set")
    ax_h.legend(fontsize=8)
    save_figure(fig, path)
    means = {lbl: float(g["mean"]) for lbl, g in gaps.items()}
    notes = [f"mean gap on the {gaps[row]['n']} test images: {means[parent]:.2f} without smoothing, "
             f"{means[row]:.2f} with ε={eps:g} (theory {ideal:.2f} for K={k}; the paper's 9.1 is for "
             "K=1000)"]
    return Figure(title, path, caption="Left: the optimal gap of Sec 5.2 vs ε; right: empirical "
                  "distribution of the gap on the test set for both trained models (from the "
                  f"{len(quantiles[row])} quantiles each trial stored when it finished).", notes=notes)


# ---- per-trick deltas -------------------------------------------------------------------
def deltas_figure(data: ReportData, deltas: list[Comparison], path: Path) -> Figure | None:
    """Grouped bars per column: our paired delta (95% CI) and the paper's, for each row."""
    if not deltas:
        return None
    columns = [c.label for c in data.exp.columns]
    rows = list(dict.fromkeys(d.row for d in deltas))
    fig = _new_figure(max(5.0, 4.0 * len(columns)), 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(columns), sharey=True, squeeze=False)[0])
    x = np.arange(len(rows))
    w = 0.38
    for ax, col in zip(axes, columns):
        by_row = {d.row: d for d in deltas if d.column == col}
        ours = [by_row[r].mean if r in by_row and finite(by_row[r].mean) else np.nan for r in rows]
        err = [by_row[r].half_width if r in by_row and finite(by_row[r].half_width) else 0.0 for r in rows]
        paper = [by_row[r].paper if r in by_row and by_row[r].paper is not None else np.nan for r in rows]
        ax.bar(x - w / 2, ours, w, yerr=err, capsize=3, label="ours (CI)", color="C0")
        ax.bar(x + w / 2, paper, w, label="paper", color="C7")
        ax.axhline(0, color="black", lw=0.6)
        ax.set_xticks(x, rows, rotation=35, ha="right", fontsize=8)
        ax.set_title(col)
    axes[0].set_ylabel("Δ top-1 vs parent row (points)")
    axes[0].legend(fontsize=8)
    save_figure(fig, path)
    return Figure("Per-trick top-1 deltas, ours vs the paper's", path,
                  caption="Each row minus the row it adds to (a table with a reference column: each column "
                  "minus that column, per model); ours with the interval of its "
                  "verdict (95%, or the look's nominal level in an adaptive run; pooled seed "
                  "noise per model), missing bars were not run.")
