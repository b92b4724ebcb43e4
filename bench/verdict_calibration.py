"""Calibration of the verdicts (issue 18): do the intervals cover, do nulls stay quiet, does
`no effect` stay rare when there is an effect of 1.5 x the margin?

Two sources of seed values, both run through the very code the reports use
(``harness.report.verdicts.analyse``, group-sequential looks and adaptive waves included):

* ``--synthetic`` (default): Table 6's layout (6 rows x 3 models, the paper's deltas for the
  verdicts' signs) with seed values drawn from a normal model whose per-model seed SDs are
  the ones measured at ``local`` (ResNet-50-D 0.30, Inception-V3 1.00, MobileNet 0.90 points;
  docs/design notes). Each simulated table runs the adaptive loop exactly as
  ``run --until-decisive`` does (3 seeds per cell, one more seed for every cell that feeds an
  undecided verdict, up to ``--max-seeds``), once with every true delta 0 (nulls) and once
  with every true delta +1.5 x the margin.
* ``--store PATH``: a bank of stored runs (cells with at least ``2 x --arm`` seeds): each
  cell is split at random into two arms of ``--arm`` seeds and the arms are compared with
  the noise pooled over that model's cells (a null: the same cell against itself), then
  again with +1.5 x margin added to one arm.

Prints one JSON object and a markdown table; ``--out FILE`` appends the markdown to a file
(bench/RESULTS.md). No wall-clock figure is reported.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.experiments import load_experiment  # noqa: E402
from harness.report.tables import ReportData  # noqa: E402
from harness.report.verdicts import Looks, analyse  # noqa: E402
from harness.statistics import diff_interval, pooled_noise  # noqa: E402

SEED_SD = {"ResNet-50-D": 0.30, "Inception-V3": 1.00, "MobileNet": 0.90}
MARGIN = 0.5  # the local scale's equivalence margin
EFFECT_VERDICTS = ("reproduced", "contradicted", "differs")


@dataclass
class _Cell:
    vals: dict[int, float]

    def values(self, metric: str) -> dict[int, float]:
        return self.vals


class FakeTable:
    """What ``analyse`` reads from a ReportData: rows, columns, cells, parents, paper deltas."""

    paper_value = ReportData.paper_value
    paper_delta = ReportData.paper_delta
    parent_index = ReportData.parent_index

    def __init__(self, exp: Any, cells: dict[tuple[str, str], dict[int, float]]) -> None:
        self.exp = exp
        self.cells = {k: _Cell(v) for k, v in cells.items()}


def true_means(exp: Any, delta: float) -> dict[tuple[str, str], float]:
    """Each cell's true mean: the parent's plus ``delta`` (so every comparison's truth is delta)."""
    out: dict[tuple[str, str], float] = {}
    for i, row in enumerate(exp.rows):
        p = FakeTable.parent_index(FakeTable(exp, {}), i)
        for col in exp.columns:
            base = out[(exp.rows[p].label, col.label)] if p is not None else 80.0
            out[(row.label, col.label)] = base + (delta if p is not None else 0.0)
    return out


def simulate_table(exp: Any, delta: float, looks: Looks, rng: np.random.Generator) -> list[dict]:
    """One adaptive run of a synthetic table; per comparison: truth, verdict, 95% interval."""
    mu = true_means(exp, delta)
    draws = {cell: mu[cell] + SEED_SD[cell[1]] * rng.standard_normal(looks.max_seeds) for cell in mu}
    seeds = {cell: looks.first for cell in mu}
    while True:
        table = FakeTable(exp, {c: {s: float(draws[c][s]) for s in range(n)} for c, n in seeds.items()})
        v = analyse(table, "top1", MARGIN, looks, power=False)
        grow = set()
        for c in v.per_model:
            if not c.decided:
                grow |= {(c.row, c.column), (c.parent, c.column)}
        for t in v.per_trick:
            if not t.decided:
                for m in t.members:
                    grow |= {(m.row, m.column), (m.parent, m.column)}
        grow = {c for c in grow if seeds[c] < looks.max_seeds}
        if not grow:
            break
        for c in grow:
            seeds[c] += 1
    out = []
    for c in v.per_model + v.per_trick:
        rows = (c.row, c.column), (c.parent, c.column)
        if c.column == "pooled":
            iv95 = c.interval.at(0.95)
        else:
            a, b = (table.cells[r].vals for r in rows)
            iv95 = diff_interval(a, b, v.noise[c.column], level=0.95)
        out.append({"kind": "pooled" if c.column == "pooled" else "model", "verdict": c.verdict.name,
                    "covered": iv95.lo <= delta <= iv95.hi,
                    "covered_printed": c.interval.lo <= delta <= c.interval.hi,
                    "seeds": c.n_row if c.column == "pooled" else min(seeds[r] for r in rows)})
    return out


def summarise(results: list[dict], kind: str) -> dict[str, Any]:
    rs = [r for r in results if r["kind"] == kind]
    n = len(rs)
    return {"comparisons": n,
            "coverage_95": sum(r["covered"] for r in rs) / n,
            "coverage_printed": sum(r["covered_printed"] for r in rs) / n,
            "effect_verdict_rate": sum(r["verdict"] in EFFECT_VERDICTS for r in rs) / n,
            "no_effect_rate": sum(r["verdict"] == "no effect" for r in rs) / n,
            "undecided_rate": sum(r["verdict"] == "undecided" for r in rs) / n,
            "mean_seeds": float(np.mean([r["seeds"] for r in rs]))}


def synthetic(tables: int, looks: Looks, seed: int) -> dict[str, Any]:
    exp = load_experiment("paper_table6")
    rng = np.random.default_rng(seed)
    out = {}
    for name, delta in (("null", 0.0), ("effect_1.5_margin", 1.5 * MARGIN)):
        res = [r for _ in range(tables) for r in simulate_table(exp, delta, looks, rng)]
        out[name] = {k: summarise(res, k) for k in ("model", "pooled")}
    return out


def bank(store: str, arm: int, draws: int, seed: int) -> dict[str, Any]:
    """Split stored cells into two arms: nulls, and +1.5 x margin injected into one arm."""
    from harness.store import Store

    with Store(store, readonly=True) as st:
        df = st.trials_df(status="done")
    df = df[df["top1"].notna()]
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    groups = {k: g["top1"].to_numpy(float) for k, g in df.groupby(["table_name", "column_label", "row_label"])}
    big = {k: v for k, v in groups.items() if len(v) >= 2 * arm}
    if not big:
        return {"error": f"no cell of {store} has {2 * arm} seeds"}
    for name, delta in (("null", 0.0), ("effect_1.5_margin", 1.5 * MARGIN)):
        covered = effect = no_effect = n = 0
        for _ in range(draws):
            for (table, col, row), vals in big.items():
                idx = rng.permutation(len(vals))
                a = {i: float(vals[j]) + delta for i, j in enumerate(idx[:arm])}
                b = {i: float(vals[j]) for i, j in enumerate(idx[arm:2 * arm])}
                others = {r: list(v) for (t, c, r), v in groups.items() if t == table and c == col and r != row}
                noise = pooled_noise({**others, "a": list(a.values()), "b": list(b.values())})
                iv = diff_interval(a, b, noise, level=0.95, pair_min_corr=math.inf)
                iv90 = iv.at(0.90)
                covered += iv.lo <= delta <= iv.hi
                effect += iv.lo > 0 or iv.hi < 0
                no_effect += -MARGIN < iv90.lo and iv90.hi < MARGIN
                n += 1
        out[name] = {"comparisons": n, "coverage_95": covered / n, "effect_verdict_rate": effect / n,
                     "no_effect_rate": no_effect / n}
    out["cells"] = len(big)
    return out


def markdown(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"## Verdict calibration ({'synthetic' if not args.store else 'bank ' + args.store})", ""]
    if args.store:
        lines.append(f"{result.get('cells', 0)} stored cells with >= {2 * args.arm} seeds, split "
                     f"{args.draws} times into two arms of {args.arm} seeds (fixed sample).")
    else:
        lines.append(f"{args.tables} simulated Table 6 runs per scenario (6 rows x 3 models, seed "
                     f"SDs {SEED_SD}), adaptive waves 3..{args.max_seeds} seeds per cell, "
                     f"{args.spending} spending; margin {MARGIN}; numpy seed {args.seed}.")
    lines += ["", "| scenario | verdicts | comparisons | 95% coverage (goal 93-97%) | "
              "coverage of the printed interval (the look's level) | "
              "reproduced/contradicted (null goal <= 5%) | no effect (1.5 x margin goal <= 5%) | "
              "undecided | mean seeds |", "|---|---|---|---|---|---|---|---|---|"]
    for scen in ("null", "effect_1.5_margin"):
        blocks = result[scen] if not args.store else {"cell split": result[scen]}
        for kind, s in blocks.items():
            lines.append(f"| {scen} | {kind} | {s['comparisons']} | {s['coverage_95']:.3f} | "
                         f"{s.get('coverage_printed', float('nan')):.3f} | "
                         f"{s['effect_verdict_rate']:.3f} | {s['no_effect_rate']:.3f} | "
                         f"{s.get('undecided_rate', float('nan')):.3f} | {s.get('mean_seeds', float('nan')):.1f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", default=None, help="a bank of stored runs (else synthetic)")
    ap.add_argument("--tables", type=int, default=200, help="synthetic: simulated tables per scenario")
    ap.add_argument("--max-seeds", type=int, default=12)
    ap.add_argument("--spending", choices=("pocock", "obf"), default="pocock")
    ap.add_argument("--arm", type=int, default=4, help="bank: seeds per arm")
    ap.add_argument("--draws", type=int, default=50, help="bank: random splits per cell")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="append the markdown here")
    args = ap.parse_args(argv)
    looks = Looks(first=3, max_seeds=args.max_seeds, kind=args.spending)
    result = bank(args.store, args.arm, args.draws, args.seed) if args.store else \
        synthetic(args.tables, looks, args.seed)
    md = markdown(result, args)
    print(md)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + md)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
