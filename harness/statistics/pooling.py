"""One trick's effect pooled over a table's models (fixed-effect meta-analysis)."""
from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as st
from statsmodels.stats.meta_analysis import combine_effects

from .intervals import Interval, interval_at

__all__ = ["Pooled", "pooled_effect"]


@dataclass(frozen=True)
class Pooled:
    """Inverse-variance mean of ``k`` per-model deltas with its normal interval at
    ``level``; Cochran's ``q`` (df k-1) and ``i2`` describe how much the models differ."""

    mean: float
    lo: float
    hi: float
    se: float
    q: float
    i2: float
    k: int
    level: float
    method: str = "fixed effect, inverse variance"

    def as_interval(self, level: float | None = None) -> Interval:
        """The pooled delta as an :class:`Interval` (``df = inf``: normal) for ``classify``."""
        iv = Interval(self.mean, math.nan, math.nan, self.se, math.inf, self.level,
                      self.k, self.k, False, None)
        return interval_at(iv, self.level if level is None else level)


def pooled_effect(intervals: Sequence[Interval], level: float = 0.95) -> Pooled:
    """Fixed-effect pooled delta over the models (statsmodels ``combine_effects``).

    ``w_i = 1/se_i**2``, ``mean = sum w_i m_i / sum w_i``, ``se = 1/sqrt(sum w_i)``,
    interval ``mean -+ z_{(1+level)/2} se``; ``Q = sum w_i (m_i - mean)**2``,
    ``I2 = max(0, (Q - (k-1)) / Q)``. Fixed effect because the question is "does the
    trick help on these models", not on a population of models; a large I2 says the
    models disagree and the per-model verdicts matter more than the mean. Intervals
    without a finite positive se are left out; none left gives NaNs and ``k = 0``.
    """
    use = [iv for iv in intervals
           if math.isfinite(iv.mean) and math.isfinite(iv.se) and iv.se > 0]
    if not use:
        return Pooled(math.nan, math.nan, math.nan, math.nan, math.nan, math.nan, 0, level)
    m = np.array([iv.mean for iv in use])
    v = np.array([iv.se ** 2 for iv in use])
    if len(use) == 1:  # combine_effects needs two; the "pool" of one is that estimate
        half = float(st.norm.ppf(0.5 + level / 2.0)) * use[0].se
        return Pooled(m[0], m[0] - half, m[0] + half, use[0].se, 0.0, 0.0, 1, level)
    # Q = 0 gives I2 = 1 - 1/0, and statsmodels also computes a random-effects HKSJ interval
    # (unused here) whose variance can be negative: both warn without touching what we read
    with np.errstate(divide="ignore", invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = combine_effects(m, v, method_re="chi2", use_t=False, alpha=1.0 - level)
        lo, hi = res.conf_int(alpha=1.0 - level, use_t=False)[0]
    i2 = max(0.0, float(res.i2)) if res.q > 0 else 0.0  # statsmodels: 1 - (k-1)/Q, untruncated
    return Pooled(float(res.mean_effect_fe), float(lo), float(hi), float(res.sd_eff_w_fe),
                  float(res.q), i2, len(use), level)
