"""Tests for harness/report/stats.py: t-intervals over seeds, paired deltas, verdicts.

Every expected interval is computed here by hand (sample std with ddof=1 and a t quantile
written out as a constant), independently of the code under test.
"""
from __future__ import annotations

import math
import statistics

import pytest

from harness.report.stats import VERDICTS, mean_ci, paired_delta, verdict

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


def test_paired_delta_uses_common_seeds_only():
    """Differences a - b over the seeds both have; the interval is over those differences."""
    a = {0: 76.5, 1: 76.9, 2: 76.0, 3: 80.0}  # seed 3 has no partner
    b = {0: 76.1, 1: 76.5, 2: 75.9, 4: 10.0}
    diffs = [76.5 - 76.1, 76.9 - 76.5, 76.0 - 75.9]
    mean, hw, n = paired_delta(a, b)
    exp_mean, exp_hw = _by_hand(diffs, T975_DF2)
    assert n == 3
    assert mean == pytest.approx(exp_mean)
    assert hw == pytest.approx(exp_hw, rel=1e-9)
    # pairing removes the shared seed effect: unpaired, the interval would be much wider
    assert hw < mean_ci(a[s] for s in (0, 1, 2))[1]


def test_paired_delta_degenerate():
    """One common seed: its difference and no interval; none: n = 0."""
    mean, hw, n = paired_delta({0: 77.0, 1: 78.0}, {1: 76.5})
    assert (mean, n) == (1.5, 1) and math.isnan(hw)
    mean, hw, n = paired_delta({0: 77.0}, {1: 76.5})
    assert n == 0 and math.isnan(mean)
    mean, hw, n = paired_delta({0: 77.0, 1: None}, {0: 76.0, 1: 75.0})
    assert (mean, n) == (1.0, 1)


@pytest.mark.parametrize("ours, hw, n, paper, expected", [
    (0.8, 0.3, 3, 0.75, "reproduced"),        # CI [0.5, 1.1] excludes 0, same sign
    (-0.5, 0.2, 3, -0.14, "reproduced"),      # both negative
    (-0.8, 0.3, 3, 0.40, "contradicted"),     # CI [-1.1, -0.5], paper positive
    (0.6, 0.1, 2, -0.96, "contradicted"),     # CI [0.5, 0.7], paper negative
    (0.3, 0.5, 3, 0.75, "within noise"),      # CI [-0.2, 0.8] includes 0
    (-0.1, 0.1, 3, 0.75, "within noise"),     # CI touches 0: includes it
    (1.5, float("nan"), 1, 0.75, "within noise"),  # one seed: no interval
    (float("nan"), float("nan"), 0, 0.75, "not run"),  # our side missing
    (0.8, 0.3, 3, None, "not run"),           # the paper's side missing
    (0.8, 0.3, 3, 0.0, "contradicted"),       # paper: no change; ours: a clear one
])
def test_verdict_cases(ours, hw, n, paper, expected):
    """Each verdict: reproduced / within noise / contradicted / not run."""
    assert verdict(ours, hw, n, paper) == expected
    assert expected in VERDICTS


def test_verdict_from_paired_delta_end_to_end():
    """A paired delta of three seeds fed to verdict, checked against the hand interval."""
    a, b = {0: 77.0, 1: 77.4, 2: 77.1}, {0: 76.2, 1: 76.5, 2: 76.4}
    mean, hw, n = paired_delta(a, b)
    lo = mean - _by_hand([0.8, 0.9, 0.7], T975_DF2)[1]
    assert lo > 0
    assert verdict(mean, hw, n, 0.75) == "reproduced"
    assert verdict(mean, hw, n, -0.2) == "contradicted"
