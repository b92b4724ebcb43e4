"""Minimum detectable effect and seeds needed for a row-vs-parent comparison."""
from __future__ import annotations

import math

from scipy import optimize, stats

__all__ = ["mde", "seeds_needed"]

NORMAL_DF = 1e5  # beyond this many degrees of freedom the t is the normal (to ~1e-5)


def mde(se_unit: float, df: float, alpha: float = 0.05, power: float = 0.8) -> float:
    """Smallest true difference a two-sided t test at ``alpha`` detects with ``power``.

    Solves ``P(|T'| > t_{1-alpha/2, df}) = power`` for ``delta``, with ``T'`` noncentral t
    on ``df`` degrees of freedom and noncentrality ``delta / se_unit`` (scipy's ``nct``; the
    same power as statsmodels' ``ttest_power`` with ``nobs=1``, which returns NaN far in the
    tail, e.g. df 3 at alpha 1e-5); ``se_unit`` is the standard error of the difference,
    e.g. ``sd * sqrt(2/n)``. For large df it tends to ``(z_{1-alpha/2} + z_power) * se``.
    """
    if not (se_unit > 0 and df > 0 and 0 < alpha < 1 and alpha < power < 1):
        raise ValueError(f"need se_unit > 0, df > 0, 0 < alpha < power < 1; got "
                         f"{se_unit!r}, {df!r}, {alpha!r}, {power!r}")

    dist = stats.norm if df > NORMAL_DF else stats.t(df)  # scipy's nct fails at huge df
    crit = float(dist.ppf(1 - alpha / 2))

    def gap(ncp: float) -> float:
        if df > NORMAL_DF:
            return float(stats.norm.sf(crit - ncp) + stats.norm.cdf(-crit - ncp)) - power
        # the far tail below -crit is < 1e-8 for ncp > 0 and scipy's nct.cdf gives NaN for
        # some of it (df 3, alpha 1e-5, ncp 8): count it as the 0 it is
        lower = float(stats.nct.cdf(-crit, df, ncp))
        return float(stats.nct.sf(crit, df, ncp)) + (lower if math.isfinite(lower) else 0.0) - power

    hi = 2.0
    while gap(hi) < 0:
        hi *= 2.0
    return optimize.brentq(gap, 0.0, hi, xtol=1e-10) * se_unit


def seeds_needed(effect: float, sd: float, cells_in_noise: int = 2, alpha: float = 0.05,
                 power: float = 0.8, max_seeds: int = 64) -> int | None:
    """Fewest seeds per cell ``n >= 2`` with ``mde(sd*sqrt(2/n), cells_in_noise*(n-1)) <=
    |effect|``: the row and its parent each run ``n`` seeds, and the noise is pooled over
    ``cells_in_noise`` cells of that model (2 = the two groups alone, as
    ``TTestIndPower``; a whole table's column gives more df). None if more than
    ``max_seeds`` would be needed.
    """
    if not (sd > 0 and cells_in_noise >= 2):
        raise ValueError(f"need sd > 0 and cells_in_noise >= 2; got {sd!r}, {cells_in_noise!r}")
    for n in range(2, max_seeds + 1):
        if mde(sd * math.sqrt(2.0 / n), cells_in_noise * (n - 1), alpha, power) <= abs(effect):
            return n
    return None
