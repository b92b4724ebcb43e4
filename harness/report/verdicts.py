"""Per-trick verdicts of a stacked table: each row vs its parent, per model and pooled.

The statistics (``harness.statistics``) are shared with the nightly gate:

* seed noise is pooled per model (column) over every cell of the table (the residual SD of
  ``metric ~ C(row)``): the anchor of each cell's moderated variance below and the SD behind
  the MDE and seeds-needed figures; the degrees of freedom of an interval come from all of
  that model's cells (the prior's ``d0``) plus the two cells compared;
* a row vs its parent is a difference of means whose variance comes from the two cells'
  own seed variances shrunk toward the model's (Smyth's moderated variances,
  ``harness.statistics.moderated``: the cells of one model differ up to threefold in seed SD
  at ``local``, and one pooled SD under-covered the noisy ones), Welch-Satterthwaite df;
  paired by seed only where the measured correlation says pairing helps (r >=
  ``PAIR_MIN_CORR`` on >= 3 seeds);
* the per-trick verdict pools the per-model deltas with a fixed-effect (inverse-variance)
  mean: the question is "does the trick help on these models";
* ``reproduced`` / ``contradicted``: the interval at level ``1 - alpha`` excludes 0 on the
  paper's / the other side; ``no effect``: the interval at ``1 - 2 alpha`` lies inside
  +-margin (two one-sided tests, the scale's ``equivalence_margin``); else ``undecided``,
  with the minimum detectable effect (80% power) and the seeds that would detect the
  paper's delta.

Adaptive runs (``run --until-decisive``) look at each comparison after every added seed;
``Looks`` turns a comparison's seed count into the nominal alpha of that look under a
Lan-DeMets alpha-spending rule, so the interim looks do not inflate the error rate.
"""
from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field, replace
from typing import Any

from harness.statistics import (VERDICT_NAMES, Interval, Noise, Pooled, Verdict, classify, diff_interval,
                                interval_at, mde, moderated, nominal_level, pair_noise,
                                pooled_effect, pooled_noise,
                                seeds_needed, spending_bounds)

ALPHA = 0.05
PAIR_MIN_CORR = 0.5
SEEDS_CAP = 64  # "seeds needed" beyond this is reported as "> 64"


@dataclass(frozen=True)
class Looks:
    """A group-sequential rule: looks after ``first`` .. ``max_seeds`` seeds per cell."""

    first: int = 3
    max_seeds: int = 12
    kind: str = "pocock"  # "pocock" (Pocock-type) | "obf" (O'Brien-Fleming-type) spending

    def bounds(self) -> list[float]:
        return list(_bounds(self.first, self.max_seeds, self.kind))

    def alpha(self, n: int) -> float:
        """The nominal two-sided alpha of the look at ``n`` seeds (the last look's past it)."""
        bounds = self.bounds()
        k = min(max(n, self.first), self.max_seeds) - self.first
        return nominal_level(bounds[k])

    def describe(self) -> str:
        name = {"obf": "O'Brien-Fleming-type", "pocock": "Pocock-type"}[self.kind]
        alphas = ", ".join(f"{n}: {self.alpha(n):.4f}" for n in range(self.first, self.max_seeds + 1))
        return (f"group-sequential looks after {self.first}..{self.max_seeds} seeds per cell, "
                f"Lan-DeMets {name} alpha spending of {ALPHA:g} two-sided; nominal alpha per "
                f"look (seeds: alpha) {alphas}")


@functools.lru_cache(maxsize=32)
def _bounds(first: int, max_seeds: int, kind: str) -> tuple[float, ...]:
    """The z bounds of looks at first..max_seeds seeds (information fraction n / max_seeds)."""
    ns = range(first, max_seeds + 1)
    return tuple(spending_bounds([n / max_seeds for n in ns], ALPHA, kind))


@dataclass
class Comparison:
    """One row vs its parent in one column (or pooled over the columns)."""

    row: str
    parent: str
    column: str  # a column label, or "pooled" for the per-trick verdict
    interval: Interval | None
    paper: float | None
    verdict: Verdict
    alpha: float = ALPHA
    n_row: int = 0
    n_parent: int = 0
    mde: float | None = None
    seeds_needed: int | None = None
    noise_sd: float | None = None
    pooled: Pooled | None = None
    members: list["Comparison"] = field(default_factory=list)

    @property
    def decided(self) -> bool:
        return self.verdict.name in ("reproduced", "contradicted", "no effect", "differs")

    @property
    def mean(self) -> float:
        return self.interval.mean if self.interval else math.nan

    @property
    def half_width(self) -> float:
        iv = self.interval
        return (iv.hi - iv.lo) / 2 if iv and math.isfinite(iv.lo) else math.nan

    @property
    def n(self) -> int:
        return min(self.n_row, self.n_parent)


def column_noise(cells: dict[str, dict[int, float]]) -> Noise:
    """The pooled seed noise of one model over the table's cells (row -> seed -> value)."""
    return pooled_noise({row: list(v.values()) for row, v in cells.items()})


def compare(row: str, parent: str, column: str, ours: dict[int, float], base: dict[int, float],
            noise: Noise, paper: float | None, margin: float, looks: Looks | None,
            power: bool = True, pair: Noise | None = None) -> Comparison:
    """A row vs its parent in one column, at the look its seed count reaches; ``power``: also
    the MDE and the seeds the paper's delta needs (what an undecided verdict reports).
    ``noise``: the model's pooled noise; ``pair``: the noise of this difference from the two
    cells' moderated variances (:func:`harness.statistics.pair_noise`), used when given."""
    n_row, n_parent = len(ours), len(base)
    if not ours or not base:
        return Comparison(row, parent, column, None, paper, Verdict("not run", None, "a side has no value"),
                          n_row=n_row, n_parent=n_parent)
    alpha = looks.alpha(min(n_row, n_parent)) if looks else ALPHA
    iv = diff_interval(ours, base, pair or noise, level=1 - alpha, pair_min_corr=PAIR_MIN_CORR)
    verdict = classify(iv, interval_at(iv, 1 - 2 * alpha), paper, margin)
    cmp = Comparison(row, parent, column, iv, paper, verdict, alpha, n_row, n_parent,
                     noise_sd=noise.sd if math.isfinite(noise.sd) else None)
    if not power or cmp.decided:
        return cmp
    if math.isfinite(iv.se) and iv.se > 0 and iv.df > 0:
        cmp.mde = mde(iv.se, iv.df, alpha=alpha)
    if paper and math.isfinite(noise.sd) and noise.sd > 0 and noise.n_cells >= 2:
        cmp.seeds_needed = seeds_needed(abs(paper), noise.sd, cells_in_noise=noise.n_cells,
                                        alpha=alpha, max_seeds=SEEDS_CAP)
    return cmp


def pool(members: list[Comparison], margin: float, power: bool = True) -> Comparison:
    """The per-trick verdict: the fixed-effect mean of the per-model deltas; the paper's side
    is the mean of the paper's per-model deltas."""
    first = members[0]
    usable = [m for m in members if m.interval is not None and math.isfinite(m.interval.se)
              and m.interval.se > 0]
    papers = [m.paper for m in members if m.paper is not None and math.isfinite(m.paper)]
    paper = sum(papers) / len(papers) if len(papers) == len(members) else None
    if not usable:
        return Comparison(first.row, first.parent, "pooled", None, paper,
                          Verdict("not run", None, "no model has an interval"), members=members)
    alpha = min(m.alpha for m in usable)  # the strictest member look decides the level
    pooled = pooled_effect([m.interval for m in usable], level=1 - alpha)
    # t on the smallest member df, not the normal: each model's se is itself estimated from
    # few seeds (the normal covered 90-92% in bench/verdict_calibration.py, goal 93-97%)
    iv = interval_at(replace(pooled.as_interval(), df=min(m.interval.df for m in usable)), 1 - alpha)
    verdict = classify(iv, interval_at(iv, 1 - 2 * alpha), paper, margin)
    cmp = Comparison(first.row, first.parent, "pooled", iv, paper, verdict, alpha,
                     n_row=min(m.n_row for m in usable), n_parent=min(m.n_parent for m in usable),
                     pooled=pooled, members=members)
    if power and not cmp.decided and math.isfinite(iv.se) and iv.se > 0:
        cmp.mde = mde(iv.se, iv.df, alpha=alpha)
    return cmp


@dataclass
class TrickVerdicts:
    """A stacked table's verdicts for one metric."""

    metric: str
    margin: float
    looks: Looks | None
    per_model: list[Comparison]
    per_trick: list[Comparison]
    noise: dict[str, Noise]
    swapped: bool = False  # column deltas (harness.report.columns): a comparison's row is a column

    def counts(self, which: str = "per_model") -> dict[str, int]:
        """Verdict name -> how many (in VERDICT_NAMES order)."""
        names = [c.verdict.name for c in getattr(self, which)]
        return {k: names.count(k) for k in VERDICT_NAMES if names.count(k)}


def analyse(data: Any, metric: str, margin: float, looks: Looks | None = None,
            power: bool = True) -> TrickVerdicts:
    """The per-model and per-trick (pooled) verdicts and the noise per column of a stacked
    table's ReportData (harness.report.tables); ``power=False`` skips the MDE and seeds-needed
    figures (the adaptive loop only needs the verdicts)."""
    exp = data.exp
    values = {col.label: {row.label: data.cells[(row.label, col.label)].values(metric) for row in exp.rows}
              for col in exp.columns}
    noise = {col: column_noise(cells) for col, cells in values.items()}
    cell_var = {col: moderated({row: list(v.values()) for row, v in cells.items()})
                for col, cells in values.items()}
    per_model, per_trick = [], []
    for i, row in enumerate(exp.rows):
        p = data.parent_index(i)
        if p is None:
            continue
        parent = exp.rows[p]
        members = []
        for j, col in enumerate(exp.columns):
            ours = data.cells[(row.label, col.label)].values(metric)
            base = data.cells[(parent.label, col.label)].values(metric)
            members.append(compare(row.label, parent.label, col.label, ours, base,
                                   noise[col.label], data.paper_delta(i, p, j, metric), margin, looks,
                                   power, pair_noise(cell_var[col.label][row.label],
                                                     cell_var[col.label][parent.label])))
        per_model += members
        if len(members) > 1:
            per_trick.append(pool(members, margin, power))
    return TrickVerdicts(metric, margin, looks, per_model, per_trick, noise)
