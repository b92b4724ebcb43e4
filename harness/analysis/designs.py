"""Analyses of designed experiments: two-level factorial effects and leave-one-out drops.

Factorial (Box, Hunter & Hunter, ch. 5; Montgomery, ch. 6): each trick is a factor coded
-1 (off) / +1 (on). The model fitted by ordinary least squares over every finished trial
(seeds are replicates) is

    y = b0 + sum_i b_i x_i + sum_{i<j} b_ij x_i x_j + e

An *effect* is 2 x its coefficient. In a complete, balanced 2^k design this is exactly
the textbook contrast ``mean(y | x = +1) - mean(y | x = -1)`` (for an interaction, the
sign of the product ``x_i x_j``), i.e. how much switching the trick on moves the response,
averaged over the other tricks. Three-way and higher interactions are left in the residual,
whose variance gives each effect's standard error and 95% t confidence interval.

Leave-one-out: the drop of a trick is ``y(all tricks) - y(all but that trick)``, paired by
seed, with a paired-t 95% confidence interval.
"""
from __future__ import annotations

from itertools import combinations
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from harness.errors import HarnessError
from harness.experiments.grid import design_factors, design_tricks
from harness.experiments.schema import check_design

CONFIDENCE = 0.95
EFFECT_COLUMNS = ["term", "kind", "effect", "se", "ci_low", "ci_high", "p_value"]
LOO_COLUMNS = ["trick", "full", "without", "drop", "ci_low", "ci_high", "n", "p_value"]


# ---- factorial ------------------------------------------------------------------------
def _coded(df: pd.DataFrame, factors: list[str]) -> np.ndarray:
    missing = [f for f in factors if f not in df.columns]
    if missing:
        raise HarnessError(f"factorial analysis: no column for factor {missing[0]!r}; "
                           f"columns: {', '.join(map(str, df.columns))}")
    raw = df[factors].to_numpy(dtype=float)
    if not np.isin(raw, (0.0, 1.0)).all():
        raise HarnessError("factorial analysis: factor columns must hold 0 (off) or 1 (on)")
    return 2.0 * raw - 1.0


def _terms(factors: list[str]) -> list[tuple[str, ...]]:
    return [(f,) for f in factors] + list(combinations(factors, 2))


def factorial_effects(df: pd.DataFrame, factors: list[str], response: str = "top1",
                      confidence: float = CONFIDENCE) -> pd.DataFrame:
    """Main effects and two-way interactions of a two-level factorial, with CIs.

    ``df`` has one row per trial: a 0/1 column per factor and the ``response``. Returns one
    row per term (mains first, then interactions ``a:b`` in factor order) with columns
    term, kind ('main' | 'interaction'), effect, se, ci_low, ci_high, p_value. ``attrs``
    carries n, df_resid, sigma (residual s.d.) and mean (the intercept: the grand mean of a
    balanced design). With no residual degrees of freedom (an unreplicated saturated
    design) se, the CI and p are NaN. Raises HarnessError when the runs cannot separate
    the terms (e.g. whole cells missing).
    """
    factors = list(factors)
    if not factors:
        raise HarnessError("factorial analysis needs at least one factor")
    if len(set(factors)) != len(factors):
        raise HarnessError(f"factorial analysis: duplicate factor in {factors}")
    if response not in df.columns:
        raise HarnessError(f"factorial analysis: no response column {response!r}")
    data = df[df[response].notna()]
    x = _coded(data, factors)
    y = data[response].to_numpy(dtype=float)
    terms = _terms(factors)
    idx = {f: i for i, f in enumerate(factors)}
    cols = [np.ones(len(y))] + [np.prod([x[:, idx[f]] for f in t], axis=0) for t in terms]
    X = np.column_stack(cols)
    n, p = X.shape
    if n < p or np.linalg.matrix_rank(X) < p:
        seen = {tuple(int(v > 0) for v in r) for r in x}
        raise HarnessError(f"factorial analysis: {n} finished runs in {len(seen)} of the "
                           f"{2 ** len(factors)} cells cannot separate the {p - 1} effects; "
                           "finish the missing cells")
    beta, *_ = np.linalg.lstsq(X, y, rcond=None)
    resid = y - X @ beta
    dof = n - p
    if dof > 0:
        s2 = float(resid @ resid) / dof
        cov = s2 * np.linalg.inv(X.T @ X)
        se = 2.0 * np.sqrt(np.clip(np.diag(cov), 0.0, None))
        tcrit = float(stats.t.ppf(0.5 + confidence / 2, dof))
    else:
        s2, se, tcrit = float("nan"), np.full(p, np.nan), float("nan")
    effects = 2.0 * beta
    rows = []
    for k, t in enumerate(terms, start=1):
        e, s = float(effects[k]), float(se[k])
        if np.isnan(s):
            pval = float("nan")
        elif s == 0.0:
            pval = 0.0 if abs(e) > 1e-12 else 1.0
        else:
            pval = float(2 * stats.t.sf(abs(e) / s, dof))
        rows.append({"term": ":".join(t), "kind": "main" if len(t) == 1 else "interaction",
                     "effect": e, "se": s, "ci_low": e - tcrit * s, "ci_high": e + tcrit * s,
                     "p_value": pval})
    out = pd.DataFrame(rows, columns=EFFECT_COLUMNS)
    out.attrs.update(n=n, df_resid=dof, sigma=float(np.sqrt(s2)) if dof > 0 else float("nan"),
                     mean=float(beta[0]), response=response, confidence=confidence)
    return out


# ---- leave-one-out --------------------------------------------------------------------
def loo_drops(df: pd.DataFrame, tricks: list[str], response: str = "top1",
              confidence: float = CONFIDENCE) -> pd.DataFrame:
    """What removing each trick costs: ``full - without``, paired by seed, with a t CI.

    ``df`` has one row per trial with a ``seed`` column, a 0/1 column per trick and the
    response. The full recipe is the row with every trick 1; "without t" has t = 0 and the
    others 1. A positive drop means the trick helps. Columns: trick, full, without (means
    over the paired seeds), drop (mean paired difference), ci_low, ci_high, n (pairs),
    p_value (paired t-test). A trick with no paired seeds gets NaN and n = 0.
    """
    tricks = list(tricks)
    for col in ["seed", response, *tricks]:
        if col not in df.columns:
            raise HarnessError(f"leave-one-out analysis: no column {col!r}")
    data = df[df[response].notna()]
    on = data[tricks].to_numpy(dtype=int)

    def by_seed(mask: np.ndarray) -> pd.Series:
        return data[mask].groupby("seed")[response].mean()

    full = by_seed((on == 1).all(axis=1))
    rows = []
    for j, t in enumerate(tricks):
        others = np.delete(on, j, axis=1)
        without = by_seed((on[:, j] == 0) & (others == 1).all(axis=1))
        pair = pd.concat({"full": full, "without": without}, axis=1, join="inner")
        d = (pair["full"] - pair["without"]).to_numpy(dtype=float)
        n = len(d)
        row: dict[str, Any] = {"trick": t, "n": n, "full": np.nan, "without": np.nan, "drop": np.nan,
                               "ci_low": np.nan, "ci_high": np.nan, "p_value": np.nan}
        if n:
            row.update(full=float(pair["full"].mean()), without=float(pair["without"].mean()),
                       drop=float(d.mean()))
        if n > 1:
            sd = float(d.std(ddof=1))
            half = float(stats.t.ppf(0.5 + confidence / 2, n - 1)) * sd / np.sqrt(n)
            row.update(ci_low=row["drop"] - half, ci_high=row["drop"] + half)
            if sd > 0:
                row["p_value"] = float(2 * stats.t.sf(abs(row["drop"]) / (sd / np.sqrt(n)), n - 1))
            else:
                row["p_value"] = 0.0 if row["drop"] != 0 else 1.0
        rows.append(row)
    out = pd.DataFrame(rows, columns=LOO_COLUMNS)
    out.attrs.update(response=response, confidence=confidence)
    return out


# ---- connecting plans, stored trials and reports --------------------------------------
def label_trials(plan: Any, trials_df: pd.DataFrame) -> pd.DataFrame:
    """The stored trials of ``plan``, labelled with this plan's row and column labels.

    The store keys trials by spec hash and keeps the labels of the table that ran a trial
    first (the all-off row of a grid may be another table's 'Baseline'). This joins the
    plan's trials on ``spec_hash`` and overwrites ``row_label``/``column_label`` so
    :func:`design_section` sees this experiment's labels.
    """
    cells = pd.DataFrame([{"spec_hash": t.hash, "row_label": t.row, "column_label": t.column}
                          for ts in plan.trials.values() for t in ts],
                         columns=["spec_hash", "row_label", "column_label"])
    rest = trials_df.drop(columns=[c for c in ("row_label", "column_label") if c in trials_df.columns])
    return cells.merge(rest, on="spec_hash", how="inner")


def _md_table(rows: list[list[Any]], headers: list[str]) -> str:
    from tabulate import tabulate

    return tabulate(rows, headers=headers, tablefmt="pipe", disable_numparse=True)


def _fmt(v: float, signed: bool = True) -> str:
    if v is None or not np.isfinite(v):
        return "n/a"
    return f"{v:+.2f}" if signed else f"{v:.2f}"


def _fmt_p(p: float) -> str:
    if p is None or not np.isfinite(p):
        return "n/a"
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _verdict(lo: float, hi: float, what: str = "") -> str:
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return "no CI (needs replicates)"
    if lo > 0:
        return f"helps{what}"
    if hi < 0:
        return f"hurts{what}"
    return "unclear (CI spans 0)"


def _factor_frame(exp: Any, df: pd.DataFrame) -> tuple[pd.DataFrame, list[str]]:
    fmap = design_factors(exp)
    tricks = design_tricks(exp)
    df = df[df["row_label"].isin(fmap)].copy()
    for t in tricks:
        df[t] = [fmap[r].get(t, 0) for r in df["row_label"]]
    return df, tricks


def _factorial_md(exp: Any, df: pd.DataFrame, tricks: list[str], response: str) -> list[str]:
    out: list[str] = []
    order = [r.label for r in exp.rows if r.factors]
    g = df.groupby("row_label")[response]
    cells = []
    for label in order:
        if label in g.groups:
            v = g.get_group(label)
            cells.append([label, len(v), _fmt(v.mean(), False),
                          _fmt(v.std(ddof=1), False) if len(v) > 1 else "n/a"])
        else:
            cells.append([label, 0, "missing", ""])
    out += [f"Cell means of {response} (%) over seeds:", "",
            _md_table(cells, ["row", "runs", f"mean {response}", "s.d."]), ""]
    try:
        eff = factorial_effects(df, tricks, response)
    except HarnessError as exc:
        return out + [f"Effects not estimated: {exc}.", ""]
    pct = int(round(100 * eff.attrs["confidence"]))
    rows = [[r.term, r.kind, _fmt(r.effect), f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]",
             _fmt_p(r.p_value), _verdict(r.ci_low, r.ci_high) if r.kind == "main"
             else _verdict(r.ci_low, r.ci_high).replace("helps", "synergy (more than additive)")
             .replace("hurts", "overlap (less than additive)")] for r in eff.itertuples()]
    out += [f"Effects on {response} (percentage points; -1/+1 coding, effect = 2 x OLS "
            f"coefficient; {eff.attrs['n']} runs, {eff.attrs['df_resid']} residual d.f., "
            f"residual s.d. {_fmt(eff.attrs['sigma'], False)}):", "",
            _md_table(rows, ["term", "kind", "effect", f"{pct}% CI", "p", "reading"]), ""]
    inter = eff[(eff["kind"] == "interaction") & ((eff["ci_low"] > 0) | (eff["ci_high"] < 0))]
    if len(inter):
        out += ["Interactions whose CI excludes 0 (the tricks are not additive there): "
                + ", ".join(f"{r.term} ({_fmt(r.effect)})" for r in inter.itertuples())
                + ". Read those main effects as averages over the other trick's two levels.", ""]
    else:
        out += ["No two-way interaction's CI excludes 0: the main effects read as each "
                "trick's own contribution, averaged over the others.", ""]
    return out


def _loo_md(df: pd.DataFrame, tricks: list[str], response: str) -> list[str]:
    drops = loo_drops(df, tricks, response)
    pct = int(round(100 * drops.attrs["confidence"]))
    rows = [[r.trick, r.n, _fmt(r.full, False), _fmt(r.without, False), _fmt(r.drop),
             f"[{_fmt(r.ci_low)}, {_fmt(r.ci_high)}]", _fmt_p(r.p_value),
             _verdict(r.ci_low, r.ci_high, " (removing it costs accuracy)")
             if r.n else "missing runs"] for r in drops.itertuples()]
    return [f"Drop in {response} (percentage points) from removing one trick from the full "
            "recipe, paired by seed (positive = the trick helps):", "",
            _md_table(rows, ["trick", "pairs", f"all tricks {response}", f"without {response}",
                             "drop", f"{pct}% CI", "p", "reading"]), ""]


def design_section(exp: Any, trials_df: pd.DataFrame, response: str = "top1",
                   heading: str = "##") -> str:
    """Markdown for a factorial or leave-one-out experiment ('' for other designs).

    ``trials_df`` needs row_label, seed, status and the response (top1); only status
    'done' is used. Its row labels must be this experiment's (see :func:`label_trials`).
    With several columns and a ``column_label`` column, each column is analysed on its own.
    """
    if getattr(exp, "design", "table") not in ("factorial", "loo") or trials_df is None:
        return ""
    check_design(exp)
    df = trials_df
    if "row_label" not in df.columns or response not in df.columns:
        df = pd.DataFrame(columns=["row_label", "seed", "status", response])
    if "status" in df.columns:
        df = df[df["status"] == "done"]
    df, tricks = _factor_frame(exp, df)
    title = {"factorial": f"Factorial analysis (2^{len(tricks)} design over {', '.join(tricks)})",
             "loo": f"Leave-one-out analysis ({', '.join(tricks)})"}[exp.design]
    lines = [f"{heading} {title}", ""]
    groups: list[tuple[str | None, pd.DataFrame]] = [(None, df)]
    if len(exp.columns) > 1 and "column_label" in df.columns:
        groups = [(c.label, df[df["column_label"] == c.label]) for c in exp.columns]
    for label, part in groups:
        if label is not None:
            lines += [f"{heading}# {label}", ""]
        if part.empty or part[response].notna().sum() == 0:
            lines += ["No finished trials yet.", ""]
            continue
        if exp.design == "factorial":
            lines += _factorial_md(exp, part, tricks, response)
        else:
            lines += _loo_md(part, tricks, response)
    return "\n".join(lines).rstrip() + "\n"

