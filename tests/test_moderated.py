"""Moderated per-cell variances (harness.statistics.moderated, Smyth 2004) against
independent references: the generating model of the prior, the one pooled variance when
cells agree, scipy's Welch test for a pair, the posterior formula by hand."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import special, stats

from harness.statistics import CellVariance, diff_interval, fit_prior, moderated, pair_noise, pooled_noise


def test_fit_prior_recovers_the_generating_prior():
    """Cell variances drawn from a scaled inverse-chi2 prior (s0^2 = 2, d0 = 10), each seen
    through 4 df: the moment estimates land near the truth."""
    rng = np.random.default_rng(0)
    g, d0, s0_sq = 6000, 10.0, 2.0
    sigma2 = s0_sq * d0 / rng.chisquare(d0, g)
    s2 = sigma2 * rng.chisquare(4, g) / 4
    prior = fit_prior(s2, np.full(g, 4.0))
    assert prior.d0 == pytest.approx(d0, rel=0.2)
    assert prior.s0_sq == pytest.approx(s0_sq, rel=0.05)


def test_agreeing_cells_give_the_pooled_noise():
    """Cells whose seed spreads agree (one deviation pattern, scaled by at most 5%): less
    spread than chi2 sampling alone makes, so d0 = inf and each cell gets the pooled variance
    and df (pooled_noise)."""
    dev = np.array([-0.4, 0.1, 0.5, -0.2, 0.0, 0.3, -0.3, 0.0])
    cells = {r: list(80 + r + dev * (1 + 0.05 * math.sin(r))) for r in range(12)}
    assert math.isinf(fit_prior([np.var(v, ddof=1) for v in cells.values()], [7] * 12).d0)
    pooled = pooled_noise(cells)
    for cv in moderated(cells).values():
        assert cv.var == pytest.approx(pooled.sd ** 2) and cv.df == pooled.df


def test_posterior_by_hand():
    """Three quiet cells and a noisy one: each moderated variance is (d0 s0^2 + d s^2) /
    (d0 + d) with the fitted prior, computed here from the formulas."""
    cells = {"a": [1.0, 1.1, 0.9, 1.05], "b": [2.0, 2.3, 1.8, 2.1], "c": [0.0, 0.05, -0.1, 0.02],
             "d": [5.0, 7.0, 3.0, 6.5]}
    s2 = {k: float(np.var(v, ddof=1)) for k, v in cells.items()}
    e = np.array([math.log(v) - special.digamma(1.5) + math.log(1.5) for v in s2.values()])
    excess = e.var(ddof=1) - special.polygamma(1, 1.5)
    assert excess > 0
    prior = fit_prior(list(s2.values()), [3] * 4)
    assert special.polygamma(1, prior.d0 / 2) == pytest.approx(excess)
    assert math.log(prior.s0_sq) == pytest.approx(e.mean() + special.digamma(prior.d0 / 2)
                                                  - math.log(prior.d0 / 2))
    out = moderated(cells)
    for k in cells:
        want = (prior.d0 * prior.s0_sq + 3 * s2[k]) / (prior.d0 + 3)
        assert out[k].var == pytest.approx(want)
        assert out[k].df == pytest.approx(min(prior.d0 + 3, 12))  # capped at the pooled df
    # shrinkage: the noisy cell is pulled down, the quiet ones up, order kept
    assert s2["c"] < out["c"].var < out["d"].var < s2["d"]


def test_pair_noise_is_welch():
    """With each cell's own variance and df, the difference interval is scipy's Welch test."""
    a, b = [84.1, 83.2, 84.9, 83.7, 84.4], [82.0, 84.5, 80.9]
    va, vb = float(np.var(a, ddof=1)), float(np.var(b, ddof=1))
    cva = CellVariance(va, len(a) - 1, len(a), va, len(a) - 1)  # no prior (d0 = 0)
    cvb = CellVariance(vb, len(b) - 1, len(b), vb, len(b) - 1)
    iv = diff_interval(dict(enumerate(a)), dict(enumerate(b)), pair_noise(cva, cvb),
                       pair_min_corr=math.inf)
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert iv.mean / iv.se == pytest.approx(ref.statistic)
    assert iv.df == pytest.approx(ref.df)
    ci = ref.confidence_interval(0.95)
    assert (iv.lo, iv.hi) == (pytest.approx(ci.low), pytest.approx(ci.high))


def test_pooled_limit_uses_the_pooled_df_not_twice_it():
    """d0 = inf: both cells carry the one pooled variance, a single estimate on the pooled
    df; the pair's interval is the pooled-SD t-interval (df 6 here), not Satterthwaite's 12."""
    dev = np.array([-0.4, 0.4])
    cells = {r: list(80 + r + dev) for r in range(7)}
    mod = moderated(cells)
    pooled = pooled_noise(cells)
    nz = pair_noise(mod[0], mod[1])
    assert nz.df == pooled.df == 7 and nz.sd == pytest.approx(pooled.sd)
    iv = diff_interval(dict(enumerate(cells[1])), dict(enumerate(cells[0])), nz, pair_min_corr=math.inf)
    ref = stats.ttest_ind(cells[1], cells[0], equal_var=True)  # pooled over these two only: df 2
    half = stats.t.ppf(0.975, 7) * pooled.sd * math.sqrt(1 / 2 + 1 / 2)
    assert (iv.lo, iv.hi) == (pytest.approx(1 - half), pytest.approx(1 + half))
    assert ref.df == 2  # the two-cell test would have had 2 df; pooling over 7 cells gives 7


def test_a_moderated_pair_df_lies_between_welch_and_the_pooled_df():
    """A finite prior: the pair's df is more than the cells' own (Welch) and at most the
    pooled df."""
    cells = {"a": [1.0, 1.1, 0.9, 1.05], "b": [2.0, 2.3, 1.8, 2.1], "c": [0.0, 0.05, -0.1, 0.02],
             "d": [5.0, 7.0, 3.0, 6.5]}
    mod = moderated(cells)
    nz = pair_noise(mod["a"], mod["d"])
    welch = stats.ttest_ind(cells["a"], cells["d"], equal_var=False).df
    assert welch < nz.df <= pooled_noise(cells).df
