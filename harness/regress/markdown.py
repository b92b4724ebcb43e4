"""The gate's markdown report: a header (baseline, store, thresholds, failing cells), then
one table for the gated metric and one for training speed, a row per cell."""
from __future__ import annotations

from typing import Any

from tabulate import tabulate

from harness.metrics import METRIC_NAMES
from harness.regress.comparison import CellVerdict, Thresholds

__all__ = ["render_markdown"]

HEADERS = ["cell", "baseline mean", "now mean", "delta", "threshold", "verdict"]


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


def _table(rows: list[list[str]]) -> str:
    return tabulate(rows, headers=HEADERS, tablefmt="github", disable_numparse=True)


def render_markdown(summary: dict[str, Any], verdicts: list[CellVerdict], th: Thresholds) -> str:
    """The report of one gate run; ``summary`` is the JSON summary the gate writes beside it."""
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
    metric = verdicts[0].metric if verdicts else "top1"
    lines += ["", f"## {METRIC_NAMES.get(metric, metric)}", "", _table(_acc_rows(verdicts)),
              "", "## Training speed (images/s)", "", _table(_speed_rows(verdicts, th)), ""]
    return "\n".join(lines)
