"""Seed statistics for the reports: t-intervals over seeds, paired deltas, verdicts.

Every interval is Student's t at ``level`` (95% by default) over the seeds that finished:
``mean +- t_{(1+level)/2, n-1} * s / sqrt(n)`` with ``s`` the sample standard deviation
(ddof=1). One seed has no interval (``half_width`` is NaN).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from scipy import stats as _st

__all__ = ["VERDICTS", "mean_ci", "paired_delta", "verdict", "finite"]

VERDICTS = ("reproduced", "within noise", "contradicted", "not run")


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


def paired_delta(a: Mapping[int, Any], b: Mapping[int, Any],
                 level: float = 0.95) -> tuple[float, float, int]:
    """Mean and t-interval of ``a[seed] - b[seed]`` over the seeds both have a number for.

    ``a`` is the row with the trick, ``b`` its parent row; pairing by seed removes the
    seed-to-seed variation both rows share (same initialisation and data order).
    """
    common = sorted(s for s in set(a) & set(b) if finite(a[s]) and finite(b[s]))
    return mean_ci([float(a[s]) - float(b[s]) for s in common], level)


def verdict(ours_mean: float | None, half_width: float | None, n: int | None,
            paper_delta: float | None) -> str:
    """Compare our delta (mean, CI half-width, n paired seeds) with the paper's delta.

    * ``not run``: our delta or the paper's is missing (n == 0, None or NaN);
    * ``within noise``: fewer than 2 paired seeds, or the interval contains 0;
    * ``reproduced``: the interval excludes 0 and has the paper's sign;
    * ``contradicted``: the interval excludes 0 with the opposite sign (or the paper's
      delta is exactly 0 while ours clearly is not).
    """
    if not n or not finite(ours_mean) or not finite(paper_delta):
        return "not run"
    if n < 2 or not finite(half_width):
        return "within noise"
    lo, hi = float(ours_mean) - float(half_width), float(ours_mean) + float(half_width)
    if lo <= 0.0 <= hi:
        return "within noise"
    ours_sign = 1 if lo > 0 else -1
    paper_sign = (paper_delta > 0) - (paper_delta < 0)
    return "reproduced" if ours_sign == paper_sign else "contradicted"
