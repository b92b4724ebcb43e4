"""The gate's markdown report: a header (baseline entry, machine class, the family's method
and level, failing and undecided checks), then tables for the gated metric per cell, the
pooled checks (per model, per trick), the invariant checks (what ran), training speed and
the determinism tier."""
from __future__ import annotations

import math
from collections import Counter
from typing import Any

from tabulate import tabulate

from harness.metrics import METRIC_NAMES
from harness.regress.comparison import CellVerdict, Evaluation, Thresholds

__all__ = ["render_markdown"]

HEADERS = ["cell", "baseline mean", "now mean", "delta", "p", "verdict"]


def _f(x: float | None, fmt: str = ".2f", sign: bool = False) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "-"
    return format(x, ("+" if sign else "") + fmt)


def _p(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2g}"


def _acc_rows(verdicts: list[CellVerdict]) -> list[list[str]]:
    return [[v.cell, _f(v.base_mean), _f(v.now_mean), _f(v.delta, sign=True), _p(v.p),
             v.verdict + (f" ({v.note})" if v.note else "")] for v in verdicts]


def _pooled_rows(ev: Evaluation) -> list[list[str]]:
    rows = []
    for c in ev.checks:
        if c.kind not in ("model", "trick", "trick-gone", "mechanism", "speed-model") or c.drop is None:
            continue
        base = _f(c.base, sign=True) if c.kind in ("trick", "trick-gone", "mechanism") else "-"
        rows.append([c.kind, c.name, base, _f(c.now, sign=True), _f(c.drop.drop),
                     f"{c.drop.floor:g}", _p(c.p), c.outcome, c.note])
    return rows


def _speed_rows(verdicts: list[CellVerdict], th: Thresholds) -> list[list[str]]:
    rows = []
    for v in verdicts:
        delta = "-" if v.speed_delta is None else f"{v.speed_delta * 100:+.1f}%"
        verdict = v.speed_verdict + (f" ({v.speed_note})" if v.speed_note else "")
        rows.append([v.cell, _f(v.base_speed, ".1f"), _f(v.now_speed, ".1f"), delta,
                     _p(v.speed_p), verdict])
    return rows


def _table(rows: list[list[str]], headers: list[str] = HEADERS) -> str:
    return tabulate(rows, headers=headers, tablefmt="github", disable_numparse=True)


def _determinism(verdicts: list[CellVerdict]) -> list[str]:
    counts = Counter(v.determinism for v in verdicts)
    lines = ["Same seed, same hardware class, precision and torch: top-1 must be bit-identical.", ""]
    lines += [f"- {k}: {n} cell(s)" for k, n in sorted(counts.items())]
    changed = [v for v in verdicts if v.computation_changed]
    if changed:
        strict = changed[0].strict_determinism
        lines += ["", "**Computation changed** (" + ("fails: --strict-determinism" if strict
                                                      else "a note; --strict-determinism fails it")
                  + "):", ""]
        lines += [f"- {v.cell}: seeds {v.changed_seeds}" for v in changed]
    return lines


def render_markdown(summary: dict[str, Any], ev: Evaluation, th: Thresholds) -> str:
    """The report of one gate run; ``summary`` is the JSON summary the gate writes beside it."""
    status = {"pass": "PASS", "undecided": "PASS (undecided)"}.get(summary["status"], "FAIL")
    bprov = summary.get("baseline_provenance") or {}
    fam = summary.get("family") or {}
    verdicts = ev.cells
    lines = [
        f"# Regression gate: {summary['table']} @ {summary['scale']}: {status}",
        "",
        f"- date: {summary['created_at']}; commit: {summary['git_commit']}",
        f"- baseline: `{summary['baseline']}` (commit {bprov.get('git_commit', '?')}, "
        f"{bprov.get('created_at', '?')}, seeds {summary.get('baseline_seeds')}), entry "
        f"`{summary.get('baseline_machine_class')}` ({summary.get('baseline_selected_by')}; "
        f"the file holds {len(summary.get('baseline_machine_classes') or [])} machine class(es))",
        f"- now: seeds {summary['seeds']} from `{summary['store']}` on `{summary.get('machine_class')}`"
        + (" (fresh temporary store: every trial retrained)" if summary.get("rerun") else "")
        + (" (stored results only, nothing trained)" if summary.get("no_train") else ""),
        f"- family: {fam.get('method', 'holm').title()} step-down over {fam.get('checks')} gating "
        f"checks, one-sided family-wise alpha {th.alpha:g} a night, spent over looks at "
        f"{fam.get('looks')} seeds a cell (Lan-DeMets {fam.get('spending', 'pocock')}-type); this is "
        f"look {fam.get('look')} at nominal alpha {_p(fam.get('look_alpha'))}; "
        f"{summary.get('rerun_trials', 0)} rerun trial(s)",
        f"- regression: Holm rejects AND the drop reaches its floor (cell {th.floor:g} points, "
        f"model mean / trick delta {th.pooled_floor:g} points, a trick's mechanism half its "
        f"baseline delta, speed {th.speed_frac * 100:g}%)"
        + (" (accuracy never gates at this scale)" if th.floor >= 100 else "")
        + f"; rerun: raw p < {th.band:g} and the upper bound of the drop not below the floor"
        + "; a regression before the last look is confirmed with more seeds first",
        "- speed: only within one hardware class and precision; accuracy: only at one effective precision",
    ]
    if summary.get("kept_store"):
        lines.append(f"- the temporary store was kept for inspection: `{summary['kept_store']}`")
    if summary["failures"]:
        lines += ["", "**Failing:**", ""] + [f"- {f}" for f in summary["failures"]]
    if summary.get("undecided"):
        why = ("in the rerun band when the night failed: reruns stop there" if summary["failures"]
               else "in the rerun band when the seeds or the budget ran out; the gate passes")
        lines += ["", f"**Undecided** ({why}):", ""] + [f"- {u}" for u in summary["undecided"]]
    conf = summary.get("confirmations") or {}
    for what, text in (("confirmed", "rejected again after their cells got more seeds"),
                       ("unconfirmed", "regressions with no more seeds to confirm them: the "
                        "budget, seeds or looks ran out, or the night had failed"),
                       ("cleared", "rejected at an earlier look, not with the seeds that came")):
        if conf.get(what):
            lines += ["", f"**{what.capitalize()}** ({text}):", ""] + [f"- {c}" for c in conf[what]]
    metric = verdicts[0].metric if verdicts else "top1"
    lines += ["", f"## {METRIC_NAMES.get(metric, metric)}", "", _table(_acc_rows(verdicts)), ""]
    pooled = _pooled_rows(ev)
    if pooled:
        lines += ["## Pooled checks (per model: mean change over its cells; per trick: delta "
                  "over its parent row or Table 3's reference column, baseline vs now; "
                  "mechanism: the fraction of a trick's delta on the mean logit gap kept, "
                  "1 = as in the baseline)", "",
                  _table(pooled, ["check", "name", "baseline delta", "now delta (model: change)", "drop", "floor", "p",
                                  "outcome", "note"]), ""]
    invariants = [[c.name, f"{c.base:g}" if c.base is not None else "-", c.outcome, c.note]
                  for c in ev.checks if c.kind == "invariant"]
    if invariants:
        lines += ["## What ran (invariant checks: facts measured on the objects that trained, "
                  "harness/applied.py; any change fails)", "",
                  _table(invariants, ["cell", "facts compared", "outcome", "note"]), ""]
    else:
        lines += ["## What ran (invariant checks): not compared", "",
                  "The baseline's trials or tonight's carry no `applied` facts (a baseline frozen "
                  "before trials recorded them: re-freeze it with `baseline save` to enable these "
                  "checks).", ""]
    lines += ["## Training speed (images/s, median over trials; a trial: mean of its epochs)", "",
              _table(_speed_rows(verdicts, th), ["cell", "baseline median", "now median", "delta",
                                                 "p", "verdict"]), "", "## Determinism", ""] + _determinism(verdicts) + [""]
    return "\n".join(lines)
