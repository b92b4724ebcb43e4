"""Tests for harness/report/stats.py: t-intervals over seeds (the verdicts are
harness/report/verdicts.py's, tested in tests/test_adaptive.py, tests/test_report.py and tests/test_statistics.py).

Every expected interval is computed here by hand (sample std with ddof=1 and a t quantile
written out as a constant), independently of the code under test.
"""
from __future__ import annotations

import math
import statistics

import pytest

from harness.report.stats import mean_ci

T975_DF1 = 12.706204736174698  # t quantile 0.975, 1 degree of freedom
T975_DF2 = 4.302652729911275  # t quantile 0.975, 2 degrees of freedom
T95_DF2 = 2.919985580355516  # t quantile 0.95, 2 degrees of freedom (90% interval)


def _by_hand(xs: list[float], t: float) -> tuple[float, float]:
    mean = sum(xs) / len(xs)
    sd = math.sqrt(sum((x - mean) ** 2 for x in xs) / (len(xs) - 1))
    return mean, t * sd / math.sqrt(len(xs))


def test_mean_ci_three_seeds_matches_hand_computed_interval():
    """Seeds [76.1, 76.5, 75.9]: mean, ddof=1 std and t(0.975, df=2) = 4.3027 by hand."""
    xs = [76.1, 76.5, 75.9]
    mean, hw, n = mean_ci(xs)
    exp_mean, exp_hw = _by_hand(xs, T975_DF2)
    assert n == 3
    assert mean == pytest.approx(76.16666666666667)
    assert mean == pytest.approx(exp_mean)
    assert hw == pytest.approx(exp_hw, rel=1e-9)
    assert hw == pytest.approx(T975_DF2 * statistics.stdev(xs) / math.sqrt(3), rel=1e-9)


def test_mean_ci_other_level_and_two_seeds():
    """A 90% interval uses t(0.95, df=2); two seeds use t(0.975, df=1) = 12.706."""
    xs = [76.1, 76.5, 75.9]
    _, hw90, _ = mean_ci(xs, level=0.90)
    assert hw90 == pytest.approx(_by_hand(xs, T95_DF2)[1], rel=1e-9)
    mean, hw, n = mean_ci([70.0, 71.0])
    assert (mean, n) == (70.5, 2)
    assert hw == pytest.approx(T975_DF1 * statistics.stdev([70.0, 71.0]) / math.sqrt(2), rel=1e-9)


def test_mean_ci_edge_cases():
    """One seed: no interval (NaN); none: (nan, nan, 0); None/NaN values are skipped."""
    mean, hw, n = mean_ci([75.0])
    assert (mean, n) == (75.0, 1) and math.isnan(hw)
    mean, hw, n = mean_ci([])
    assert n == 0 and math.isnan(mean) and math.isnan(hw)
    mean, hw, n = mean_ci([76.1, None, float("nan"), 76.5, 75.9])
    assert n == 3 and mean == pytest.approx(76.16666666666667)
    mean, hw, n = mean_ci([5.0, 5.0, 5.0])
    assert (mean, hw, n) == (5.0, 0.0, 3)
    with pytest.raises(ValueError):
        mean_ci([1.0, 2.0], level=1.5)
