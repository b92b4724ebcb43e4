"""The gate's ``invariant`` checks: what a cell's trials applied, baseline vs now.

A trial stores facts measured on the objects that trained it (``metrics["applied"]``,
:mod:`harness.applied`): parameter values decayed against Sec 3.1's no-bias-decay
rule, BN layers starting at gamma 0, the schedule's mean learning rate, the first training
batch's mean and standard deviation, the targets' mean largest probability (label smoothing,
mixup). They do not depend on seed noise, so a difference is
not weighed against noise: it fails the cell's invariant check at every scale (smoke
included), outside Holm's family (nothing random is tested). This is the check that sees a
broken trick whose accuracy effect a proxy cannot resolve: weight decay on BN gammas, or
inputs left unnormalised (the first BN absorbs the scale), cost no measurable top-1 at
``local``.

* counts (``EXACT``) must be equal, seed by seed or, for a seed the baseline lacks, to the
  value every baseline seed agrees on;
* ``lr_mean`` (``RELATIVE``) within a relative ``1e-6`` (float summation order);
* the first batch's statistics (``SAME_SEED``) within an absolute tolerance, on seeds both
  sides ran on one hardware class (one batch is a sample: another seed draws other images,
  and another device may draw from other generator streams, e.g. mixup's on a GPU);
* a fine-tuning trial's ``backbone_rms`` (``TRAINED``: the network a whole backbone trial
  trained) within ``1e-4`` on seeds both sides ran, only where the determinism tier applies
  (CPU, one recorded class, precision and torch version: a GPU's retrained backbone differs).
Every stored trial also says its global batch, base learning rate, epochs run and parameter
count (Sec 3.1's batch and LR scaling, the schedule's length, the architecture:
:func:`harness.regress.baseline.record_facts`), so those are compared for trials of any age.
A fact one side lacks (a baseline frozen before it was recorded) is not compared. The
cell's effective precision is one more fact (:func:`invariant_check`'s ``precision``), always
recorded, compared when both sides ran on one recorded hardware class.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from harness.regress.checks import Check
from harness.statistics import Drop

__all__ = ["EXACT", "RELATIVE", "SAME_SEED", "TRAINED", "invariant_check"]

EXACT = ("decayed_1d", "undecayed_nd", "zero_gamma_bns", "global_batch", "epochs", "params")
RELATIVE = {"lr_mean": 1e-6, "base_lr": 1e-9}
# normalised inputs have unit scale; the same seed draws the same batches (and mixup
# lambdas), so only float differences between machines of one class remain (far below this)
SAME_SEED = {"input_mean": 0.02, "input_std": 0.02, "target_max": 1e-3}
# facts of a whole training run (a fine-tune's backbone is a trained network): equal on the
# same seed only where the run is bit-deterministic (the determinism tier: CPU, one recorded
# class, precision and torch; GPU kernels are not), within an absolute tolerance
TRAINED = {"backbone_rms": 1e-4}


def _facts(trials: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
    return {int(t["seed"]): t["applied"] for t in trials if isinstance(t.get("applied"), dict)}


def _differs(key: str, b: Any, n: Any) -> bool:
    if key in EXACT:
        return int(b) != int(n)
    if key in RELATIVE:
        return abs(float(n) - float(b)) > RELATIVE[key] * max(abs(float(b)), 1e-12)
    return not math.isclose(float(n), float(b), rel_tol=0.0, abs_tol={**SAME_SEED, **TRAINED}[key])


def _baseline_value(key: str, seed: int, base: dict[int, dict[str, Any]]) -> Any:
    """The baseline's value of ``key`` for ``seed``: its own seed's, else (seed-free facts)
    the one value all baseline seeds agree on; None when there is none to compare."""
    if seed in base:
        return base[seed].get(key)
    if key in SAME_SEED or key in TRAINED:
        return None
    values = [f[key] for f in base.values() if key in f]
    return values[0] if values and all(v == values[0] for v in values) else None


def invariant_check(row: str, column: str, base: Sequence[dict[str, Any]],
                    now: Sequence[dict[str, Any]], same_class: bool = True,
                    precision: tuple[str | None, str | None] | None = None,
                    deterministic: bool = False) -> Check | None:
    """One cell's invariant check (None when there is nothing to compare); the batch facts
    only when ``same_class`` (both sides on one hardware class), the facts of a trained
    network (``TRAINED``) only when ``deterministic`` (the determinism tier applies). ``precision``: the cell's
    effective precision (baseline, now) when both ran on one hardware class: the same
    request resolved to another precision (fp16 to fp32, say) is a change of what ran."""
    bf, nf = _facts(base), _facts(now)
    compared: set[str] = set()
    diffs: dict[str, list[str]] = {}
    if precision is not None and all(precision):
        compared.add("precision")
        if precision[0] != precision[1]:
            diffs["precision"] = [f"{precision[0]} -> {precision[1]}"]
    if not (bf and nf) and not compared:
        return None
    keys = (*EXACT, *RELATIVE, *(SAME_SEED if same_class else ()),
            *(TRAINED if deterministic and same_class else ()))
    for seed, facts in sorted(nf.items()):
        for key in keys:
            b = _baseline_value(key, seed, bf)
            if b is None or key not in facts:
                continue
            compared.add(key)
            if _differs(key, b, facts[key]):
                diffs.setdefault(key, []).append(f"seed {seed}: {b:.4g} -> {facts[key]:.4g}")
    if not compared:
        return None
    chk = Check("invariant", f"{row} / {column}", "applied", ((row, column),),
                n_base=len(bf), n_now=len(nf))
    chk.drop = Drop(float(len(diffs)), math.nan, math.nan, math.nan, math.nan, math.nan, 1.0,
                    "regressed" if diffs else "unclear")
    chk.base, chk.now = float(len(compared)), float(len(compared) - len(diffs))
    chk.note = ("; ".join(f"{k} changed ({', '.join(v[:2])}{', ...' if len(v) > 2 else ''})"
                          for k, v in diffs.items())
                if diffs else f"{len(compared)} facts as in the baseline ({', '.join(sorted(compared))})")
    return chk
