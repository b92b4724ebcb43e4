"""The gate's mechanism check (harness.regress.checks.mechanism_check): a trick whose
effect on the mean logit gap (Sec 5.2, Figure 4) vanishes fails the night even when top-1
does not fall, e.g. label smoothing switched off at `local`, where it costs accuracy.
References: scipy's Welch t-test for the Satterthwaite df, numpy for the within-cell SD,
hand-made numbers for the check's decisions."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from harness.regress import THRESHOLDS, evaluate
from harness.regress.checks import MECHANISM_FLOOR, mechanism_check
from harness.statistics import satterthwaite, within_sd
from test_regress import DEVICE, TORCH

GAP_JITTER = (-0.02, 0.02, 0.0, 0.015, -0.015, 0.01)
ROWS = {"base": None, "+ cosine": "base", "+ label smoothing": "+ cosine"}
COLS = ("ResNet-50-D", "MobileNet")
GAP = {"base": 9.3, "+ cosine": 10.0, "+ label smoothing": 4.0}  # ResNet-50-D at local
TOP1 = {"base": 84.0, "+ cosine": 86.2, "+ label smoothing": 85.9}


def test_satterthwaite_is_welchs_df():
    a, b = [1.0, 2.5, 1.7, 3.1], [4.0, 3.2, 5.9]
    va, vb = np.var(a, ddof=1) / len(a), np.var(b, ddof=1) / len(b)
    se, df = satterthwaite([(va, len(a) - 1), (vb, len(b) - 1)])
    ref = stats.ttest_ind(a, b, equal_var=False)
    assert math.isclose(df, ref.df, rel_tol=1e-12)
    assert math.isclose((np.mean(a) - np.mean(b)) / se, ref.statistic, rel_tol=1e-12)
    assert satterthwaite([(0.5, 0)]) == (pytest.approx(math.nan, nan_ok=True), 0.0)


def test_within_sd_pools_each_side_about_its_own_mean():
    base, now = [4.0, 4.1, 3.9], [10.0, 10.2]  # a mean shift must not count as noise
    ss = sum((x - np.mean(base)) ** 2 for x in base) + sum((x - np.mean(now)) ** 2 for x in now)
    sd, df = within_sd(base, now)
    assert df == 3 and math.isclose(sd, math.sqrt(ss / 3))


def _cells(gap_shift: dict | None = None, top1_shift: dict | None = None, seeds: int = 3,
           first: int = 0) -> dict:
    out = {}
    for r in ROWS:
        for j, c in enumerate(COLS):
            g = GAP[r] - 0.5 * j + (gap_shift or {}).get((r, c), 0.0)
            t = TOP1[r] - 5 * j + (top1_shift or {}).get((r, c), 0.0)
            out[(r, c)] = [{"seed": s, "status": "done", "top1": t + GAP_JITTER[(s + j) % 6] * 10,
                            "logit_gap": g * (1 + GAP_JITTER[(s + 2 * j) % 6]), "img_per_s": 1000.0,
                            "device": DEVICE, "precision": "fp32", "torch_version": TORCH}
                           for s in range(first, first + seeds)]
    return out


def _baseline(cells: dict) -> dict:
    return {"cells": [{"row": r, "column": c, "seeds": [t["seed"] for t in ts], "trials": ts}
                      for (r, c), ts in cells.items()]}


PARENTS = {r: p for r, p in ROWS.items() if p}


def _outcomes(ev) -> dict:
    return {(c.kind, c.name): c.outcome for c in ev.checks}


def test_label_smoothing_switched_off_fails_on_its_mechanism_though_top1_rises():
    """The label-smoothing row trains as its parent: its gap is the parent's (10 instead
    of 4) and its top-1 0.3 *higher*. No accuracy check fails; the mechanism check does."""
    base = _baseline(_cells())
    off = {("+ label smoothing", c): GAP["+ cosine"] - GAP["+ label smoothing"] for c in COLS}
    now = _cells(off, {("+ label smoothing", c): 0.3 for c in COLS}, first=10)
    ev = evaluate(base, now, THRESHOLDS["local"], parents=PARENTS)
    out = _outcomes(ev)
    assert out[("mechanism", "+ label smoothing")] == "regression"
    assert not any(v.failed for v in ev.cells)
    assert all(o != "regression" for (k, _), o in out.items() if k != "mechanism")
    chk = next(c for c in ev.checks if c.kind == "mechanism" and c.name == "+ label smoothing")
    assert chk.drop.drop == pytest.approx(1.0, abs=0.05)  # the whole delta lost
    assert chk.drop.floor == MECHANISM_FLOOR


def test_null_night_passes_and_an_unclear_baseline_delta_is_not_checked():
    """Other seeds, nothing changed: every check passes. The cosine row's gap delta (+0.7)
    is checked only where the baseline shows it clearly; with a noisy gap it is not."""
    base = _baseline(_cells())
    ev = evaluate(base, _cells(first=10), THRESHOLDS["local"], parents=PARENTS)
    assert not any(c.failed for c in ev.checks)
    assert ("mechanism", "+ label smoothing") in _outcomes(ev)
    rb = {0: 10.0, 1: 10.6, 2: 9.5}  # cosine's gap, SD ~0.55: delta +0.7 is not clear
    pb = {0: 9.3, 1: 8.7, 2: 9.9}
    assert mechanism_check("+ cosine", "base", "logit_gap", {"R": (rb, pb, rb, pb)}, 0.025) is None


def test_a_half_weakened_mechanism_is_measured_not_failed():
    """A third of label smoothing's gap delta lost: measured (drop ~1/3), below the floor
    of half, so not a regression."""
    base = _baseline(_cells())
    part = {("+ label smoothing", c): (GAP["+ cosine"] - GAP["+ label smoothing"]) / 3 for c in COLS}
    ev = evaluate(base, _cells(part, first=10), THRESHOLDS["local"], parents=PARENTS)
    chk = next(c for c in ev.checks if c.kind == "mechanism" and c.name == "+ label smoothing")
    assert chk.drop.drop == pytest.approx(1 / 3, abs=0.05)
    assert chk.outcome != "regression"


def test_smoke_never_gates_the_mechanism():
    base = _baseline(_cells())
    off = {("+ label smoothing", c): 6.0 for c in COLS}
    ev = evaluate(base, _cells(off, first=10), THRESHOLDS["smoke"], parents=PARENTS)
    assert _outcomes(ev)[("mechanism", "+ label smoothing")] == "pass"
