"""The gate's checks and how one night decides them (docs/nightly.md, "Statistics").

Every check is a one-sided test of "today is worse" with a magnitude floor, built from the
shared :mod:`harness.statistics` module:

* ``cell``: a cell's metric, baseline seeds vs today's (:func:`one_sided_drop`), with the seed
  noise pooled per model over every comparable cell of the table, both sides
  (:func:`pooled_noise`: the residual SD of ``metric ~ C(side, row)``, df ``N - cells``);
* ``model``: the mean drop over all of a model's cells (a small drop of every cell that no
  single cell shows): per-cell differences (:func:`diff_interval`, unpaired, the model's
  pooled noise) combined by inverse variance (:func:`pooled_effect`), t with the noise's df;
* ``trick``: how much of a trick's delta (its row minus its parent row; in a table with a
  ``reference_column``, Table 3, its column minus that column) was lost, per model
  ``(row - parent)_base - (row - parent)_now``, pooled over the models the same way: a trick
  that silently stops working leaves its cells equal to its parent's;
* ``trick-gone``: for a trick whose baseline delta is clearly negative (``t <=
  -DIRECTION_MIN_T`` with the baseline's own seed noise; at ``local`` some regularisers cost
  top-1), the same with the sign reversed: its delta rose toward 0, the trick stopped acting.
  Choosing this check from the baseline's delta, which is also in its statistic, makes it
  somewhat liberal for a trick whose true t is near the threshold (up to about twice its
  nominal level in a normal model); the bank's null nights measure the whole night's rate;
* ``mechanism``: how much of a trick's delta on a quantity that shows its *mechanism* was
  lost, ``(row - parent)_base - (row - parent)_now`` as a fraction of the baseline's delta,
  pooled over the models. The quantity is the mean logit gap of Sec 5.2 / Figure 4 (label
  smoothing shrinks it several-fold; mixup and distillation soften the logits too): a trick
  that stops working shows there even where the proxy's accuracy cannot see it (at
  ``local``, label smoothing and mixup cost top-1, so switching them off raises it). Only a
  trick whose baseline delta is clear (``|t| >= MECHANISM_MIN_T`` on that model) is checked;
  each cell's seed SD is its own (the gap's noise differs several-fold between cells with and
  without label smoothing), pooled within the cell over both sides, Welch-Satterthwaite df;
  the floor is ``MECHANISM_FLOOR`` of the baseline's delta;
* ``speed``: a cell's training images/s, one value a trial (the mean of its epochs: on a
  shared CPU the epochs of one trial share its neighbours, so they are not independent
  repeats), two-sided Mann-Whitney (:func:`speed_change`) halved in the direction of a
  slowdown, from 3 trials a side; the floor is a fraction of the baseline's median;
* ``speed-model``: the mean log slowdown over a model's cells (a slower kernel slows every
  cell of a model), as ``model`` on ``log(images/s)`` with its own pooled noise; floor
  ``-log(1 - fraction)``.

One night is one *family*: Holm's step-down over the p-values of every gating check
(:func:`family_wise`), so the chance that a night with nothing changed fails is at most
``alpha`` whatever the number of checks. A check is a ``regression`` when Holm rejects it
AND its drop reaches the floor, at the last look or at a look after one where it was
already rejected: before the last look a first rejection is ``confirm``, and its cells get
more seeds first (a night whose two seeds include an occasional bad one clears; a real drop
is rejected again, with more seeds). Asking for two rejections can only lower the chance of
a false alarm. ``pass`` when its raw p is at least ``band`` or its one-sided upper bound is
below the floor; otherwise ``rerun``: its cells get more seeds and the night looks again. Looks ``k = 1..K`` (``n0, n0 + step, ...`` seeds a cell) each use the
nominal level of a Lan-DeMets Pocock-type alpha-spending rule (:func:`spending_bounds`), so
looking again does not spend more than ``alpha`` in all.
"""
from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from harness.statistics import (Drop, Interval, Noise, diff_interval, family_wise, interval_at,
                                nominal_level, one_sided_drop, pooled_effect, pooled_noise,
                                satterthwaite, speed_change, spending_bounds, within_sd)

__all__ = ["FAMILY_METHOD", "Check", "Looks", "cell_check", "model_check", "trick_checks",
           "mechanism_check", "speed_check", "decide", "column_noise", "MECHANISM_MIN_T",
           "MECHANISM_FLOOR"]

FAMILY_METHOD = "holm"  # statsmodels multipletests' name; Holm (1979) step-down
SPENDING = "pocock"  # Lan-DeMets Pocock-type: most of alpha stays with the first look
MIN_SPEED_RUNS = 3  # repeats a side before speed is tested at all
MECHANISM_MIN_T = 5.0  # a trick's baseline delta on its mechanism metric must be this clear
MECHANISM_FLOOR = 0.5  # ... and at least this fraction of it lost to fail
DIRECTION_MIN_T = 3.0  # a trick's baseline delta this clearly negative also gets a trick-gone check
NEVER = 100.0  # a floor of 100 points cannot be crossed: the check does not gate (smoke)

Values = Mapping[int, float]  # seed -> value


@dataclass
class Check:
    """One test of the night. ``drop``: the shared module's :class:`Drop` (for speed: the
    fractional slowdown ``1 - ratio`` with a fractional floor); ``base``/``now``: what a
    report shows (means; the pooled delta for a trick; medians for speed); ``cells``: the
    cells a rerun adds seeds to."""

    kind: str  # cell | model | trick | trick-gone | mechanism | speed | speed-model | invariant
    name: str
    metric: str
    cells: tuple[tuple[str, str], ...]
    base: float | None = None
    now: float | None = None
    drop: Drop | None = None
    gating: bool = True
    outcome: str = "pass"  # pass | improved | regression | confirm | rerun | undecided | n/a
    note: str = ""
    look: int = 1
    n_base: int = 0
    n_now: int = 0

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.kind, self.name, self.metric)

    @property
    def p(self) -> float:
        return self.drop.p if self.drop is not None else math.nan

    @property
    def failed(self) -> bool:
        return self.outcome == "regression"

    def to_json(self) -> dict[str, Any]:
        d = {k: v for k, v in asdict(self).items() if k != "drop"}
        d["drop"] = asdict(self.drop) if self.drop is not None else None
        d["cells"] = [list(c) for c in self.cells]
        return d


# ---- looks ----------------------------------------------------------------------------
@dataclass(frozen=True)
class Looks:
    """Seeds per cell at each look: ``first, first + step, ..., <= max_seeds``; the
    baseline holds ``base_seeds`` seeds a cell. Information of a difference of means grows
    as ``1 / (1/n_base + 1/n_now)``, so look ``k``'s fraction is that over its value at the
    last look."""

    first: int
    step: int
    max_seeds: int
    base_seeds: int

    @property
    def seeds(self) -> list[int]:
        return list(range(self.first, max(self.first, self.max_seeds) + 1, max(1, self.step)))

    @property
    def count(self) -> int:
        return len(self.seeds)

    def fractions(self) -> list[float]:
        info = [1.0 / (1.0 / max(1, self.base_seeds) + 1.0 / n) for n in self.seeds]
        return [i / info[-1] for i in info]

    def alpha(self, look: int, alpha: float) -> float:
        """Look ``look``'s (1-based) one-sided nominal level when the night spends
        ``alpha`` one-sided in all (the two-sided bounds at ``2 alpha``, halved)."""
        levels = _one_sided_levels(tuple(round(f, 12) for f in self.fractions()), alpha)
        return levels[min(max(look, 1), len(levels)) - 1]


@functools.lru_cache(maxsize=64)
def _one_sided_levels(fractions: tuple[float, ...], alpha: float) -> tuple[float, ...]:
    if len(fractions) == 1:
        return (alpha,)
    bounds = spending_bounds(list(fractions), 2 * alpha, SPENDING)
    return tuple(nominal_level(c) / 2 for c in bounds)


# ---- the checks -------------------------------------------------------------------------
def column_noise(cells: Mapping[Any, Sequence[float]]) -> Noise:
    """The seed noise of one model: residual SD over its comparable cells, both sides."""
    return pooled_noise(cells)


def _floor_only(drop: float, floor: float) -> Drop:
    """No seed noise (one seed a side): the floor alone decides, as the gate did before."""
    return Drop(drop, math.nan, math.nan, 0, math.nan, math.nan, floor,
                "regressed" if drop >= floor else "unclear")


def cell_check(row: str, column: str, metric: str, base: Values, now: Values, noise: Noise,
               floor: float, alpha: float) -> Check:
    """One cell's metric, baseline vs today, with the model's pooled noise."""
    b, n = list(base.values()), list(now.values())
    chk = Check("cell", f"{row} / {column}", metric, ((row, column),), _mean(b), _mean(n),
                gating=floor < NEVER, n_base=len(b), n_now=len(n))
    if noise.df > 0 and math.isfinite(noise.sd) and noise.sd > 0:
        chk.drop = one_sided_drop(b, n, noise, floor, alpha)
    else:
        chk.drop = _floor_only(chk.base - chk.now, floor)
        chk.note = "no seed noise (one seed a side): floor only"
    return chk


def _drop_of(iv: Interval, floor: float, alpha: float) -> Drop:
    """A Drop from an interval of ``now - base`` (t with the interval's df): one-sided p of
    "now is lower" and the one-sided upper bound of the drop at ``1 - alpha``."""
    drop = -iv.mean
    if not (math.isfinite(iv.se) and iv.se > 0 and iv.df > 0):
        return _floor_only(drop, floor)
    p2 = iv.p_value()
    p = p2 / 2 if drop > 0 else 1 - p2 / 2
    upper = -interval_at(iv, 1 - 2 * alpha).lo
    outcome = "regressed" if p < alpha and drop >= floor else "ok" if upper < floor else "unclear"
    return Drop(drop, iv.se, drop / iv.se, iv.df, p, upper, floor, outcome)


def _combined(intervals: list[Interval], df: float) -> Interval:
    """The inverse-variance mean of ``intervals`` (:func:`pooled_effect`) as a t interval
    with ``df`` (the pooled noise's: the normal would be anti-conservative at df ~ 12)."""
    pooled = pooled_effect(intervals)
    iv = Interval(pooled.mean, math.nan, math.nan, pooled.se, df, 0.95, pooled.k, pooled.k,
                  False, None)
    return interval_at(iv, 0.95)


def model_check(model: str, metric: str, cells: Mapping[tuple[str, str], tuple[Values, Values]],
                noise: Noise, floor: float, alpha: float) -> Check | None:
    """The mean drop over a model's comparable cells ((row, column) -> (base, now))."""
    ivs = [diff_interval(now, base, noise, pair_min_corr=math.inf)
           for base, now in cells.values() if base and now]
    if len(ivs) < 2:
        return None
    iv = _combined(ivs, noise.df)
    chk = Check("model", model, metric, tuple(cells),
                gating=floor < NEVER, n_base=sum(len(b) for b, _ in cells.values()),
                n_now=sum(len(n) for _, n in cells.values()))
    chk.drop = _drop_of(iv, floor, alpha)
    chk.base, chk.now = 0.0, iv.mean
    chk.note = f"mean change over {len(ivs)} cells"
    return chk


def _pair_cells(name: str, parent: str, keys: Sequence[Any],
                cells: Mapping[Any, tuple[tuple[str, str], tuple[str, str]]] | None
                ) -> tuple[tuple[str, str], ...]:
    """The cells behind the pairs ``keys``: ``cells[key]`` (a trick cell and its parent's),
    else, for a stacked table, ``(name, key)`` and ``(parent, key)`` (key: the column)."""
    if cells is not None:
        return tuple(c for k in keys for c in cells[k])
    return tuple(c for k in keys for c in ((name, k), (parent, k)))


def _baseline_t(columns: Mapping[Any, tuple[Values, Values, Values, Values]]) -> float:
    """t of the trick's pooled baseline delta with the seed noise of the baseline's own
    cells (residual SD over the pairs' trick and parent cells): today's seeds play no part,
    so the direction it sets is the same at every look of a night."""
    cells = {(i, side): list(v.values()) for i, sides in enumerate(columns.values())
             for side, v in (("trick", sides[0]), ("parent", sides[1])) if v}
    nz = pooled_noise(cells)
    if not (nz.df > 0 and math.isfinite(nz.sd) and nz.sd > 0):
        return math.nan
    ivs = [diff_interval(rb, pb, nz, pair_min_corr=math.inf)
           for rb, pb, _, _ in columns.values() if rb and pb]
    iv = _combined(ivs, nz.df) if ivs else None
    return iv.mean / iv.se if iv is not None and iv.se > 0 else math.nan


def _deltas(columns: Mapping[Any, tuple[Values, Values, Values, Values]],
            noise: Mapping[Any, Noise]):
    """(the pairs used, the baseline's and today's per-pair deltas) over the complete pairs."""
    used, base_d, now_d = [], [], []
    for key, (rb, pb, rn, pn) in columns.items():
        if rb and pb and rn and pn:
            used.append(key)
            base_d.append(diff_interval(rb, pb, noise[key], pair_min_corr=math.inf))
            now_d.append(diff_interval(rn, pn, noise[key], pair_min_corr=math.inf))
    return used, base_d, now_d


def _lost(base_d: list[Interval], now_d: list[Interval], dfs: list[float], df: float,
          sign: float) -> Interval:
    """The interval of ``sign x (now - base)`` of the delta, pooled over the pairs."""
    return _combined([Interval(sign * (n.mean - b.mean), math.nan, math.nan, math.hypot(b.se, n.se),
                               d, 0.95, n.n_a, b.n_a, False, None)
                      for b, n, d in zip(base_d, now_d, dfs)], df)


def trick_checks(row: str, parent: str, metric: str,
                 columns: Mapping[Any, tuple[Values, Values, Values, Values]],
                 noise: Mapping[Any, Noise], floor: float, alpha: float,
                 cells: Mapping[Any, tuple[tuple[str, str], tuple[str, str]]] | None = None
                 ) -> list[Check]:
    """A trick's delta (``row`` minus ``parent``) against the baseline's, pooled over the
    models: ``trick``, the delta fell (a trick that helps stopped helping, or its row got
    worse than its parent); and, for a trick whose baseline delta is clearly negative
    (``t <= -DIRECTION_MIN_T`` on the baseline's own noise: a regulariser at ``local``),
    ``trick-gone``, the delta rose toward 0 (the trick stopped acting at all).

    ``columns``: pair -> (trick base, parent base, trick now, parent now), one pair a model;
    ``cells``: pair -> (trick cell, parent cell) (default: a stacked table's, the pair being
    the column)."""
    used, base_d, now_d = _deltas(columns, noise)
    if not used:
        return []
    t_base = _baseline_t(columns)
    df, dfs = min(noise[k].df for k in columns), [noise[k].df for k in used]
    out = []
    for kind, sign in (("trick", 1.0), ("trick-gone", -1.0)):
        if kind == "trick-gone" and not t_base <= -DIRECTION_MIN_T:
            continue
        chk = Check(kind, row, metric, _pair_cells(row, parent, used, cells), gating=floor < NEVER)
        chk.drop = _drop_of(_lost(base_d, now_d, dfs, df, sign), floor, alpha)
        chk.base = pooled_effect(base_d).mean  # the trick's delta in the baseline, pooled
        chk.now = pooled_effect(now_d).mean
        chk.note = f"delta over '{parent}', pooled over {len(used)} model(s)" + (
            f"; the baseline's delta is negative (t {t_base:.1f}): a rise toward 0 is the loss"
            if sign < 0 else "")
        chk.n_base = chk.n_now = len(used)
        out.append(chk)
    return out


def _kept_fraction(rb: Values, pb: Values, rn: Values, pn: Values) -> Interval | None:
    """``delta_now / delta_base - 1`` (0: the mechanism as in the baseline, -1: gone) of one
    model, with each cell's own within-side SD; None unless the baseline's delta is clear."""
    sr, dfr = within_sd(list(rb.values()), list(rn.values()))
    sp, dfp = within_sd(list(pb.values()), list(pn.values()))
    if not (dfr > 0 and dfp > 0 and math.isfinite(sr) and math.isfinite(sp)):
        return None
    d_base = _mean(list(rb.values())) - _mean(list(pb.values()))
    d_now = _mean(list(rn.values())) - _mean(list(pn.values()))
    se_base, _ = satterthwaite([(sr ** 2 / len(rb), dfr), (sp ** 2 / len(pb), dfp)])
    if not (se_base > 0 and abs(d_base) >= MECHANISM_MIN_T * se_base):
        return None
    se, df = satterthwaite([(sr ** 2 * (1 / len(rb) + 1 / len(rn)), dfr),
                            (sp ** 2 * (1 / len(pb) + 1 / len(pn)), dfp)])
    scale = abs(d_base)
    return Interval((d_now - d_base) / d_base, math.nan, math.nan, se / scale, df, 0.95,
                    len(rn), len(rb), False, None)


def mechanism_check(row: str, parent: str, metric: str,
                    columns: Mapping[Any, tuple[Values, Values, Values, Values]],
                    alpha: float, gating: bool = True,
                    cells: Mapping[Any, tuple[tuple[str, str], tuple[str, str]]] | None = None
                    ) -> Check | None:
    """How much of ``row``'s delta over ``parent`` on a mechanism ``metric`` was lost, as a
    fraction of the baseline's delta, pooled over the models where that delta is clear.

    ``columns`` and ``cells`` as :func:`trick_checks`'."""
    kept = {col: iv for col, sides in columns.items() if all(sides)
            for iv in [_kept_fraction(*sides)] if iv is not None}
    if not kept:
        return None
    iv = _combined(list(kept.values()), min(k.df for k in kept.values()))
    chk = Check("mechanism", row, metric, _pair_cells(row, parent, list(kept), cells),
                gating=gating)
    chk.drop = _drop_of(iv, MECHANISM_FLOOR, alpha)
    chk.base, chk.now = 1.0, 1.0 + iv.mean
    chk.note = (f"fraction of the {metric} delta over '{parent}' kept, pooled over "
                f"{len(kept)} model(s) with a clear baseline delta")
    chk.n_base = chk.n_now = len(kept)
    return chk


def speed_check(row: str, column: str, base: Sequence[float], now: Sequence[float],
                floor: float, alpha: float) -> Check:
    """Training images/s of one cell: Mann-Whitney over its trials, floor = fraction."""
    chk = Check("speed", f"{row} / {column}", "img_per_s", ((row, column),),
                n_base=len(base), n_now=len(now))
    if len(base) < MIN_SPEED_RUNS or len(now) < MIN_SPEED_RUNS:
        chk.outcome, chk.gating = "n/a", False
        chk.note = (f"fewer than {MIN_SPEED_RUNS} trials a side ({len(base)} vs {len(now)}): "
                    "the model's pooled speed check judges it")
        chk.base, chk.now = _median(base), _median(now)
        return chk
    sc = speed_change(base, now)
    chk.base, chk.now = _median(base), _median(now)
    slow = 1.0 - sc.ratio
    p = sc.p / 2 if sc.ratio < 1 else 1 - sc.p / 2  # the exact null is symmetric
    chk.drop = Drop(slow, math.nan, math.nan, math.nan, p, math.nan, floor,
                    "regressed" if p < alpha and slow >= floor else "unclear")
    return chk


# ---- one look's decisions ---------------------------------------------------------------
def decide(checks: list[Check], alpha: float, band: float, last_look: bool,
           fixed: Mapping[tuple[str, str, str], str] | None = None,
           flagged: frozenset[tuple[str, str, str]] = frozenset()) -> None:
    """Set every check's ``outcome`` at a look of level ``alpha`` (see the module docstring);
    ``last_look``: no more seeds can come, so what would be rerun is ``undecided`` and a
    regression is not confirmed first; ``fixed``: outcomes of earlier looks, kept (their
    p-values stay in Holm's family); ``flagged``: checks that were a regression at an
    earlier look (``confirm``): a regression now is confirmed."""
    pending = [c for c in checks if c.outcome not in ("n/a",) and c.drop is not None]
    tested = [c for c in pending if c.gating and math.isfinite(c.drop.p)]
    rejected = dict(zip(map(id, tested), family_wise([c.drop.p for c in tested], alpha,
                                                     FAMILY_METHOD)))
    for c in pending:
        d = c.drop
        if fixed and c.key in fixed:
            c.outcome = fixed[c.key]
        elif not c.gating:
            c.outcome = "pass"
        elif not math.isfinite(d.p):  # floor only
            c.outcome = "regression" if d.drop >= d.floor else "pass"
        elif rejected[id(c)] and d.drop >= d.floor:
            c.outcome = "regression" if last_look or c.key in flagged else "confirm"
        elif d.p >= band or (math.isfinite(d.upper) and d.upper < d.floor) or d.drop < _band_floor(c):
            c.outcome = "improved" if -d.drop >= d.floor and 1 - d.p < alpha else "pass"
        else:
            c.outcome = "undecided" if last_look else "rerun"


def _band_floor(c: Check) -> float:
    """Speed has no upper bound: a slowdown is worth more runs once it reaches the floor."""
    return c.drop.floor if c.kind == "speed" else -math.inf


def _mean(xs: Sequence[float]) -> float | None:
    return sum(xs) / len(xs) if xs else None


def _median(xs: Sequence[float]) -> float | None:
    if not xs:
        return None
    s = sorted(xs)
    m = len(s) // 2
    return s[m] if len(s) % 2 else (s[m - 1] + s[m]) / 2
