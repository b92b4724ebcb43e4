"""Group-sequential looks: Lan-DeMets alpha-spending boundaries for "add seeds until
decisive" (looks at n = 3, 4, ..., max seeds per cell)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy import optimize
from scipy import stats as st

__all__ = ["SPENDING_KINDS", "alpha_spent", "spending_bounds", "nominal_level",
           "look_fractions"]

SPENDING_KINDS = ("obf", "pocock")
_MVN_ABSEPS = 1e-6  # absolute error of each exit probability (its shift of c_k: ~1e-5)
_MVN_SEED = 20190  # the QMC rule is randomised; a fixed seed makes bounds repeatable


def alpha_spent(t: float, alpha: float = 0.05, kind: str = "obf") -> float:
    """Two-sided alpha spent by information fraction ``t`` in [0, 1], half on each side.

    ``obf`` (Lan-DeMets O'Brien-Fleming type, per side ``a = alpha/2``):
    ``2 * (2 - 2 Phi(z_{1-a/2} / sqrt(t))) = 4 - 4 Phi(z_{1-alpha/4} / sqrt(t))``, the
    symmetric two-sided convention of ldbounds/gsDesign (bounds 4.877, 3.357, 2.680,
    2.290, 2.031 for five equal looks at alpha 0.05). ``pocock`` (Pocock type):
    ``alpha * ln(1 + (e - 1) t)``. Both give ``alpha`` at t = 1.
    """
    if kind not in SPENDING_KINDS:
        raise ValueError(f"unknown spending kind {kind!r}; valid: {', '.join(SPENDING_KINDS)}")
    if t <= 0:
        return 0.0
    if kind == "obf":
        return float(4.0 * st.norm.sf(st.norm.isf(alpha / 4.0) / math.sqrt(t)))
    return float(alpha * math.log(1.0 + (math.e - 1.0) * t))


def look_fractions(seeds: Sequence[int]) -> list[float]:
    """Information fractions of looks after ``seeds[k]`` seeds per cell: ``n_k / n_max``
    (the information of a difference of means grows in proportion to n)."""
    return [n / max(seeds) for n in seeds]


def _exit_at_last(bounds: np.ndarray, cov: np.ndarray) -> float:
    """``P(|Z_i| < b_i for i < k, |Z_k| >= b_k)`` for a zero-mean normal with covariance
    ``cov``: twice the upper tail ``Z_k >= b_k`` (the region is symmetric). Asking for this
    small probability directly is far cheaper than differencing two large ones."""
    if len(bounds) == 1:
        return float(2.0 * st.norm.sf(bounds[0]))
    upper = np.append(bounds[:-1], np.inf)
    lower = np.append(-bounds[:-1], bounds[-1])
    return float(2.0 * st.multivariate_normal.cdf(upper, cov=cov, lower_limit=lower,
                                                  abseps=_MVN_ABSEPS, releps=0.0,
                                                  rng=np.random.default_rng(_MVN_SEED)))


def spending_bounds(fractions: Sequence[float], alpha: float = 0.05,
                    kind: str = "obf") -> list[float]:
    """Two-sided boundaries ``c_k`` on the z scale: stop at look k if ``|Z_k| >= c_k``.

    Solved look by look so that under H0 look k spends its share of alpha,
    ``P(|Z_i| < c_i for i < k, |Z_k| >= c_k) = alpha(t_k) - alpha(t_{k-1})``,
    where ``(Z_1..Z_K)`` is the canonical joint normal, ``corr(Z_i, Z_j) =
    sqrt(t_i / t_j)`` (i <= j), probabilities from scipy's multivariate normal CDF and
    ``c_k`` by Brent's method (so ``c_1 = z_{1 - alpha(t_1)/2}``). ``fractions`` must
    increase within (0, 1]; the last need not be 1 (bounds of looks so far do not depend
    on later looks), but only ``t_K = 1`` spends all of ``alpha``.
    """
    t = np.asarray(fractions, dtype=float)
    if t.ndim != 1 or len(t) == 0 or t[0] <= 0 or t[-1] > 1 or np.any(np.diff(t) <= 0):
        raise ValueError(f"fractions must increase within (0, 1]; got {list(fractions)}")
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")
    spent = [0.0] + [alpha_spent(float(x), alpha, kind) for x in t]
    cov = np.sqrt(np.minimum.outer(t, t) / np.maximum.outer(t, t))
    bounds: list[float] = []
    for k in range(len(t)):
        share = spent[k + 1] - spent[k]

        def gap(c: float) -> float:
            return _exit_at_last(np.array(bounds + [c]), cov[: k + 1, : k + 1]) - share

        # |Z_k| alone at level alpha(t_k) is too low a bound; at level `share` too high
        lo = float(st.norm.isf(spent[k + 1] / 2.0)) - 0.05
        hi = float(st.norm.isf(share / 2.0)) + 0.05
        bounds.append(float(optimize.brentq(gap, lo, hi, xtol=1e-6)))
    return bounds


def nominal_level(bound: float) -> float:
    """Two-sided nominal significance of a z boundary: ``2 (1 - Phi(bound))``. At look k,
    a t-based interval at confidence ``1 - nominal_level(c_k)`` excluding 0 crosses."""
    return float(2.0 * st.norm.sf(bound))
