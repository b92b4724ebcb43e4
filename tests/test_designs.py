"""Trick grids (factorial / leave-one-out / stack) and their statistical analysis."""
from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from harness.analysis import design_section, factorial_effects, label_trials, loo_drops
from harness.errors import HarnessError
from harness.experiments import ExperimentError, make_plan, parse_experiment, row_recipes
from harness.experiments.grid import MAX_FACTORIAL_TRICKS, PAPER_ORDER, grid_experiment
from harness.experiments.schema import check_design
from harness.recipe import BASELINE
from harness.scales import get_scale
from tricks.registry import GRID_TRICKS

FACTORS = ["A", "B", "C"]
# Chosen effects (effect = mean(y|+) - mean(y|-)): three mains and one interaction.
TRUE = {"A": 2.0, "B": -1.0, "C": 3.0, "A:B": 0.0, "A:C": 0.8, "B:C": 0.0}


def _runs(noise_sd: float, seeds: int = 3, rng_seed: int = 1234) -> pd.DataFrame:
    """A replicated 2^3 design, y = 70 + sum(effect/2 * coded x) + noise."""
    rng = np.random.default_rng(rng_seed)
    recs = []
    for a, b, c in itertools.product((0, 1), repeat=3):
        x = {"A": 2 * a - 1, "B": 2 * b - 1, "C": 2 * c - 1}
        mean = 70 + sum(TRUE[f] / 2 * x[f] for f in FACTORS) + TRUE["A:C"] / 2 * x["A"] * x["C"]
        for s in range(seeds):
            recs.append({"A": a, "B": b, "C": c, "seed": s, "top1": mean + rng.normal(0, noise_sd)})
    return pd.DataFrame(recs)


def test_factorial_effects_exact_on_noise_free_data():
    """Without noise the estimated effects are exactly the chosen ones and the CIs collapse."""
    eff = factorial_effects(_runs(0.0), FACTORS).set_index("term")
    assert list(eff.index) == ["A", "B", "C", "A:B", "A:C", "B:C"]
    assert list(eff["kind"]) == ["main"] * 3 + ["interaction"] * 3
    for term, value in TRUE.items():
        assert eff.loc[term, "effect"] == pytest.approx(value, abs=1e-9)
        assert eff.loc[term, "ci_high"] - eff.loc[term, "ci_low"] == pytest.approx(0, abs=1e-6)
    assert eff.attrs["mean"] == pytest.approx(70.0)
    assert eff.attrs["n"] == 24 and eff.attrs["df_resid"] == 24 - 7


def test_factorial_effects_recover_known_effects_under_noise():
    """With small seeded noise over 3 seeds, estimates lie near the truth and the CIs cover it."""
    eff = factorial_effects(_runs(0.1), FACTORS).set_index("term")
    for term, value in TRUE.items():
        assert eff.loc[term, "effect"] == pytest.approx(value, abs=0.15)
        assert eff.loc[term, "ci_low"] <= value <= eff.loc[term, "ci_high"]
    assert eff.loc["A", "p_value"] < 1e-6 and eff.loc["A:B", "p_value"] > 0.01
    assert 0.05 < eff.attrs["sigma"] < 0.2


def test_factorial_effects_match_textbook_contrasts_and_standard_errors():
    """Balanced design: effect = contrast / 2^(k-1) over cell means; se = 2 s / sqrt(N)."""
    df = _runs(0.3, rng_seed=7)
    # Table of signs in standard (Yates) order: rows (1), a, b, ab, c, ac, bc, abc.
    signs = {
        "A":   [-1, +1, -1, +1, -1, +1, -1, +1],
        "B":   [-1, -1, +1, +1, -1, -1, +1, +1],
        "C":   [-1, -1, -1, -1, +1, +1, +1, +1],
        "A:B": [+1, -1, -1, +1, +1, -1, -1, +1],
        "A:C": [+1, -1, +1, -1, -1, +1, -1, +1],
        "B:C": [+1, +1, -1, -1, -1, -1, +1, +1],
    }
    yates = [(0, 0, 0), (1, 0, 0), (0, 1, 0), (1, 1, 0), (0, 0, 1), (1, 0, 1), (0, 1, 1), (1, 1, 1)]
    means = df.groupby(["A", "B", "C"])["top1"].mean()
    cell = [means.loc[k] for k in yates]
    eff = factorial_effects(df, FACTORS).set_index("term")
    for term, sg in signs.items():
        contrast = sum(s * y for s, y in zip(sg, cell))
        assert eff.loc[term, "effect"] == pytest.approx(contrast / 4, abs=1e-10)
    # Residual variance of the model with mains + 2-way interactions (the 3-way term and
    # the within-cell scatter are residual): RSS / (N - 7); Var(effect) = 4 s^2 / N.
    n = len(df)
    fitted = means.mean()  # balanced: the intercept is the grand mean
    x = {f: 2 * df[f].to_numpy() - 1 for f in FACTORS}
    for term in signs:
        cols = term.split(":")
        fitted = fitted + eff.loc[term, "effect"] / 2 * np.prod([x[c] for c in cols], axis=0)
    rss = float(((df["top1"].to_numpy() - fitted) ** 2).sum())
    se = 2 * np.sqrt(rss / (n - 7)) / np.sqrt(n)
    half = stats.t.ppf(0.975, n - 7) * se
    for term in signs:
        assert eff.loc[term, "se"] == pytest.approx(se, rel=1e-9)
        assert eff.loc[term, "ci_high"] - eff.loc[term, "effect"] == pytest.approx(half, rel=1e-9)


def test_factorial_effects_rejects_missing_cells_and_bad_codes():
    """A design missing whole cells cannot separate the terms; factors must be 0/1."""
    df = _runs(0.1)
    with pytest.raises(HarnessError, match="cannot separate"):
        factorial_effects(df[(df.A == 0) | (df.B == 0)], FACTORS)
    with pytest.raises(HarnessError, match="0 \\(off\\) or 1"):
        factorial_effects(df.assign(A=df.A * 2), FACTORS)
    with pytest.raises(HarnessError, match="no column for factor 'D'"):
        factorial_effects(df, FACTORS + ["D"])


def test_unreplicated_saturated_two_factor_design_has_no_ci():
    """2^2 with one run per cell and the interaction in the model: no residual d.f. -> NaN CI."""
    df = pd.DataFrame({"A": [0, 1, 0, 1], "B": [0, 0, 1, 1], "top1": [70.0, 72.0, 71.0, 75.0]})
    eff = factorial_effects(df, ["A", "B"]).set_index("term")
    assert eff.loc["A", "effect"] == pytest.approx(((72 + 75) - (70 + 71)) / 2)
    assert eff.loc["A:B", "effect"] == pytest.approx(((70 + 75) - (72 + 71)) / 2)
    assert np.isnan(eff.loc["A", "ci_low"]) and eff.attrs["df_resid"] == 0


def test_loo_drops_hand_example():
    """Drops are paired by seed; the t CI is computed by hand (t_0.975,2 = 4.302653)."""
    rows = [
        # full recipe (A=B=C=1), seeds 0..2
        (1, 1, 1, 0, 72.0), (1, 1, 1, 1, 73.0), (1, 1, 1, 2, 71.0),
        # without A: drops 2, 1, 2
        (0, 1, 1, 0, 70.0), (0, 1, 1, 1, 72.0), (0, 1, 1, 2, 69.0),
        # without B: no change
        (1, 0, 1, 0, 72.0), (1, 0, 1, 1, 73.0), (1, 0, 1, 2, 71.0),
        # without C: only seeds 0 and 1 finished -> 2 pairs, drops -1, -1
        (1, 1, 0, 0, 73.0), (1, 1, 0, 1, 74.0),
    ]
    df = pd.DataFrame(rows, columns=["A", "B", "C", "seed", "top1"])
    out = loo_drops(df, ["A", "B", "C"]).set_index("trick")
    a = out.loc["A"]
    assert a["n"] == 3 and a["drop"] == pytest.approx(5 / 3)
    assert (a["full"], a["without"]) == (pytest.approx(72.0), pytest.approx(211 / 3))
    half = 4.302653 * np.sqrt(1 / 3) / np.sqrt(3)  # sd of (2, 1, 2) = sqrt(1/3)
    assert a["ci_low"] == pytest.approx(5 / 3 - half, abs=1e-5)
    assert a["ci_high"] == pytest.approx(5 / 3 + half, abs=1e-5)
    b = out.loc["B"]
    assert b["drop"] == 0 and b["ci_low"] == 0 and b["ci_high"] == 0 and b["p_value"] == 1.0
    c = out.loc["C"]
    assert c["n"] == 2 and c["drop"] == pytest.approx(-1.0) and c["full"] == pytest.approx(72.5)


def test_loo_drops_without_pairs_is_nan():
    """A trick whose 'without' row never finished gets n = 0 and NaN numbers, not an error."""
    df = pd.DataFrame({"A": [1, 1], "B": [1, 1], "seed": [0, 1], "top1": [70.0, 71.0]})
    out = loo_drops(df, ["A", "B"])
    assert list(out["n"]) == [0, 0] and out["drop"].isna().all()


# ---- grids ------------------------------------------------------------------------------
def test_factorial_grid_plans_2k_rows_times_seeds():
    """3 tricks -> 8 rows (all-off first, factors 0/1) -> 16 trials at 2 seeds, unique hashes."""
    exp = grid_experiment("resnet18_d", "cosine,label_smoothing,mixup", "factorial", None)
    assert exp.design == "factorial"
    assert exp.name == "grid-factorial-resnet18_d-cosine-label_smoothing-mixup"
    assert len(exp.rows) == 8
    assert exp.rows[0].label == "cosine=0 label_smoothing=0 mixup=0"
    assert dict(exp.rows[0].factors) == {"cosine": 0, "label_smoothing": 0, "mixup": 0}
    assert exp.rows[-1].label == "cosine=1 label_smoothing=1 mixup=1"
    assert {tuple(r.factors.values()) for r in exp.rows} == set(itertools.product((0, 1), repeat=3))
    recipes = row_recipes(exp)
    assert recipes[exp.rows[0].label] == BASELINE
    for r in exp.rows:
        assert set(recipes[r.label].tricks()) == {t for t, v in r.factors.items() if v}
    plan = make_plan(exp, get_scale("smoke"), seeds=2)
    hashes = [t.hash for t in plan.all_trials()]
    assert len(hashes) == 16 and len(set(hashes)) == 16


def test_loo_and_stack_grid_shapes():
    """loo: full row + one row per trick; stack: baseline + one cumulative row per trick."""
    loo = grid_experiment("resnet18", "cosine,mixup,warmup", "loo", 3)
    assert [r.label for r in loo.rows] == ["all tricks", "without cosine", "without mixup",
                                           "without warmup"]
    assert dict(loo.rows[2].factors) == {"cosine": 1, "mixup": 0, "warmup": 1}
    rec = row_recipes(loo)
    assert set(rec["all tricks"].tricks()) == {"cosine", "mixup", "warmup"}
    assert set(rec["without mixup"].tricks()) == {"cosine", "warmup"}
    plan = make_plan(loo, get_scale("smoke"))
    assert loo.seeds == 3 and len(plan.all_trials()) == 4 * 3

    stack = grid_experiment("resnet18", "label_smoothing,cosine", "stack", None)
    assert stack.cumulative and stack.stacked and stack.design == "stack"
    rec = row_recipes(stack)
    assert [r.label for r in stack.rows] == ["baseline", "+ label_smoothing", "+ cosine"]
    assert rec["+ cosine"].tricks() == ["cosine", "label_smoothing"]
    assert len({t.hash for t in make_plan(stack, get_scale("smoke"), seeds=2).all_trials()}) == 6

    default = grid_experiment("resnet18", None, "stack", None)
    assert [r.label for r in default.rows][1:] == [f"+ {t}" for t in PAPER_ORDER]
    assert set(row_recipes(default)[default.rows[-1].label].tricks()) == set(GRID_TRICKS)


@pytest.mark.parametrize("model, tricks, design, needle", [
    (None, "cosine", "factorial", "needs --model"),
    ("resnet51", "cosine", "factorial", "unknown model 'resnet51'"),
    ("resnet50", "cosine,lookahead", "factorial", "unknown trick 'lookahead'"),
    ("resnet50", "cosine,mixup,cosine", "loo", "duplicate trick 'cosine'"),
    ("resnet50", "cosine", "fractional", "unknown design 'fractional'"),
    ("resnet50", ",".join(PAPER_ORDER), "factorial", f"at most {MAX_FACTORIAL_TRICKS} tricks"),
    ("resnet50", "cosine,distill", "factorial", "'distill' cannot be part of a grid"),
    ("resnet50", None, "factorial", "needs --tricks"),
    ("resnet50", "cosine,,mixup", "stack", "empty trick name"),
])
def test_grid_errors_name_the_bad_value_and_choices(model, tricks, design, needle):
    """Every bad grid argument raises one line naming the value (and the valid choices)."""
    with pytest.raises(HarnessError) as info:
        grid_experiment(model, tricks, design, None)
    msg = str(info.value)
    assert needle in msg and "\n" not in msg
    if "unknown" in needle or "needs --model" in needle:
        assert "valid choices" in msg


def test_check_design_rejects_factors_that_disagree_with_recipes():
    """A row claiming mixup=1 with a recipe without mixup is rejected, naming the key."""
    data = {"name": "x", "design": "factorial",
            "rows": [{"label": "off", "factors": {"mixup": 0}},
                     {"label": "on", "factors": {"mixup": 1}, "recipe": {"lr_schedule": "cosine"}}],
            "columns": [{"label": "r", "model": "resnet18"}]}
    with pytest.raises(ExperimentError, match=r"x.yaml: rows\[1\]\.factors\.mixup: says mixup=1"):
        check_design(parse_experiment(data, "x.yaml"))
    data["rows"][1]["factors"] = {"cosine": 1}
    with pytest.raises(ExperimentError, match=r"rows\[1\]\.factors: names tricks"):
        check_design(parse_experiment(data, "x.yaml"))


# ---- report section ---------------------------------------------------------------------
def _trials(exp, effects: dict[str, float], seeds: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    recs = []
    for r in exp.rows:
        y = 70 + sum(e / 2 * (2 * r.factors[t] - 1) for t, e in effects.items())
        for s in range(seeds):
            recs.append({"row_label": r.label, "seed": s, "status": "done",
                         "top1": y + rng.normal(0, 0.05)})
    recs.append({"row_label": exp.rows[0].label, "seed": 9, "status": "failed", "top1": None})
    recs.append({"row_label": exp.rows[0].label, "seed": 8, "status": "diverged", "top1": 10.0})
    return pd.DataFrame(recs)


def test_design_section_factorial_reports_effects():
    """The factorial section tabulates cell means and effects with CIs (only 'done' trials)."""
    exp = grid_experiment("resnet18", "cosine,mixup", "factorial", 3)
    md = design_section(exp, _trials(exp, {"cosine": 1.0, "mixup": 2.0}))
    assert md.startswith("## Factorial analysis (2^2 design over cosine, mixup)")
    assert "| cosine=0 mixup=0 | 3 " in md  # the diverged and failed trials are not counted
    line = next(ln for ln in md.splitlines() if ln.startswith("| cosine ") and "main" in ln)
    assert "+1.0" in line and "helps" in line
    assert "| cosine:mixup " in md


def test_design_section_loo_and_other_designs():
    """The loo section lists each trick's drop; table/stack experiments give ''."""
    exp = grid_experiment("resnet18", "cosine,mixup", "loo", 3)
    md = design_section(exp, _trials(exp, {"cosine": 1.0, "mixup": 2.0}))
    assert "Leave-one-out" in md
    row = next(ln for ln in md.splitlines() if ln.startswith("| mixup "))
    assert "+2.0" in row or "+1.9" in row
    assert design_section(grid_experiment("resnet18", "cosine", "stack", 1), pd.DataFrame()) == ""
    assert "No finished trials yet." in design_section(exp, pd.DataFrame())


def test_design_section_with_missing_cells_says_so():
    """Missing cells are marked and the effects are not estimated (no crash)."""
    exp = grid_experiment("resnet18", "cosine,mixup", "factorial", 3)
    df = _trials(exp, {"cosine": 1.0})
    df = df[df["row_label"] != "cosine=1 mixup=1"]
    md = design_section(exp, df)
    assert "missing" in md and "Effects not estimated" in md


def test_label_trials_relabels_by_spec_hash():
    """Stored trials carry another table's labels; label_trials gives them this plan's."""
    exp = grid_experiment("resnet18", "cosine", "factorial", 2)
    plan = make_plan(exp, get_scale("smoke"))
    stored = pd.DataFrame([{"spec_hash": t.hash, "row_label": "Baseline (table 2)",
                            "column_label": "other", "seed": t.seed, "status": "done", "top1": 50.0}
                           for t in plan.all_trials()] +
                          [{"spec_hash": "f" * 16, "row_label": "x", "column_label": "y",
                            "seed": 0, "status": "done", "top1": 1.0}])
    out = label_trials(plan, stored)
    assert len(out) == 4
    assert set(out["row_label"]) == {"cosine=0", "cosine=1"}
