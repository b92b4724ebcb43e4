"""Per-cell seed variances shrunk toward the model's: Smyth's (2004) moderated variances.

The seed noise of one model is not one number: at ``local`` the cells of a Table 6 model
differ up to threefold in seed SD (8 seeds a cell: Inception-V3 0.33-0.93 points, MobileNet
0.57-1.34; the distillation rows are the quiet ones). One SD pooled over the model's cells
then under-covers the noisy comparisons (real-bank calibration, bench/RESULTS.md). Each
cell's own SD from 3-8 seeds is too noisy to use alone, so each is shrunk toward a prior
fitted to all of the model's cells, as limma's ``squeezeVar`` does:

* ``fit_prior``: ``s_g^2 ~ s0^2 chi2_{d_g} / d_g`` under a scaled inverse-chi2 prior with
  ``d0`` df; moment estimates of ``(s0^2, d0)`` from ``e_g = log s_g^2 - digamma(d_g/2) +
  log(d_g/2)``: ``mean(e) = log s0^2 - digamma(d0/2) + log(d0/2)``, ``var(e) - mean(trigamma
  (d_g/2)) = trigamma(d0/2)`` (Smyth 2004, Sec 6.2). No excess spread: ``d0 = inf``, the
  one pooled variance.
* ``moderated``: the posterior ``s~_g^2 = (d0 s0^2 + d_g s_g^2) / (d0 + d_g)`` with ``d0 +
  d_g`` df (at most the model's pooled residual df).
* ``pair_noise``: a row vs its parent as one :class:`Noise` (SD of ``s~_a^2/n_a + s~_b^2/n_b``,
  Welch-Satterthwaite df over its independent parts: the shared prior and each cell's own
  variance), the form :func:`diff_interval` takes.
"""
from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import optimize, special

from .intervals import Noise, finite_values, pooled_noise, satterthwaite

__all__ = ["Prior", "CellVariance", "fit_prior", "moderated", "pair_noise"]


@dataclass(frozen=True)
class Prior:
    """The scaled inverse-chi2 prior of a model's cell variances: ``s0**2`` with ``d0`` df."""

    s0_sq: float
    d0: float


@dataclass(frozen=True)
class CellVariance:
    """A cell's moderated variance ``var`` with ``df`` degrees of freedom, from ``n`` seeds,
    and its parts: the cell's own ``own_var`` on ``own_df`` and the prior's ``s0_sq`` on
    ``d0`` (``var = (d0 s0_sq + own_df own_var) / (d0 + own_df)``; ``d0 = inf``: the pooled
    variance); ``cap``: the model's pooled residual df, which no interval's df exceeds."""

    var: float
    df: float
    n: int
    own_var: float = 0.0
    own_df: float = 0.0
    s0_sq: float = 0.0
    d0: float = 0.0
    cap: float = math.inf


def _trigamma_inverse(y: float) -> float:
    """x with trigamma(x) = y (trigamma is decreasing on (0, inf))."""
    f = lambda x: float(special.polygamma(1, x)) - y  # noqa: E731
    hi = 1.0
    while f(hi) > 0:
        hi *= 2
    lo = hi / 2
    while f(lo) < 0:
        lo /= 2
    return optimize.brentq(f, lo, hi, xtol=1e-12)


def fit_prior(variances: Sequence[float], dfs: Sequence[float]) -> Prior:
    """Moment estimates of ``(s0^2, d0)`` from cell variances and their df (Smyth 2004)."""
    pairs = [(v, d) for v, d in zip(variances, dfs) if d > 0 and v > 0 and math.isfinite(v)]
    if not pairs:
        return Prior(math.nan, 0.0)
    v = np.array([p[0] for p in pairs])
    d = np.array([p[1] for p in pairs])
    e = np.log(v) - special.digamma(d / 2) + np.log(d / 2)
    if len(pairs) < 2:
        return Prior(float(np.exp(e.mean())), math.inf)
    excess = float(e.var(ddof=1) - np.mean(special.polygamma(1, d / 2)))
    if excess <= 0:
        return Prior(float(np.exp(e.mean())), math.inf)
    d0 = 2 * _trigamma_inverse(excess)
    return Prior(float(np.exp(e.mean() + special.digamma(d0 / 2) - math.log(d0 / 2))), d0)


def moderated(cells: Mapping[Hashable, Sequence[float]]) -> dict[Hashable, CellVariance]:
    """Each cell's moderated variance over one model's cells (cell -> values)."""
    vals = {k: finite_values(v) for k, v in cells.items()}
    own = {k: (float(np.var(v, ddof=1)), len(v) - 1) for k, v in vals.items() if len(v) >= 2}
    pooled = pooled_noise(vals)
    if not own or pooled.df <= 0:
        return {k: CellVariance(math.nan, 0.0, len(v)) for k, v in vals.items()}
    prior = fit_prior([v for v, _ in own.values()], [d for _, d in own.values()])
    out = {}
    for k, v in vals.items():
        s2, d = own.get(k, (0.0, 0))
        if math.isinf(prior.d0):
            var, df = pooled.sd ** 2, pooled.df
        else:
            var, df = (prior.d0 * prior.s0_sq + d * s2) / (prior.d0 + d), prior.d0 + d
        out[k] = CellVariance(var, min(df, pooled.df), len(v), s2, d, prior.s0_sq, prior.d0, pooled.df)
    return out


def pair_noise(a: CellVariance, b: CellVariance) -> Noise:
    """The noise of ``mean(a) - mean(b)`` as one SD: ``sd^2 (1/n_a + 1/n_b) = s~_a^2/n_a +
    s~_b^2/n_b``. Its df by Welch-Satterthwaite over the independent parts of that sum: the
    prior's share (one estimate on ``d0`` df, common to both cells) and each cell's own
    variance (on its own df); at most the model's pooled df. ``d0 = 0`` is Welch's test;
    ``d0 = inf`` the pooled variance on the pooled df."""
    if not (a.n and b.n and a.df > 0 and b.df > 0):
        return Noise(math.nan, 0, a.n + b.n, 2)
    total = a.var / a.n + b.var / b.n
    cap = min(a.cap, b.cap)
    if math.isinf(a.d0) or math.isinf(b.d0):
        df = cap
    else:
        parts = [(x.own_df * x.own_var / ((x.d0 + x.own_df) * x.n), x.own_df) for x in (a, b)]
        prior = sum(x.d0 * x.s0_sq / ((x.d0 + x.own_df) * x.n) for x in (a, b))
        _, welch = satterthwaite(parts + [(prior, a.d0)])
        df = min(welch, cap) if welch > 0 else cap
    return Noise(math.sqrt(total / (1 / a.n + 1 / b.n)), df, a.n + b.n, 2)
