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
* ``--store PATH``: a bank of stored Table 6 runs at ``local`` (every cell with at least
  ``2 x --arm`` seeds). The whole procedure again, adaptive waves included, with the seed
  noise drawn from the bank's own residuals (each cell's, with replacement: real tails and
  the real spread of each cell, truth known); and the fixed split of the issue: each cell
  split at random into two arms of ``--arm`` seeds compared with the noise pooled over that
  model's cells (the same cell against itself), then with +1.5 x margin added to one arm.

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
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.adaptive import cells_to_grow  # noqa: E402
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


Noise = Callable[[tuple[str, str], int, np.random.Generator], np.ndarray]


def normal_noise(cell: tuple[str, str], n: int, rng: np.random.Generator) -> np.ndarray:
    """The synthetic source: normal seed noise with the model's local SD."""
    return SEED_SD[cell[1]] * rng.standard_normal(n)


def simulate_table(exp: Any, delta: float, looks: Looks, rng: np.random.Generator,
                   noise: Noise = normal_noise) -> list[dict]:
    """One adaptive run of a table whose true deltas are all ``delta``, seed noise from
    ``noise``; the waves grow what ``harness.adaptive.cells_to_grow`` says, as ``run
    --until-decisive`` does. Per comparison: truth, verdict, 95% interval."""
    mu = true_means(exp, delta)
    draws = {cell: mu[cell] + noise(cell, looks.max_seeds, rng) for cell in mu}
    seeds = {cell: looks.first for cell in mu}
    while True:
        table = FakeTable(exp, {c: {s: float(draws[c][s]) for s in range(n)} for c, n in seeds.items()})
        v = analyse(table, "top1", MARGIN, looks, power=False)
        grow = {c for c in cells_to_grow(v) if seeds[c] < looks.max_seeds}
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


def synthetic(tables: int, looks: Looks, seed: int, noise: Noise = normal_noise) -> dict[str, Any]:
    exp = load_experiment("paper_table6")
    rng = np.random.default_rng(seed)
    out = {}
    for name, delta in (("null", 0.0), ("effect_1.5_margin", 1.5 * MARGIN)):
        res = [r for _ in range(tables) for r in simulate_table(exp, delta, looks, rng, noise)]
        out[name] = {k: summarise(res, k) for k in ("model", "pooled")}
    return out


def bank_cells(store: str, need: int, seeds: int | None = None) -> dict[tuple[str, str], np.ndarray]:
    """Table 6's cells at ``local`` in ``store``: each done seed's top-1 (>= ``need`` a cell;
    ``seeds``: only seeds 0..seeds-1, e.g. the bank's own when later runs added more)."""
    from harness.store import Store

    with Store(store, readonly=True) as st:
        df = st.trials_df(status="done")
    df = df[df["top1"].notna() & (df["table_name"] == "paper_table6") & (df["scale"] == "local")]
    if seeds is not None:
        df = df[df["seed"] < seeds]
    cells = {(r, c): g.sort_values("seed")["top1"].to_numpy(float)
             for (r, c), g in df.groupby(["row_label", "column_label"])}
    exp = load_experiment("paper_table6")
    want = [(r.label, c.label) for r in exp.rows for c in exp.columns]
    short = [f"{k[0]} / {k[1]} ({len(cells.get(k, []))})" for k in want if len(cells.get(k, [])) < need]
    if short:
        sys.exit(f"{store}: cells with fewer than {need} done seeds: " + "; ".join(short))
    return {k: cells[k] for k in want}


def residual_noise(cells: dict[tuple[str, str], np.ndarray]) -> Noise:
    """The bank as a noise source: each cell's own residuals (value - cell mean), drawn with
    replacement and smoothed (Silverman's bandwidth ``h = 0.9 s n^(-1/5)``, then shrunk by
    ``1 / sqrt(1 + h^2 / s^2)``) so that their variance is the cell's sample variance ``s^2``.
    Real per-cell spread and roughly real tails, known truth. The plain bootstrap's repeated
    values (3 draws from 8 values are all alike 1 time in 64) would make small samples look
    quieter than distinct seeds; drawing without replacement would make 8 draws of 8
    residuals sum to exactly 0 (no noise in the mean)."""
    res = {k: v - v.mean() for k, v in cells.items()}

    def draw(cell: tuple[str, str], n: int, rng: np.random.Generator) -> np.ndarray:
        r = res[cell]
        s = float(np.std(r, ddof=1))
        h = 0.9 * s * len(r) ** -0.2
        x = rng.choice(r, size=n, replace=True) * math.sqrt(len(r) / (len(r) - 1))
        return (x + h * rng.standard_normal(n)) / math.sqrt(1 + h * h / (s * s))
    return draw


def bank(store: str, tables: int, looks: Looks, arm: int, draws: int, seed: int,
         bank_seeds: int | None = None) -> dict[str, Any]:
    """The whole procedure on the bank's noise (``residual_noise``), and the issue's fixed
    split: each cell against itself, its seeds split into two arms of ``arm``."""
    cells = bank_cells(store, 2 * arm, bank_seeds)
    out = synthetic(tables, looks, seed, residual_noise(cells))
    out["split"] = split_cells(cells, arm, draws, seed)
    out["cells"] = len(cells)
    out["seeds"] = {f"{r} / {c}": len(v) for (r, c), v in cells.items()}
    out["seed_sd"] = {col: round(pooled_noise({r: list(v) for (r, c), v in cells.items() if c == col}).sd, 3)
                      for col in dict.fromkeys(c for _, c in cells)}
    return out


def split_cells(cells: dict[tuple[str, str], np.ndarray], arm: int, draws: int,
                seed: int) -> dict[str, Any]:
    """Fixed-sample nulls: a cell's seeds split at random into two arms of ``arm``, compared
    with the noise pooled over the model's cells; then +1.5 x margin added to one arm."""
    rng = np.random.default_rng(seed)
    out: dict[str, Any] = {}
    for name, delta in (("null", 0.0), ("effect_1.5_margin", 1.5 * MARGIN)):
        covered = effect = no_effect = n = 0
        for _ in range(draws):
            for (row, col), vals in cells.items():
                idx = rng.permutation(len(vals))
                a = {i: float(vals[j]) + delta for i, j in enumerate(idx[:arm])}
                b = {i: float(vals[j]) for i, j in enumerate(idx[arm:2 * arm])}
                others = {r: list(v) for (r, c), v in cells.items() if c == col and r != row}
                noise = pooled_noise({**others, "a": list(a.values()), "b": list(b.values())})
                iv = diff_interval(a, b, noise, level=0.95, pair_min_corr=math.inf)
                iv90 = iv.at(0.90)
                covered += iv.lo <= delta <= iv.hi
                effect += iv.lo > 0 or iv.hi < 0
                no_effect += -MARGIN < iv90.lo and iv90.hi < MARGIN
                n += 1
        out[name] = {"comparisons": n, "coverage_95": covered / n, "effect_verdict_rate": effect / n,
                     "no_effect_rate": no_effect / n}
    return out


def markdown(result: dict[str, Any], args: argparse.Namespace) -> str:
    lines = [f"## Verdict calibration ({'synthetic' if not args.store else 'bank ' + args.store})", ""]
    if args.store:
        lines.append(f"Noise: the residuals of the bank's {result['cells']} Table 6 cells at `local` "
                     f"(seeds a cell: {sorted(set(result['seeds'].values()))}; pooled seed SD per model "
                     f"{result['seed_sd']}), drawn with replacement and smoothed (a smoothed residual bootstrap), into "
                     f"{args.tables} simulated runs per scenario, adaptive waves 3..{args.max_seeds} "
                     f"seeds per cell, {args.spending} spending; margin {MARGIN}; numpy seed {args.seed}.")
    else:
        lines.append(f"{args.tables} simulated Table 6 runs per scenario (6 rows x 3 models, seed "
                     f"SDs {SEED_SD}), adaptive waves 3..{args.max_seeds} seeds per cell, "
                     f"{args.spending} spending; margin {MARGIN}; numpy seed {args.seed}.")
    lines += ["", "| scenario | verdicts | comparisons | 95% coverage (goal 93-97%) | "
              "coverage of the printed interval (the look's level) | "
              "reproduced/contradicted (null goal <= 5%) | no effect (1.5 x margin goal <= 5%) | "
              "undecided | mean seeds |", "|---|---|---|---|---|---|---|---|---|"]
    for scen in ("null", "effect_1.5_margin"):
        blocks = dict(result[scen])
        if args.store:
            blocks[f"cell split {args.arm} vs {args.arm} (fixed)"] = result["split"][scen]
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
    ap.add_argument("--bank-seeds", type=int, default=None, help="bank: only seeds 0..N-1 of each cell")
    ap.add_argument("--draws", type=int, default=50, help="bank: random splits per cell")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None, help="append the markdown here")
    args = ap.parse_args(argv)
    looks = Looks(first=3, max_seeds=args.max_seeds, kind=args.spending)
    result = bank(args.store, args.tables, looks, args.arm, args.draws, args.seed, args.bank_seeds) if args.store \
        else synthetic(args.tables, looks, args.seed)
    md = markdown(result, args)
    print(md)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + md)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
