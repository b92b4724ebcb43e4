"""Seed statistics for the reports' cells: t-intervals over seeds (the verdicts and their
intervals are :mod:`harness.report.verdicts`', from :mod:`harness.statistics`).

Every interval is Student's t at ``level`` (95% by default) over the seeds that finished:
``mean +- t_{(1+level)/2, n-1} * s / sqrt(n)`` with ``s`` the sample standard deviation
(ddof=1). One seed has no interval (``half_width`` is NaN).
"""
from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from scipy import stats as _st

__all__ = ["mean_ci", "finite"]


def finite(x: Any) -> bool:
    """True for a real, finite number (None, NaN, inf and non-numbers are False)."""
    if x is None or isinstance(x, bool):
        return False
    try:
        return math.isfinite(float(x))
    except (TypeError, ValueError):
        return False


def mean_ci(values: Iterable[Any], level: float = 0.95) -> tuple[float, float, int]:
    """``(mean, half_width, n)`` of the t-interval over the finite ``values``.

    None/NaN values are ignored (a trial without a number). ``n == 0`` gives
    ``(nan, nan, 0)``; ``n == 1`` gives ``(value, nan, 1)`` (no interval from one seed).
    """
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    xs = [float(v) for v in values if finite(v)]
    n = len(xs)
    if n == 0:
        return math.nan, math.nan, 0
    mean = math.fsum(xs) / n
    if n < 2:
        return mean, math.nan, 1
    sd = math.sqrt(math.fsum((x - mean) ** 2 for x in xs) / (n - 1))
    q = float(_st.t.ppf(0.5 + level / 2.0, df=n - 1))
    return mean, q * sd / math.sqrt(n), n
