"""Tests for the nightly regression gate: accuracy drops, speed changes, multiplicity."""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from scipy import stats as st
from statsmodels.stats.multitest import multipletests

from .intervals import Noise, finite_values, pooled_noise

__all__ = ["DROP_OUTCOMES", "Drop", "SpeedChange", "family_wise", "speed_change",
           "one_sided_drop", "regressions"]

#: ``regressed``: significant drop of at least the floor; ``ok``: the one-sided upper
#: bound of the drop is below the floor; ``unclear``: neither (collect more runs).
DROP_OUTCOMES = ("regressed", "ok", "unclear")


def family_wise(pvalues: Sequence[float], alpha: float = 0.05,
                method: str = "holm") -> list[bool]:
    """Which hypotheses to reject with family-wise error ``alpha`` (statsmodels
    ``multipletests``; Holm: sort p ascending, reject while ``p_(i) <= alpha/(m - i + 1)``).
    NaN p-values (no test run) are never rejected and do not count in the family."""
    p = np.asarray(pvalues, dtype=float)
    out = np.zeros(len(p), dtype=bool)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = multipletests(p[ok], alpha=alpha, method=method)[0]
    return [bool(x) for x in out]


class SpeedChange(NamedTuple):
    """``ratio = median(now) / median(base)`` and the two-sided Mann-Whitney ``p``."""

    ratio: float
    p: float


def speed_change(base: Sequence[float], now: Sequence[float]) -> SpeedChange:
    """Throughput change: median ratio and scipy ``mannwhitneyu(now, base)`` two-sided p
    (``method='auto'``: exact null distribution for small samples without ties). With
    n and m runs the smallest possible p is ``2 / C(n + m, n)`` (0.1 for 3 vs 3), so a
    p threshold needs enough runs to be reachable."""
    b, n = finite_values(base), finite_values(now)
    if not b or not n:
        return SpeedChange(math.nan, math.nan)
    p = float(st.mannwhitneyu(n, b, alternative="two-sided", method="auto").pvalue)
    return SpeedChange(float(np.median(n) / np.median(b)), p)


@dataclass(frozen=True)
class Drop:
    """``drop = mean(base) - mean(now)`` (positive = now lower), ``t = drop / se`` with
    ``se = sd * sqrt(1/n_base + 1/n_now)``, one-sided ``p = P(T_df >= t)``, ``upper`` its
    one-sided ``1 - alpha`` upper confidence bound, and the gate ``outcome``."""

    drop: float
    se: float
    t: float
    df: float
    p: float
    upper: float
    floor: float
    outcome: str

    @property
    def regressed(self) -> bool:
        """True when ``outcome == "regressed"``."""
        return self.outcome == "regressed"


def one_sided_drop(base_values: Sequence[float], now_values: Sequence[float],
                   noise: Noise | None, floor: float, alpha: float = 0.05) -> Drop:
    """One-sided pooled-SD t test of "now is lower than base", with a magnitude floor.

    ``outcome``: ``regressed`` if ``p < alpha`` and ``drop >= floor`` (significance AND
    magnitude, as asv/Perfherder); ``ok`` if ``drop + t_{1-alpha,df} se < floor``;
    ``unclear`` otherwise. ``noise=None`` pools the SD of the two groups alone.
    """
    if floor < 0 or not 0 < alpha < 1:
        raise ValueError(f"need floor >= 0 and 0 < alpha < 1; got {floor!r}, {alpha!r}")
    b, n = finite_values(base_values), finite_values(now_values)
    noise = noise if noise is not None else pooled_noise({"base": b, "now": n})
    drop = float(np.mean(b) - np.mean(n)) if b and n else math.nan
    se = noise.sd * math.sqrt(1 / len(b) + 1 / len(n)) if b and n else math.nan
    if not (math.isfinite(drop) and math.isfinite(se) and se > 0 and noise.df > 0):
        return Drop(drop, se, math.nan, noise.df, math.nan, math.nan, floor, "unclear")
    t = drop / se
    p = float(st.t.sf(t, noise.df))
    upper = drop + float(st.t.ppf(1 - alpha, noise.df)) * se
    outcome = ("regressed" if p < alpha and drop >= floor
               else "ok" if upper < floor else "unclear")
    return Drop(drop, se, t, noise.df, p, upper, floor, outcome)


def regressions(drops: Sequence[Drop], alpha: float = 0.05,
                method: str = "holm") -> list[bool]:
    """The night's alarms: ``family_wise`` over the drops' p-values AND ``drop >= floor``
    (45 checks at 0.05 each would fire on ~90% of quiet nights)."""
    sig = family_wise([d.p for d in drops], alpha, method)
    return [s and d.drop >= d.floor for s, d in zip(sig, drops)]
