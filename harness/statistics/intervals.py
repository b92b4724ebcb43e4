"""Seed noise pooled over a table's cells, and row-vs-parent difference intervals.

Every interval here is Student's t: ``mean +- t_{(1+level)/2, df} * se``.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats as st
from statsmodels.regression.linear_model import OLS

__all__ = ["Noise", "Interval", "finite_values", "pooled_noise", "diff_interval",
           "interval_at"]


@dataclass(frozen=True)
class Noise:
    """Seed noise of one model: residual SD ``sd`` with ``df`` degrees of freedom, from
    ``n`` finite values in ``n_cells`` cells (``df = n - n_cells``). ``df`` may be
    ``math.inf`` for a noise level known from elsewhere (intervals then use the normal)."""

    sd: float
    df: float
    n: int
    n_cells: int


@dataclass(frozen=True)
class Interval:
    """``mean`` of ``a - b`` with the t-interval ``[lo, hi] = mean -+ t_{(1+level)/2,df} se``.

    ``n_a``/``n_b``: values used on each side (both = the common seeds when ``paired``);
    ``corr``: Pearson correlation of ``a`` and ``b`` over their common seeds (None when
    fewer than 3 common seeds or a side is constant)."""

    mean: float
    lo: float
    hi: float
    se: float
    df: float
    level: float
    n_a: int
    n_b: int
    paired: bool
    corr: float | None

    def at(self, level: float) -> "Interval":
        """The same estimate at another confidence ``level`` (see :func:`interval_at`)."""
        return interval_at(self, level)

    def p_value(self, null: float = 0.0) -> float:
        """Two-sided p of ``mean == null``: ``2 * sf(|mean - null| / se, df)`` (NaN if no se)."""
        if not (math.isfinite(self.se) and self.se > 0 and self.df > 0):
            return math.nan
        return float(2.0 * st.t.sf(abs(self.mean - null) / self.se, self.df))


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")


def _t_bounds(mean: float, se: float, df: float, level: float) -> tuple[float, float]:
    """``mean -+ t_{(1+level)/2, df} * se``; NaN when se or df cannot give an interval."""
    _check_level(level)
    if not (math.isfinite(mean) and math.isfinite(se) and df > 0):
        return math.nan, math.nan
    half = float(st.t.ppf(0.5 + level / 2.0, df)) * se
    return mean - half, mean + half


def interval_at(iv: Interval, level: float) -> Interval:
    """``iv`` with ``lo, hi`` recomputed at ``level`` (same mean, se and df); use it for the
    90% interval of two one-sided tests, or a group-sequential look's nominal level."""
    lo, hi = _t_bounds(iv.mean, iv.se, iv.df, level)
    return replace(iv, lo=lo, hi=hi, level=level)


def finite_values(values: Iterable[object]) -> list[float]:
    """The values that are real finite numbers, as floats (None, NaN, inf, bool dropped)."""
    out = []
    for v in values:
        if v is None or isinstance(v, bool):
            continue
        try:
            x = float(v)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            continue
        if math.isfinite(x):
            out.append(x)
    return out


def pooled_noise(cells: Mapping[Hashable, Sequence[float]]) -> Noise:
    """Residual SD of the one-way model ``y ~ C(cell)`` over every cell of one model.

    ``sd**2 = sum_cells sum_i (y_ci - ybar_c)**2 / (N - k)`` = statsmodels OLS ``mse_resid``
    with one indicator column per cell; ``df = N - k`` (N finite values, k non-empty
    cells). A cell with one value fits its own mean exactly and adds no df. ``df == 0``
    gives ``sd = NaN``.
    """
    groups = [vs for vs in (finite_values(v) for v in cells.values()) if vs]
    n, k = sum(len(g) for g in groups), len(groups)
    if n - k <= 0:
        return Noise(math.nan, 0, n, k)
    y = np.concatenate([np.asarray(g) for g in groups])
    x = np.repeat(np.eye(k), [len(g) for g in groups], axis=0)
    fit = OLS(y, x).fit()
    return Noise(math.sqrt(float(fit.mse_resid)), int(round(fit.df_resid)), n, k)


def _corr(a: Mapping[int, float], b: Mapping[int, float]) -> tuple[list, float | None]:
    """Common seeds with finite values on both sides, and Pearson r over them (>= 3)."""
    common = sorted(s for s in set(a) & set(b) if len(finite_values([a[s], b[s]])) == 2)
    xa = np.array([float(a[s]) for s in common])
    xb = np.array([float(b[s]) for s in common])
    if len(common) < 3 or np.ptp(xa) == 0 or np.ptp(xb) == 0:
        return common, None
    return common, float(st.pearsonr(xa, xb).statistic)


def diff_interval(a: Mapping[int, float], b: Mapping[int, float], noise: Noise | None,
                  level: float = 0.95, pair_min_corr: float = 0.5) -> Interval:
    """Interval of ``mean(a) - mean(b)`` for a row ``a`` vs its parent ``b`` (keys = seeds).

    * Paired, when >= 3 seeds are common and their correlation ``r >= pair_min_corr``:
      ``d_s = a_s - b_s``, ``se = sd(d) / sqrt(n)``, ``df = n - 1`` (= scipy ``ttest_rel``).
      ``pair_min_corr=math.inf`` never pairs.
    * Otherwise unpaired with a pooled SD: ``se = sd * sqrt(1/n_a + 1/n_b)``; ``sd, df`` from
      ``noise`` (pooled over the model's cells), or with ``noise=None`` from ``a`` and ``b``
      alone (``df = n_a + n_b - 2``; = scipy ``ttest_ind(equal_var=True)``).

    A side with no finite value gives ``mean = NaN``; no df gives ``lo = hi = NaN``.
    """
    _check_level(level)
    common, corr = _corr(a, b)
    if corr is not None and corr >= pair_min_corr:
        d = np.array([float(a[s]) - float(b[s]) for s in common])
        n = len(d)
        se = float(np.std(d, ddof=1)) / math.sqrt(n)
        mean, df, n_a, n_b, paired = float(d.mean()), n - 1, n, n, True
    else:
        xa, xb = finite_values(a.values()), finite_values(b.values())
        n_a, n_b, paired = len(xa), len(xb), False
        mean = float(np.mean(xa) - np.mean(xb)) if n_a and n_b else math.nan
        if noise is None:
            noise = pooled_noise({"a": xa, "b": xb})
        df = noise.df
        se = noise.sd * math.sqrt(1 / n_a + 1 / n_b) if n_a and n_b else math.nan
    lo, hi = _t_bounds(mean, se, df, level)
    return Interval(mean, lo, hi, se, df, level, n_a, n_b, paired, corr)


def within_sd(*sides: Sequence[float]) -> tuple[float, int]:
    """(SD, df) of one cell measured on several sides (e.g. the baseline's seeds and
    tonight's): each side about its own mean, pooled, ``df = N - sides`` (the one-way
    model of :func:`pooled_noise` for one cell); ``(NaN, 0)`` without df."""
    nz = pooled_noise(dict(enumerate(sides)))
    return nz.sd, nz.df


def satterthwaite(parts: Sequence[tuple[float, float]]) -> tuple[float, float]:
    """(SE, df) of a sum of independent variance estimates ``parts = [(variance, df), ...]``
    (Welch 1947, Satterthwaite 1946): ``se**2 = sum v``, ``df = (sum v)**2 / sum(v**2 / df)``.
    For two groups with their own variances it is scipy ``ttest_ind(equal_var=False)``'s df."""
    parts = [(v, d) for v, d in parts if v > 0]
    if not parts or any(d <= 0 or not math.isfinite(v) for v, d in parts):
        return math.nan, 0.0
    total = sum(v for v, _ in parts)
    return math.sqrt(total), total ** 2 / sum(v * v / d for v, d in parts)
