"""Assemble a report's markdown: header (scale, deviations, provenance), the paper's table
layout per metric, stacked deltas with verdicts, Table 3's speed section, figures, the
designed-experiment hook, and the trials that have no result.

The first line is an HTML comment carrying a JSON summary (table, scale, trial counts,
headline, verdict counts) that :mod:`harness.report.index` reads back for reports/README.md.
The text depends only on the store's content, so an unchanged store gives the same file.
"""
from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.designs import design_section, label_trials
from harness.data_scale import schedule_lines, schedule_warnings
from harness.metrics import METRIC_NAMES
from harness.report.figures import Figure
from harness.report.tables import (
    ReportData,
    delta_table,
    headline,
    md_table,
    metric_table,
    noise_table,
    not_done_table,
    regime_table,
    speed_table,
    trick_table,
)
from harness.report.verdicts import TrickVerdicts

SUMMARY_TAG = "harness-report"


def _rel(path: str) -> str:
    """A source path relative to the working folder or the repository when under one."""
    p = Path(path)
    for base in (Path.cwd(), Path(__file__).resolve().parents[2]):
        try:
            return p.resolve().relative_to(base.resolve()).as_posix()
        except ValueError:
            continue
    return path


def _factor(x: float) -> str:
    """0.0625 -> '1/16', 1.0 -> '1', 2.5 -> '2.5'."""
    if 0 < x < 1:
        f = Fraction(x).limit_denominator(10000)
        if f.numerator == 1:
            return f"1/{f.denominator}"
    return f"{x:g}"


def fmt_duration(seconds: float) -> str:
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return (f"{h}h {m:02d}m {sec:02d}s" if h else f"{m}m {sec:02d}s" if m else f"{sec}s") + \
        f" ({seconds:,.1f} s)"


def _distinct(df: pd.DataFrame, col: str) -> str:
    if col not in df or df.empty:
        return "—"
    vals = [str(v) for v in df[col].dropna().unique() if str(v) != ""]
    return ", ".join(sorted(vals)) if vals else "—"


def provenance(data: ReportData) -> list[list[str]]:
    """Where the numbers come from: code, libraries, hardware, data, dates, compute."""
    recs = [r for r in (data.trials.get(s.hash) for s in data.plan.all_trials()) if r]
    df = pd.DataFrame(recs)
    c = data.counts()
    if df.empty:
        return [["trials", f"{c['total']} planned, none in the store"]]
    started = df["started_at"].dropna()
    finished = df["finished_at"].dropna()
    wall = pd.to_numeric(df["wall_s"], errors="coerce").fillna(0.0).sum()
    return [
        ["git commit(s)", _distinct(df, "git_commit")],
        ["torch", _distinct(df, "torch_version")],
        ["torchvision", _distinct(df, "torchvision_version")],
        ["ray", _distinct(df, "ray_version")],
        ["device(s)", _distinct(df, "device")],
        ["precision(s)", _distinct(df, "precision")],
        ["dataset fingerprint(s)", _distinct(df, "dataset_fingerprint")],
        ["first start", min(started) if len(started) else "—"],
        ["last finish", max(finished) if len(finished) else "—"],
        ["trials", f"{c['total']} planned: {c['done']} done, {c['failed']} failed, "
                   f"{c['diverged']} diverged, {c['missing']} missing"],
        ["total compute (sum of wall_s)", fmt_duration(float(wall))],
        ["run id(s)", _distinct(df, "run_id")],
    ]


def summary(data: ReportData, verdicts: TrickVerdicts | None) -> dict[str, Any]:
    out = {"table": data.exp.name, "title": data.exp.title, "scale": data.scale.name,
           "paper_table": data.exp.paper_table, "trials": data.counts(),
           "headline": headline(data), "verdicts": verdicts.counts() if verdicts else {},
           "stacked": data.exp.stacked}
    if verdicts and verdicts.per_trick:
        out["trick_verdicts"] = verdicts.counts("per_trick")
    return out


LEGEND = (
    "Δ = row − parent. Noise: each cell's seed variance is shrunk toward its model's "
    "(moderated variances, Smyth 2004: a scaled inverse-χ² prior fitted to every cell of that "
    "model in the table, whose df add to the cell's own), and a row vs its parent uses the two "
    "cells' moderated variances with Welch-Satterthwaite df (`moderated` in the `noise` "
    "column); they are paired by seed only where their measured correlation is at least 0.5 on "
    "3 or more seeds (`paired`; the column gives r). Per trick, "
    "the per-model deltas are pooled with a fixed-effect (inverse-variance) mean, because the "
    "question is whether the trick helps on these models; I² says how much the models disagree. "
    "Verdicts: `reproduced` = the 95% interval excludes 0 on the paper's side; `contradicted` "
    "= it excludes 0 on the other side; `no effect` = the 90% interval lies inside ±{margin:g} "
    "points (two one-sided tests; the margin is the scale's, fixed before any result); "
    "`undecided` = none of these, with the minimum detectable effect at 80% power (MDE) and "
    "the seeds per cell that would detect the paper's delta; `differs` = the interval excludes 0 "
    "and the paper has no number; `not run` = a side is missing. \"smaller/larger than the "
    "paper's\" = the 95% interval excludes the paper's own delta.")


def verdict_section(v: TrickVerdicts, label: str, data: ReportData) -> list[str]:
    """The per-model and per-trick verdict tables, their legend and the noise they used."""
    paper_in = [c for c in v.per_model if c.paper is not None and abs(c.paper) < v.margin]
    lines = [LEGEND.format(margin=v.margin), ""]
    if v.swapped:
        lines += [f"This table's columns are recipes: below, a `row` is a column of the table, "
                  f"`vs` the reference column '{data.exp.reference_column}' and `column` the model "
                  "(a row of the table), so Δ = that column − the reference, per model.", ""]
    if v.looks:
        lines += [f"Seeds were added wave by wave until decisive: {v.looks.describe()}. "
                  "Each comparison's intervals use the nominal level of the look its seed count "
                  "reached.", ""]
    lines += [f"The margin ±{v.margin:g} holds {len(paper_in)} of the {len(v.per_model)} paper "
              "deltas of this table (a `no effect` there agrees with the paper's size).", "",
              "Verdicts per model: " + _counts(v.counts()) + ".", "", delta_table(v, label), ""]
    if v.per_trick:
        lines += ["Per trick, pooled over the models: " + _counts(v.counts("per_trick")) + ".", "",
                  trick_table(v, label), ""]
    lines += ["Seed noise per model (pooled over the table's cells: the anchor of the moderated variances and the SD behind the MDE and seeds-needed figures):", "", noise_table(v), ""]
    return lines


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}: {n}" for k, n in counts.items()) or "none"


def _seeds_text(data: ReportData) -> str:
    """'seeds 0, 1 per cell', or for an adaptive run the range of seeds the cells reached."""
    if data.looks is None:
        return f"seeds {', '.join(map(str, data.plan.seeds))} per cell"
    n = [len(specs) for specs in data.plan.trials.values()]
    return (f"{min(n)} to {max(n)} seeds per cell (seeds 0, 1, ... in order), added wave by wave "
            "where a verdict was undecided (`--until-decisive`)")


def _figure_md(fig: Figure, rel: str) -> list[str]:
    out = [f"### {fig.title}", ""]
    if fig.path is not None:
        out += [f"![{fig.title}]({rel}/{fig.path.name})", ""]
        if fig.caption:
            out += [fig.caption, ""]
    out += [f"- {n}" for n in fig.notes]
    return out + ([""] if fig.notes else [])


def design_markdown(data: ReportData) -> str | None:
    """The designed-experiment section (factorial / leave-one-out)."""
    if data.exp.design not in ("factorial", "loo"):
        return None
    try:
        return design_section(data.exp, label_trials(data.plan, data.trials_df))
    except Exception as exc:  # the table still renders; the section says what went wrong
        return f"## Design analysis\n\nThe {data.exp.design} analysis failed: {' '.join(str(exc).split())}\n"


def _dataset_text(scale) -> str:
    if not scale.from_data:
        return scale.dataset
    counts = (f" ({scale.num_classes:,} classes, {scale.train_images:,} training / {scale.val_images:,} "
              "validation images)") if scale.train_images is not None else ""
    return f"the ImageFolder {scale.from_data}{counts}"


def scale_section(data: ReportData) -> list[str]:
    """'Scale and deviations from the paper': the scale the trials ran at (a user's folder:
    its measured size, mean/std and counts), its deviations, each schedule's epochs and SGD
    steps, and a warning for a schedule too short for its data (harness/data_scale.py)."""
    scale = data.scale
    recipes = [t.recipe for t in data.plan.all_trials()]
    floor = (f" and at least the epochs of {scale.min_steps:,} SGD steps for a 120-epoch recipe"
             if scale.min_steps else "")
    lines = ["## Scale and deviations from the paper", "",
             f"Scale `{scale.name}`: dataset {_dataset_text(scale)}, {scale.image_size}px training crops, "
             f"batch x{_factor(scale.batch_factor)}, lr x{_factor(scale.batch_factor * scale.lr_factor)}, "
             f"epochs x{_factor(scale.epoch_factor)} (at least {scale.min_epochs}{floor}).", ""]
    lines += [f"- {d}" for d in scale.deviations] or ["- none: this is the paper's setting"]
    lines += [f"- schedule: {line}" for line in schedule_lines(scale, recipes)]
    lines += [f"- {w}" for w in schedule_warnings(scale, recipes)]
    return lines + [f"- note: {n}" for n in data.exp.notes]


def render(data: ReportData, verdicts: TrickVerdicts | None, figures: list[Figure], fig_rel: str,
           task_verdicts: dict[str, TrickVerdicts] | None = None,
           sections: list[str] | None = None) -> str:
    """The report's markdown. ``verdicts``: top-1 (counted in the summary); ``task_verdicts``:
    transfer tables' own metric (mAP, mIoU, ...), one section each."""
    exp, scale = data.exp, data.scale
    lines = [f"<!-- {SUMMARY_TAG} {json.dumps(summary(data, verdicts), sort_keys=True)} -->",
             f"# {exp.title}", "",
             f"Experiment `{exp.name}`" + (f" (paper {exp.paper_table})" if exp.paper_table else "")
             + f" at the **{scale.name}** scale; {_seeds_text(data)}"
             + (f"; source `{_rel(exp.source)}`" if exp.source else "") + ".", ""]
    lines += scale_section(data)
    lines += ["", "## Provenance", "", md_table(["", "value"], provenance(data)), ""]
    lines += ["## Results in the paper's layout", "",
              "Ours: mean ± half-width of the 95% Student-t interval over seeds (n = seeds with a "
              "result; one seed has no interval). A cell without a result says why: `not run`, "
              "`failed: <error>` or `diverged`; [brackets] count the seeds of a cell that did not "
              "finish.", ""]
    for metric in exp.metrics:
        lines += [f"### {METRIC_NAMES.get(metric, metric)}", "", metric_table(data, metric), ""]
    regime = regime_table(data) if exp.kind == "classification" else None
    if regime:
        lines += ["## Regime: training vs test top-1", "",
                  "Top-1 on the first 10,000 training images (evaluation transform, the trained "
                  "model) / on the test set (gap). A gap near 0 is an underfit model, the regime "
                  "in which regularisers (label smoothing, mixup, the flip) cost accuracy; the "
                  "paper's 120-epoch ImageNet ResNet-50 fits its training set well above its "
                  "validation accuracy.", "", regime, ""]
    speed = speed_table(data)
    if speed:
        lines += ["## Training speed: Baseline vs Efficient", "",
                  "Time per training epoch and training images/s; speed-up = baseline time / "
                  "efficient time, per seed. The paper's times are for 8 V100 GPUs on ImageNet; ours "
                  "are for this scale's data and hardware, so compare the ratios, not the times.", "",
                  speed, ""]
    if exp.has_verdicts and verdicts and verdicts.per_model:
        lines += [f"## Each column vs '{exp.reference_column}' (top-1)" if verdicts.swapped
                  else "## Each trick vs the row it adds to (top-1)", ""]
        lines += verdict_section(verdicts, "top-1", data)
    for metric, tv in (task_verdicts or {}).items():
        if tv.per_model:
            name = METRIC_NAMES.get(metric, metric).replace(" (%)", "")
            lines += [f"## Each trick vs the row it adds to ({name}, the transfer task)", "",
                      "The same statistics for the downstream metric (Sec 6): does a backbone "
                      "trick carry over to the task?", ""]
            lines += verdict_section(tv, name, data)
    lines += sections or []
    design = design_markdown(data)
    if design:
        lines += [design.rstrip(), ""]
    if figures:
        lines += ["## Figures", ""]
        for fig in figures:
            lines += _figure_md(fig, fig_rel)
    missing = not_done_table(data)
    lines += ["## Trials without a result", ""]
    lines += [missing, ""] if missing else ["None: every planned trial is done.", ""]
    return "\n".join(lines).rstrip() + "\n"
