"""The report's section on compound rows (issue 23): which stacked rows change more than one
knob, and, where the factorial corners are stored (``run TABLE --decompose ROW``), each
knob's own effect and their interaction per model, with the shared verdict classes.

Effects are those of a two-level factorial fitted by OLS over every stored seed of the
corners (``harness.analysis.designs.factorial_effects``: effect = mean with the knob on -
mean with it off, averaged over the other knobs; the interaction is the difference of one
knob's effect between the other's two levels), with 95% t intervals on the residual df.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.designs import factorial_effects
from harness.errors import HarnessError
from harness.experiments import Experiment
from harness.experiments.decompose import compound_rows, decompose_experiment, knob_names
from harness.report.tables import load_report_data, md_table
from harness.report.verdicts import Looks
from harness.scales import Scale, ScaleOverrides
from harness.statistics import Interval, classify, interval_at

ALL_STORED = Looks(first=2, max_seeds=64)  # read every stored seed of a corner (>= 2 shown)


def compound_table(exp: Experiment) -> str | None:
    rows = [[row, parent, "; ".join(k.describe() for k in ks)]
            for row, (parent, ks) in compound_rows(exp).items()]
    return md_table(["row", "vs", "knobs it changes"], rows) if rows else None


def corner_frame(data: Any, knobs: list[str], column: str, metric: str) -> pd.DataFrame:
    """One line per stored seed of every corner in ``column``: the 0/1 knobs and the metric."""
    out = []
    for row in data.exp.rows:
        for seed, v in data.cells[(row.label, column)].values(metric).items():
            out.append({**{k: row.factors[k] for k in knobs}, metric: v, "seed": seed})
    return pd.DataFrame(out)


def effects_rows(data: Any, metric: str, margin: float) -> list[list[Any]]:
    """Per column and term: the effect, its interval, the seeds per corner and a verdict."""
    knobs = knob_names(data.exp)
    rows = []
    for col in data.exp.columns:
        df = corner_frame(data, knobs, col.label, metric)
        seeds = [len(data.cells[(r.label, col.label)].values(metric)) for r in data.exp.rows]
        try:
            eff = factorial_effects(df, knobs, metric) if len(df) else None
        except HarnessError as exc:
            rows.append([col.label, "—", f"{min(seeds)}-{max(seeds)}", "—", str(exc)])
            continue
        if eff is None:
            continue
        for e in eff.to_dict("records"):
            iv = Interval(e["effect"], e["ci_low"], e["ci_high"], e["se"], eff.attrs["df_resid"],
                          0.95, min(seeds), min(seeds), False, None)
            verdict = classify(iv, interval_at(iv, 0.90), None, margin) if math.isfinite(e["se"]) \
                else None
            ci = "—" if not math.isfinite(e["ci_low"]) else f"[{e['ci_low']:+.2f}, {e['ci_high']:+.2f}]"
            rows.append([col.label, e["term"].replace(":", " x "), f"{min(seeds)}-{max(seeds)}",
                         f"{e['effect']:+.2f} {ci}", verdict.name if verdict else "undecided (no df)"])
    return rows


def decomposition_section(exp: Experiment, scale: Scale, store: str | Path,
                          data_root: str | None = None,
                          overrides: ScaleOverrides = ScaleOverrides(),
                          data: str | None = None) -> list[str]:
    """The markdown lines of the section (empty when no row is compound). ``data``: the
    table's own data set (a user's ImageFolder), which the corners' trials share."""
    table = compound_table(exp)
    if table is None:
        return []
    lines = ["## Rows that change more than one knob", "",
             "These rows differ from the row they are compared with in more than one knob, so "
             "their delta above mixes the knobs' effects:", "", table, ""]
    metric = "top1" if "top1" in exp.metrics else exp.metrics[0]
    for row in compound_rows(exp):
        dexp = decompose_experiment(exp, row)
        corners = load_report_data(dexp, scale, store, data=data, data_root=data_root, looks=ALL_STORED,
                                   overrides=overrides)
        stored = all(len(corners.cells[(r.label, c.label)].values(metric)) >= 2
                     for r in dexp.rows for c in dexp.columns)
        lines += [f"### '{row}' decomposed", ""]
        if not stored:
            lines += [f"Not every corner has 2 stored seeds yet: `python -m harness run {exp.name} "
                      f"--scale {scale.name} --decompose '{row}'` trains the missing ones.", ""]
            continue
        lines += [f"2^{len(knob_names(dexp))} factorial over the knobs (corners: "
                  + ", ".join(f"'{r.label}'" for r in dexp.rows) + "). Effect = mean with the "
                  "knob on - off, averaged over the other knob(s); 95% t interval on the residual "
                  f"df; verdict as above with the ±{scale.equivalence_margin:g} margin "
                  "(`differs`: the interval excludes 0; the paper has no per-knob numbers).", "",
                  md_table(["column", "effect of", "seeds per corner", "effect [95% CI]", "verdict"],
                           effects_rows(corners, metric, scale.equivalence_margin)), ""]
    return lines
