"""harness.statistics against hand-worked numbers and independent references (scipy,
statsmodels, published group-sequential boundaries, Monte Carlo with fixed seeds)."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as st
from statsmodels.stats.power import TTestIndPower
from statsmodels.stats.weightstats import ttost_ind

from harness.statistics import (VERDICT_NAMES, Interval, Noise, alpha_spent, classify,
                                diff_interval, family_wise, look_fractions, mde,
                                nominal_level, one_sided_drop, pooled_effect, pooled_noise,
                                regressions, seeds_needed, speed_change, spending_bounds)

T_975_DF5 = 2.570582  # Student t table, 0.975 quantile, 5 df
T_95_DF20 = 1.724718  # Student t table, 0.95 quantile, 20 df


def _iv(mean: float, se: float, df: float = 1e6, level: float = 0.95) -> Interval:
    """A hand-made interval ``mean -+ t se`` (df 1e6: practically the normal)."""
    half = float(st.t.ppf(0.5 + level / 2, df)) * se
    return Interval(mean, mean - half, mean + half, se, df, level, 8, 8, False, None)


# ---- pooled noise and difference intervals ---------------------------------------------
def test_pooled_noise_three_cells_by_hand():
    """SS within cells: A=[1,2,3] -> 2, B=[4,6] -> 2, C=[7,7,10] -> 6; the one-value cell D
    adds no df and the NaN/inf/None are dropped: N=9, k=4, df=5, sd^2 = 10/5 = 2."""
    noise = pooled_noise({"A": [1, 2, 3], "B": [4, float("nan"), 6], "C": [7, 7, 10],
                          "D": [5, float("inf")], "E": [None]})
    assert noise.df == 5 and noise.n == 9 and noise.n_cells == 4
    assert noise.sd == pytest.approx(math.sqrt(2.0), rel=1e-12)


def test_pooled_noise_without_df_is_nan():
    """Cells of one value each fit their means exactly: no df, no SD (not a zero SD)."""
    noise = pooled_noise({"A": [1.0], "B": [2.0]})
    assert noise.df == 0 and math.isnan(noise.sd)


def test_two_group_interval_by_hand_equals_ttest_ind():
    """a = 76,77,78 (mean 77, SS 2), b = 77,76,75,76 (mean 76, SS 2): s^2 = 4/5,
    se = sqrt(0.8 (1/3 + 1/4)) = 0.683130, df 5, half = 2.570582 se = 1.756045;
    the common seeds are perfectly anti-correlated (r = -1), so it stays unpaired;
    the interval equals scipy ttest_ind(equal_var=True).confidence_interval."""
    a = {0: 76.0, 1: 77.0, 2: 78.0}
    b = {0: 77.0, 1: 76.0, 2: 75.0, 3: 76.0}
    iv = diff_interval(a, b, None)
    se = math.sqrt(0.8 * (1 / 3 + 1 / 4))
    assert not iv.paired and iv.corr == pytest.approx(-1.0)
    assert (iv.n_a, iv.n_b, iv.df) == (3, 4, 5)
    assert iv.mean == pytest.approx(1.0) and iv.se == pytest.approx(se, rel=1e-12)
    assert iv.lo == pytest.approx(1 - T_975_DF5 * se, abs=1e-5)
    assert iv.hi == pytest.approx(1 + T_975_DF5 * se, abs=1e-5)
    ci = st.ttest_ind(list(a.values()), list(b.values()), equal_var=True).confidence_interval(0.95)
    assert (iv.lo, iv.hi) == pytest.approx((ci.low, ci.high), rel=1e-12)
    assert iv.p_value() == pytest.approx(
        st.ttest_ind(list(a.values()), list(b.values())).pvalue, rel=1e-10)


def test_interval_with_table_noise_uses_its_df():
    """With the model's pooled noise (sd sqrt 2, df 5 from the 3-cell example) the
    interval is mean -+ t_{.975,5} sqrt(2) sqrt(1/3 + 1/4), whatever the two groups' own
    spread; at 90% it shrinks to the t_{.95,5} quantile."""
    noise = Noise(math.sqrt(2.0), 5, 9, 4)
    iv = diff_interval({0: 1.0, 1: 1.0, 2: 1.0}, {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0}, noise)
    se = math.sqrt(2.0) * math.sqrt(1 / 3 + 1 / 4)
    assert iv.df == 5 and iv.corr is None  # constant sides: no correlation
    assert iv.hi - iv.mean == pytest.approx(T_975_DF5 * se, abs=1e-5)
    iv90 = iv.at(0.90)
    assert iv90.level == 0.90 and iv90.hi - iv90.mean == pytest.approx(2.015048 * se, abs=1e-5)


def test_paired_when_seeds_correlate_unpaired_when_not():
    """A shared per-seed offset makes a and b correlate (r ~ 1): paired t over the
    per-seed differences (= scipy ttest_rel, df n-1). Shuffling b's seeds breaks the
    correlation: unpaired with the given noise, corr still reported. Two common seeds:
    never paired, no corr."""
    shared = np.array([0.0, 1.0, -1.0, 2.0, -2.0, 0.5])
    jitter = np.array([0.05, -0.03, 0.02, -0.04, 0.01, 0.0])
    a = {s: 80.5 + shared[s] + jitter[s] for s in range(6)}
    b = {s: 80.0 + shared[s] - jitter[::-1][s] for s in range(6)}
    iv = diff_interval(a, b, Noise(1.0, 50, 100, 10))
    assert iv.paired and iv.corr > 0.99 and iv.df == 5 and iv.n_a == iv.n_b == 6
    ci = st.ttest_rel(list(a.values()), list(b.values())).confidence_interval(0.95)
    assert (iv.lo, iv.hi) == pytest.approx((ci.low, ci.high), rel=1e-12)

    b_shuffled = {s: b[(s + 1) % 6] for s in range(6)}  # shared offsets: r ~ -0.79
    iv = diff_interval(a, b_shuffled, Noise(1.0, 50, 100, 10))
    assert not iv.paired and iv.corr is not None and iv.corr < 0.5 and iv.df == 50
    assert iv.se == pytest.approx(math.sqrt(2 / 6))

    iv = diff_interval({0: 1.0, 1: 2.0}, {0: 1.0, 1: 2.0, 2: 3.0}, Noise(1.0, 50, 100, 10))
    assert not iv.paired and iv.corr is None
    assert not diff_interval(a, b, Noise(1.0, 50, 100, 10), pair_min_corr=math.inf).paired


def test_missing_side_gives_nan_and_not_run():
    """A row with no finite value has no mean; classify calls it ``not run``."""
    iv = diff_interval({0: float("nan")}, {0: 1.0, 1: 2.0}, Noise(1.0, 10, 12, 2))
    assert math.isnan(iv.mean) and iv.n_a == 0
    assert classify(iv, None, 0.5, 0.2).name == "not run"


# ---- verdicts ----------------------------------------------------------------------------
def test_tost_matches_statsmodels_ttost_ind():
    """The 90% interval inside +-m is the two one-sided tests at 5%: at the margin
    m* = max(-lo90, hi90) statsmodels ttost_ind (pooled) gives p = 0.05 exactly, just
    above it p < 0.05 and classify says ``no effect``, just below p > 0.05 and
    ``undecided``."""
    x1 = [77.1, 77.3, 76.9, 77.2, 77.0]
    x2 = [77.0, 77.2, 77.1, 76.8, 77.1]
    iv95 = diff_interval(dict(enumerate(x1)), dict(enumerate(x2)), None,
                         pair_min_corr=math.inf)
    iv90 = iv95.at(0.90)
    m_star = max(-iv90.lo, iv90.hi)
    assert ttost_ind(x1, x2, -m_star, m_star, usevar="pooled")[0] == pytest.approx(0.05, abs=1e-9)
    assert ttost_ind(x1, x2, -1.01 * m_star, 1.01 * m_star)[0] < 0.05
    assert classify(iv95, iv90, 0.5, 1.01 * m_star).name == "no effect"
    assert ttost_ind(x1, x2, -0.99 * m_star, 0.99 * m_star)[0] > 0.05
    assert classify(iv95, iv90, 0.5, 0.99 * m_star).name == "undecided"
    assert classify(iv95, None, 0.5, 1.01 * m_star).name == "no effect"  # 90% derived


@pytest.mark.parametrize("mean, se, paper, margin, name, vs", [
    (0.5, 0.1, 0.6, 0.2, "reproduced", None),                            # paper inside 95%
    (0.3, 0.05, 0.8, 0.2, "reproduced", "smaller than the paper's"),
    (-1.0, 0.1, -0.3, 0.2, "reproduced", "larger than the paper's"),     # along paper's sign
    (-0.5, 0.1, 0.4, 0.2, "contradicted", "smaller than the paper's"),
    (0.02, 0.05, 0.5, 0.2, "no effect", "smaller than the paper's"),     # 90%: [-0.06, 0.10]
    (0.1, 0.2, 0.3, 0.2, "undecided", None),
    (0.1, 0.2, 0.3, None, "undecided", None),                            # no margin: no TOST
    (0.5, 0.1, None, 0.2, "differs", None),                              # no paper number
    (0.02, 0.05, float("nan"), 0.2, "no effect", None),
])
def test_classify_outcomes(mean, se, paper, margin, name, vs):
    """Each verdict from a hand-made interval (95% = mean -+ 1.96 se): the sign test on
    the 95% interval first, then TOST on the 90% one; vs_paper when the 95% interval
    excludes the paper's delta, measured along the paper's sign."""
    v = classify(_iv(mean, se), None, paper, margin)
    assert (v.name, v.vs_paper) == (name, vs)
    assert v.name in VERDICT_NAMES
    assert ("no paper number" in v.note) == (paper is None or not math.isfinite(paper))


def test_classify_without_df_is_undecided():
    """An interval with no df (one seed each, no pooled noise) decides nothing."""
    iv = diff_interval({0: 1.0}, {0: 0.0}, None)
    assert math.isnan(iv.lo) and classify(iv, None, 0.5, 0.2).name == "undecided"


# ---- power -------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [3, 5, 8, 20])
def test_mde_matches_statsmodels_power(n):
    """Two groups of n, sd 0.3: TTestIndPower solves Cohen's d at 80% power (df 2n-2);
    d * sd (points) equals mde(sd sqrt(2/n), 2n-2) to 1e-4 relative."""
    sd = 0.3
    d = TTestIndPower().solve_power(nobs1=n, alpha=0.05, power=0.8, ratio=1.0)
    assert mde(sd * math.sqrt(2 / n), 2 * n - 2) == pytest.approx(d * sd, rel=1e-4)


def test_mde_normal_limit():
    """With (practically) infinite df the MDE is (z_.975 + z_.80) se = 2.801585 se."""
    assert mde(0.1, 1e7) == pytest.approx(0.2801585, rel=1e-4)


def test_seeds_needed_matches_statsmodels_and_caps():
    """Seeds for 0.3 points at sd 0.3 (d = 1) with the two groups' own noise: the
    ceiling of TTestIndPower's nobs1 (17.7 -> 18); a table's pooled noise (18 cells)
    needs fewer; an effect too small for max_seeds gives None."""
    n = TTestIndPower().solve_power(effect_size=1.0, alpha=0.05, power=0.8)
    assert seeds_needed(0.3, 0.3) == math.ceil(n)
    assert seeds_needed(0.3, 0.3, cells_in_noise=18) < math.ceil(n)
    assert seeds_needed(0.01, 0.3, max_seeds=64) is None


# ---- pooling over models -----------------------------------------------------------------
def test_pooled_effect_by_hand():
    """Means 1, 2, 0.5 with se^2 0.1, 0.2, 0.3: w = 10, 5, 10/3, sum 55/3; mean =
    (10 + 10 + 5/3) / (55/3) = 13/11; se = sqrt(3/55); Q = 10 (2/11)^2 + 5 (9/11)^2 +
    (10/3)(15/22)^2 = 5.227273; I2 = (Q - 2)/Q = 0.617391; 95% = mean -+ 1.959964 se."""
    ivs = [_iv(1.0, math.sqrt(0.1)), _iv(2.0, math.sqrt(0.2)), _iv(0.5, math.sqrt(0.3))]
    p = pooled_effect(ivs)
    assert p.mean == pytest.approx(13 / 11, rel=1e-12)
    assert p.se == pytest.approx(math.sqrt(3 / 55), rel=1e-12)
    assert p.q == pytest.approx(5.227273, abs=1e-6)
    assert p.i2 == pytest.approx(0.617391, abs=1e-6)
    assert p.hi - p.mean == pytest.approx(1.959964 * math.sqrt(3 / 55), abs=1e-6)
    assert p.k == 3 and classify(p.as_interval(), None, 0.5, 0.2).name == "reproduced"


def test_pooled_effect_homogeneous_single_and_empty():
    """Equal means: Q = 0 and I2 = 0 (not statsmodels' -inf); one model: its own
    estimate; only NaN intervals: k = 0 and NaN."""
    p = pooled_effect([_iv(1.0, 0.1), _iv(1.0, 0.2)])
    assert p.q == pytest.approx(0.0) and p.i2 == 0.0
    one = pooled_effect([_iv(0.4, 0.1), _iv(float("nan"), 0.1)])
    assert one.k == 1 and one.mean == 0.4 and one.se == 0.1
    assert pooled_effect([_iv(float("nan"), 0.1)]).k == 0


# ---- group-sequential looks --------------------------------------------------------------
def test_obf_spending_bounds_match_published():
    """Lan-DeMets O'Brien-Fleming type, K = 5 equal looks, two-sided 0.05 (gsDesign
    sfLDOF / ldbounds): 4.877, 3.357, 2.680, 2.290, 2.031, to 0.002."""
    got = spending_bounds([0.2, 0.4, 0.6, 0.8, 1.0], 0.05, "obf")
    assert got == pytest.approx([4.877, 3.357, 2.680, 2.290, 2.031], abs=0.002)


def test_pocock_spending_bounds_list():
    """Lan-DeMets Pocock type, K = 5 equal looks, two-sided 0.05: 2.438, 2.427, 2.410,
    2.397, 2.386, to 0.002 (a list we could not trace to a citable table; the Monte
    Carlo test below checks the same bounds independently)."""
    got = spending_bounds([0.2, 0.4, 0.6, 0.8, 1.0], 0.05, "pocock")
    assert got == pytest.approx([2.438, 2.427, 2.410, 2.397, 2.386], abs=0.002)


@pytest.mark.parametrize("kind, fractions", [
    ("pocock", [0.2, 0.4, 0.6, 0.8, 1.0]),
    ("obf", [0.2, 0.4, 0.6, 0.8, 1.0]),
    ("obf", look_fractions(range(3, 9))),
])
def test_spending_bounds_spend_alpha_by_monte_carlo(kind, fractions):
    """Brownian motion under H0 (S_k with independent N(0, t_k - t_{k-1}) increments,
    Z_k = S_k / sqrt(t_k); 400,000 paths, seed 7): the share of paths that have crossed
    by look k is alpha(t_k) to 0.0015 (~4 Monte Carlo SE at 0.05), 0.05 in all."""
    t = np.asarray(fractions)
    bounds = np.asarray(spending_bounds(t, 0.05, kind))
    rng = np.random.default_rng(7)
    s = np.cumsum(rng.standard_normal((400_000, len(t))) * np.sqrt(np.diff(t, prepend=0)), 1)
    crossed = np.logical_or.accumulate(np.abs(s / np.sqrt(t)) >= bounds, axis=1).mean(0)
    assert crossed == pytest.approx([alpha_spent(x, 0.05, kind) for x in t], abs=0.0015)
    assert crossed[-1] == pytest.approx(0.05, abs=0.0015)


def test_t_based_looks_at_nominal_levels_keep_alpha_near_nominal():
    """The intended use: two groups, looks after 3..8 seeds each, pooled-SD t test
    (df 2n-2) at the nominal level of each OBF-type z bound. The z bounds assume known
    variance, so with df 4..14 the overall type I error is a little above 0.05 (measured
    0.055): between 0.045 and 0.062 over 100,000 null trials (seed 3)."""
    seeds = list(range(3, 9))
    levels = [nominal_level(c) for c in spending_bounds(look_fractions(seeds))]
    rng = np.random.default_rng(3)
    a, b = rng.standard_normal((2, 100_000, 8))
    crossed = np.zeros(100_000, dtype=bool)
    for n, lev in zip(seeds, levels):
        s2 = (a[:, :n].var(1, ddof=1) + b[:, :n].var(1, ddof=1)) / 2
        t = (a[:, :n].mean(1) - b[:, :n].mean(1)) / np.sqrt(s2 * 2 / n)
        crossed |= np.abs(t) >= st.t.isf(lev / 2, 2 * n - 2)
    assert 0.045 < crossed.mean() < 0.062


def test_nominal_level_and_single_look():
    """One look at t = 1 is the ordinary test: bound 1.959964, nominal level 0.05."""
    (c,) = spending_bounds([1.0])
    assert c == pytest.approx(1.959964, abs=1e-5)
    assert nominal_level(c) == pytest.approx(0.05, abs=1e-6)


def test_spending_bounds_reject_bad_fractions():
    """Fractions must increase within (0, 1]; unknown kinds are refused."""
    for bad in ([0.5, 0.5, 1.0], [0.0, 1.0], [0.5, 1.2], []):
        with pytest.raises(ValueError):
            spending_bounds(bad)
    with pytest.raises(ValueError):
        spending_bounds([0.5, 1.0], kind="haybittle")


# ---- nightly gate ------------------------------------------------------------------------
def test_holm_by_hand():
    """p = .01, .06, .02, .005 at 0.05: sorted .005 <= .05/4, .01 <= .05/3, .02 <= .05/2,
    .06 > .05/1 -> reject 1, 3, 4 (Bonferroni's .0125 would keep .02). A NaN p is no
    test: not rejected and not counted, so .03 alone is tested at 0.05."""
    assert family_wise([0.01, 0.06, 0.02, 0.005], 0.05) == [True, False, True, True]
    assert family_wise([0.01, 0.06, 0.02, 0.005], 0.05, "bonferroni") == [True, False, False, True]
    assert family_wise([0.03, float("nan")], 0.05) == [True, False]


def test_one_sided_drop_by_hand():
    """base mean 80, now mean 79, noise sd 0.2 df 20: se = 0.2 sqrt(2/3) = 0.163299,
    t = 6.1237, p = sf_t20(t); upper = 1 + 1.724718 se = 1.28165. Floor 0.5: regressed;
    floor 1.5: ok (upper < floor); drop 0.3 with floor 0.5: significant (p ~ 0.04) but
    under the floor and upper 0.58 > 0.5: unclear."""
    base, now = [80.0, 80.2, 79.8], [79.0, 79.2, 78.8]
    noise = Noise(0.2, 20, 60, 20)
    se = 0.2 * math.sqrt(2 / 3)
    d = one_sided_drop(base, now, noise, floor=0.5)
    assert d.drop == pytest.approx(1.0) and d.t == pytest.approx(1 / se)
    assert d.p == pytest.approx(st.t.sf(1 / se, 20), rel=1e-12) and d.regressed
    assert d.upper == pytest.approx(1 + T_95_DF20 * se, abs=1e-5)
    assert one_sided_drop(base, now, noise, floor=1.5).outcome == "ok"
    small = one_sided_drop(base, [x + 0.7 for x in now], noise, floor=0.5)
    assert small.p < 0.05 and small.outcome == "unclear"
    assert one_sided_drop(now, base, noise, floor=0.5).outcome == "ok"  # now is higher


def test_one_sided_drop_without_noise_equals_ttest_ind_greater():
    """noise=None pools the two groups: p equals scipy ttest_ind(base, now,
    alternative='greater')."""
    base, now = [80.0, 80.4, 79.9, 80.1], [79.7, 80.0, 79.5]
    ref = st.ttest_ind(base, now, alternative="greater")
    d = one_sided_drop(base, now, None, floor=0.0)
    assert d.t == pytest.approx(ref.statistic, rel=1e-12)
    assert d.p == pytest.approx(ref.pvalue, rel=1e-12)


def test_regressions_need_family_wise_significance_and_floor():
    """Three checks: a big significant drop (alarm); a drop of 0.3 (p = 0.04) under its
    floor of 0.5 (no alarm); the same drop with a floor of 0.25, which alone regresses at
    0.05 but not under Holm over the family (0.04 > 0.05/2): no alarm."""
    noise = Noise(0.2, 20, 60, 20)
    base = [80.0, 80.2, 79.8]
    drops = [one_sided_drop(base, [x - 1.0 for x in base], noise, 0.5),
             one_sided_drop(base, [x - 0.3 for x in base], noise, 0.5),
             one_sided_drop(base, [x - 0.3 for x in base], noise, 0.25)]
    assert drops[2].regressed and 0.025 < drops[2].p < 0.05
    assert regressions(drops, 0.05) == [True, False, False]


def test_speed_change_exact_mann_whitney():
    """3 vs 3 fully separated: exact two-sided p = 2 / C(6, 3) = 0.1 (the smallest
    possible); ratio of medians 91/101."""
    ratio, p = speed_change([100.0, 101.0, 102.0], [90.0, 91.0, 92.0])
    assert ratio == pytest.approx(91 / 101) and p == pytest.approx(0.1)
    assert math.isnan(speed_change([], [1.0]).p)


def test_mde_far_in_the_tail():
    """A first interim look has a tiny alpha and few df (df 3, alpha 1e-5): the MDE is where
    scipy's noncentral t reaches 80% power (statsmodels' ttest_power gives NaN there), and
    it lies beyond the critical t (60.4), as it must."""
    from scipy import stats

    from harness.statistics import mde

    m = mde(1.0, 3, alpha=1e-5)
    crit = stats.t.ppf(1 - 5e-6, 3)
    assert m > crit
    assert stats.nct.sf(crit, 3, m) == pytest.approx(0.8, abs=1e-6)
