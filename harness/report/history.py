"""``harness report history TABLE``: the gate's nights from the store's ``gate_history``.

One plot per gated series (a cell's metric, a model's mean change, a trick's delta, a cell's
training speed) over the gate runs, oldest first, with the baseline's value, each night's
outcome, and the change points found by ruptures' PELT (``model="l2"``: shifts of the mean;
penalty ``2 sigma^2 log n``, BIC for one mean per segment, with ``sigma`` the noise estimated
from successive differences, ``MAD(diff) / (0.6745 sqrt 2)``). Writes
``<out>/history/<table>-<scale>.md`` and its figures in ``<out>/history/<table>-<scale>/``.
"""
from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from harness.atomic import write_text_atomic
from harness.errors import HarnessError
from harness.regress.history import read_history

__all__ = ["SERIES_KINDS", "change_points", "series", "write_history"]

SERIES_KINDS = ("cell", "model", "trick", "speed", "speed-model")
MIN_POINTS = 4  # fewer nights than this: no change point is looked for
_OUTCOME_COLOURS = {"regression": "tab:red", "rerun": "tab:orange", "undecided": "tab:orange",
                    "not comparable": "tab:gray", "failed": "tab:red", "missing": "tab:red"}


def change_points(values: list[float], min_size: int = 2) -> list[int]:
    """Indices where a new segment starts (0 < i < n), from ruptures' PELT on the mean."""
    import ruptures  # heavy optional dependency: only the history page needs it

    x = np.asarray([v for v in values], dtype=float)
    if len(x) < MIN_POINTS or not np.all(np.isfinite(x)):
        return []
    d = np.diff(x)
    sigma = float(np.median(np.abs(d - np.median(d)))) / (0.6745 * math.sqrt(2.0))
    sigma = max(sigma, 0.1 * float(np.std(x)), 1e-9)
    pen = 2.0 * sigma ** 2 * math.log(len(x))
    ends = ruptures.Pelt(model="l2", min_size=min_size, jump=1).fit(x.reshape(-1, 1)).predict(pen=pen)
    return [int(e) for e in ends[:-1]]


def series(rows: list[dict[str, Any]]) -> dict[tuple[str, str, str], list[dict[str, Any]]]:
    """History rows grouped by (kind, name, metric), each group in run order."""
    out: dict[tuple[str, str, str], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        if r["check_kind"] in SERIES_KINDS:
            out[(r["check_kind"], r["check_name"], r["metric"])].append(r)
    return dict(out)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()[:60] or "series"


def _title(kind: str, name: str, metric: str) -> str:
    what = {"cell": metric, "model": f"{metric}: mean change over the model's cells",
            "trick": f"{metric}: delta over the parent row", "speed": "training images/s",
            "speed-model": "mean log change of training images/s over the model's cells"}[kind]
    return f"{kind} {name} ({what})"


def _plot(path: Path, title: str, runs: list[dict[str, Any]], cps: list[int]) -> None:
    import matplotlib  # heavy optional dependency

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    x = list(range(len(runs)))
    y = [r["now_value"] if r["now_value"] is not None else math.nan for r in runs]
    fig, ax = plt.subplots(figsize=(6.0, 2.2), dpi=80)
    ax.plot(x, y, "-o", ms=3, lw=1, color="tab:blue", label="now")
    base = [r["base_value"] if r["base_value"] is not None else math.nan for r in runs]
    if any(math.isfinite(b) for b in base):
        ax.plot(x, base, "--", lw=1, color="black", label="baseline")
    for i, r in enumerate(runs):
        colour = _OUTCOME_COLOURS.get(r["outcome"])
        if colour and math.isfinite(y[i]):
            ax.plot([i], [y[i]], "o", ms=6, color=colour)
    for cp in cps:
        ax.axvline(cp - 0.5, color="tab:purple", ls=":", lw=1.5)
    ax.set_title(title, fontsize=8)
    ax.set_xlabel("gate run", fontsize=7)
    ax.tick_params(labelsize=7)
    ax.legend(fontsize=6, loc="best")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def _segments(values: list[float], cps: list[int]) -> list[str]:
    """'run i (date): mean before -> mean after' for each change point."""
    bounds = [0] + cps + [len(values)]
    means = [float(np.mean(values[a:b])) for a, b in zip(bounds, bounds[1:])]
    return [f"{means[j]:.2f} -> {means[j + 1]:.2f}" for j in range(len(cps))]


def write_history(store: str | Path, table: str, scale: str, out_dir: str | Path = "reports",
                  figures: bool = True) -> Path:
    """Write the history page of ``table`` at ``scale`` from ``store``; returns its path."""
    rows = read_history(store, table, scale)
    if not rows:
        raise HarnessError(f"no gate history for {table} @ {scale} in {store}; run `python -m "
                           f"harness regress {table} --scale {scale} --store {store}` first")
    runs = list(dict.fromkeys(r["gate_id"] for r in rows))
    first = {r["gate_id"]: r for r in rows}
    page = Path(out_dir) / "history" / f"{table}-{scale}.md"
    fig_dir = page.parent / f"{table}-{scale}"
    try:
        (fig_dir if figures else page.parent).mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise HarnessError(f"cannot write the history page under {page.parent}: {exc.strerror or exc}") from None
    lines = [f"# Gate history: {table} @ {scale}", "",
             f"- {len(runs)} gate run(s), {first[runs[0]]['created_at']} .. "
             f"{first[runs[-1]]['created_at']}; store `{store}`",
             "- change points: ruptures PELT on the mean (l2 cost), penalty 2 sigma^2 log n, "
             f"sigma from successive differences; at least {MIN_POINTS} runs", "",
             "| run | date | commit | machine class | status | exit |",
             "|---|---|---|---|---|---|"]
    for i, g in enumerate(runs):
        r = first[g]
        lines.append(f"| {i} | {r['created_at']} | {r['git_commit']} | {r['machine_class']} | "
                     f"{r['status']} | {r['exit_code']} |")
    groups = series(rows)
    summary, sections = [], []
    for n, ((kind, name, metric), rs) in enumerate(sorted(groups.items())):
        by_run = {r["gate_id"]: r for r in rs}
        ordered = [by_run[g] for g in runs if g in by_run]
        values = [r["now_value"] for r in ordered]
        finite = [v for v in values if v is not None and math.isfinite(v)]
        cps = change_points(finite) if len(finite) == len(values) else []
        found = "; ".join(f"run {runs.index(ordered[c]['gate_id'])} ({ordered[c]['created_at']}): {s}"
                          for c, s in zip(cps, _segments(finite, cps))) or "none"
        last = ordered[-1]
        summary.append(f"| {kind} | {name} | {metric} | {len(ordered)} | "
                       f"{_fmt(last['now_value'])} | {last['outcome']} | {found} |")
        title = _title(kind, name, metric)
        sections += [f"### {title}", ""]
        if figures:
            fig = fig_dir / f"{n:03d}-{kind}-{_slug(name)}.png"
            _plot(fig, title, ordered, cps)
            sections += [f"![{title}]({fig_dir.name}/{fig.name})", ""]
    changed = [r for r in rows if r["check_kind"] == "determinism"]
    lines += ["", "## Series (one per gated metric)", "",
              "| check | name | metric | runs | last | last outcome | change points |",
              "|---|---|---|---|---|---|---|"] + summary
    if changed:
        lines += ["", "## Computation changed (determinism tier)", ""]
        lines += [f"- run {runs.index(r['gate_id'])} ({r['created_at']}): {r['check_name']}, seeds "
                  f"{json.loads(r['extra_json'] or '{}').get('seeds')}" for r in changed]
    lines += ["", "## Plots", ""] + sections
    write_text_atomic(page, "\n".join(lines) + "\n")
    return page


def _fmt(x: float | None) -> str:
    return "-" if x is None or not math.isfinite(x) else f"{x:.2f}"
