"""Verdict of one trick (a row vs its parent) against the paper's delta."""
from __future__ import annotations

import math
from dataclasses import dataclass

from .intervals import Interval, interval_at

__all__ = ["VERDICT_NAMES", "Verdict", "classify"]

#: ``reproduced``/``contradicted``: the 95% interval excludes 0 on the paper's / the other
#: side; ``differs``: excludes 0 and the paper has no number; ``no effect``: the 90%
#: interval lies inside +-margin (TOST at 5%); ``undecided``: none of these (more seeds);
#: ``not run``: a side has no finite value.
VERDICT_NAMES = ("reproduced", "contradicted", "differs", "no effect", "undecided", "not run")


@dataclass(frozen=True)
class Verdict:
    """``name`` in VERDICT_NAMES; ``vs_paper``: "smaller than the paper's" / "larger than
    the paper's" when the 95% interval excludes the paper's delta, else None; ``note``: one
    line for a report."""

    name: str
    vs_paper: str | None
    note: str


def _fmt(iv: Interval) -> str:
    how = "paired" if iv.paired else "pooled"
    return (f"{iv.mean:+.2f} [{iv.lo:+.2f}, {iv.hi:+.2f}] "
            f"({iv.level:.0%} t, df {iv.df:g}, {how})")


def _vs_paper(iv: Interval, paper: float) -> str | None:
    """Compare the 95% interval with the paper's delta along the paper's sign: with
    ``s = sign(paper)`` (1 if 0), "smaller" when ``s*x < |paper|`` for the whole interval."""
    s = -1.0 if paper < 0 else 1.0
    lo, hi = sorted((s * iv.lo, s * iv.hi))
    if hi < s * paper:
        return "smaller than the paper's"
    if lo > s * paper:
        return "larger than the paper's"
    return None


def classify(iv95: Interval, iv90: Interval | None, paper_delta: float | None,
             margin: float | None) -> Verdict:
    """Verdict from the 95% interval (sign test) and the 90% interval (equivalence).

    In order: ``not run`` if a side had no value; 95% interval excludes 0 ->
    ``reproduced`` (paper's sign), ``contradicted`` (other sign, or the paper's delta is
    0), ``differs`` (paper delta None/NaN); 90% interval inside ``(-margin, margin)`` ->
    ``no effect`` (two one-sided tests at 5% each); else ``undecided``. ``iv90=None`` uses
    ``iv95`` at level 0.90; ``margin=None`` skips the equivalence test.
    """
    if not math.isfinite(iv95.mean):
        return Verdict("not run", None, "no finite value on one side")
    if iv90 is None:
        iv90 = interval_at(iv95, 0.90)
    has_paper = paper_delta is not None and math.isfinite(paper_delta)
    vs = _vs_paper(iv95, float(paper_delta)) if has_paper and math.isfinite(iv95.lo) else None
    paper = f"paper {paper_delta:+.2f}" if has_paper else "no paper number"
    note = f"{_fmt(iv95)}; {paper}"
    if not math.isfinite(iv95.lo):
        return Verdict("undecided", vs, f"{note}; no interval (no df)")
    if iv95.lo > 0 or iv95.hi < 0:
        if not has_paper:
            return Verdict("differs", None, note)
        same = (iv95.lo > 0 and paper_delta > 0) or (iv95.hi < 0 and paper_delta < 0)
        return Verdict("reproduced" if same else "contradicted", vs, note)
    if margin is not None and -margin < iv90.lo and iv90.hi < margin:
        return Verdict("no effect", vs, f"{note}; 90% inside +-{margin:g}")
    return Verdict("undecided", vs, note)
