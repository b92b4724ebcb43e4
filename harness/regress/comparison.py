"""The gate's comparison: thresholds per scale, per-cell verdicts, the night's checks.

Pure: dicts in, verdicts out, nothing read or trained, so it is tested on hand-made numbers.
Both sides are per-seed entries in the baseline file's format (``seed``, ``status``, the
gated metric, ``img_per_s`` and per-epoch ``img_per_s_epochs``, ``device``, ``precision``,
``requested_precision``, ``torch_version``; :mod:`harness.regress.baseline`). The
statistics are :mod:`harness.regress.checks`'s; what may be compared with what is
:mod:`harness.regress.identity`'s.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from harness.errors import unknown
from harness.metrics import number
from harness.regress.checks import (Check, Looks, NEVER, cell_check, column_noise, decide,
                                    mechanism_check, model_check, speed_check, trick_checks)
from harness.regress.identity import (Identity, accuracy_comparable, determinism_applies,
                                      identity, speed_comparable)
from harness.regress.invariants import invariant_check

__all__ = ["Key", "Trick", "stacked_tricks", "Thresholds", "THRESHOLDS", "thresholds_for",
           "CellVerdict", "FAIL_VERDICTS", "Evaluation", "cell_device", "baseline_cells", "evaluate", "compare", "run_night",
           "More"]

Key = tuple[str, str]  # (row, column)
MECHANISM = "logit_gap"  # the per-trick mechanism metric (Sec 5.2's mean logit gap)
FAIL_VERDICTS = ("regression", "missing", "failed")


@dataclass(frozen=True)
class Trick:
    """One trick the gate checks: the cells of ``name`` against those of ``parent``, one
    pair a model. A stacked table (Tables 4-9): a row vs its parent row in each column; a
    table with a ``reference_column`` (Table 3): a column vs that column in each row."""

    name: str
    parent: str
    pairs: tuple[tuple[Key, Key], ...]  # (trick cell, parent cell)


def stacked_tricks(parents: dict[str, str], keys: list[Key]) -> list[Trick]:
    """Row -> parent row (a stacked table) as tricks over the columns of ``keys``."""
    columns = list(dict.fromkeys(k[1] for k in keys))
    return [Trick(row, parent, tuple(((row, c), (parent, c)) for c in columns))
            for row, parent in parents.items()]


@dataclass(frozen=True)
class Thresholds:
    """How far a night may fall before the gate fails, and how sure it must be.

    floor: smallest drop of a cell's metric (top-1, mAP, mIoU) that fails, in points.
    pooled_floor: the same for a model's mean drop and for a trick's lost delta.
    speed_frac: smallest fractional slowdown of a cell's training images/s that fails.
    alpha: family-wise error of a night (one-sided, Holm over every check, spent over looks).
    band: a check with raw p below this that is not a regression gets more seeds (rerun).
    """

    floor: float
    pooled_floor: float
    speed_frac: float
    alpha: float = 0.025
    band: float = 0.02


THRESHOLDS: dict[str, Thresholds] = {
    # Smoke trains a few iterations on 256 synthetic images and tests on 128 (one image is
    # 0.78 points): accuracy is plumbing noise, so it never gates (floor 100 points). Its
    # trials last about a second: only a halving of the speed counts.
    "smoke": Thresholds(floor=NEVER, pooled_floor=NEVER, speed_frac=0.5),
    # Local: Fashion-MNIST (10,000 test images: ~0.3 points of sampling noise per seed at
    # ~90%) on shared CPUs: a cell must fall a point, a model's mean or a trick's delta a
    # quarter point (pooling over 6 cells halves the noise or better); 10% of speed.
    "local": Thresholds(floor=1.0, pooled_floor=0.25, speed_frac=0.10),
    # Paper: ImageNet on a dedicated GPU; 0.3 points is the size of the paper's smaller
    # gains (Table 5: ResNet-50-C +0.21, -D +0.29), so a drop that large erases a trick.
    "paper": Thresholds(floor=0.3, pooled_floor=0.1, speed_frac=0.05),
}


def thresholds_for(scale: str) -> Thresholds:
    if scale not in THRESHOLDS:
        raise unknown("scale (no regression thresholds)", scale, THRESHOLDS)
    return THRESHOLDS[scale]


@dataclass
class CellVerdict:
    """One cell's comparison. ``verdict`` is the accuracy verdict: pass | improved |
    regression | rerun | undecided | not comparable | missing | failed | new;
    ``speed_verdict``: pass | improved | regression | rerun | undecided | not comparable |
    not checked (``--no-speed``) |
    n/a; ``determinism``: same | computation changed | not checked (why) | n/a."""

    row: str
    column: str
    verdict: str
    base_mean: float | None = None
    now_mean: float | None = None
    delta: float | None = None
    p: float | None = None  # one-sided p of the cell's drop
    floor: float | None = None
    n_base: int = 0
    n_now: int = 0
    speed_verdict: str = "n/a"
    base_speed: float | None = None  # median images/s
    now_speed: float | None = None
    speed_delta: float | None = None  # fractional change, now / base - 1
    speed_p: float | None = None
    base_device: str | None = None
    now_device: str | None = None
    base_class: str | None = None
    now_class: str | None = None
    base_precision: str | None = None
    now_precision: str | None = None
    determinism: str = "n/a"
    changed_seeds: list[int] = field(default_factory=list)
    note: str = ""
    speed_note: str = ""
    metric: str = "top1"  # the gated metric: top1, or a transfer table's map / miou
    strict_determinism: bool = False

    @property
    def cell(self) -> str:
        return f"{self.row} / {self.column}"

    @property
    def computation_changed(self) -> bool:
        return self.determinism == "computation changed"

    @property
    def failed(self) -> bool:
        return (self.verdict in FAIL_VERDICTS or self.speed_verdict == "regression"
                or (self.strict_determinism and self.computation_changed))

    def reason(self) -> str:
        """One phrase saying why the cell fails (empty when it passes)."""
        parts = []
        if self.verdict == "regression":
            parts.append(f"{self.metric} {self.now_mean:.2f} < baseline {self.base_mean:.2f} "
                         f"(drop {-self.delta:.2f} >= {self.floor:g}, p {self.p:.2g})")
        elif self.verdict in ("missing", "failed"):
            parts.append(f"{self.verdict}" + (f" ({self.note})" if self.note else ""))
        if self.speed_verdict == "regression":
            parts.append(f"speed {self.now_speed:.1f} img/s vs baseline {self.base_speed:.1f} "
                         f"({self.speed_delta * 100:+.1f}%, p {self.speed_p:.2g})")
        if self.strict_determinism and self.computation_changed:
            parts.append(f"computation changed (seeds {self.changed_seeds})")
        return "; ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {"cell": self.cell, **asdict(self), "failed": self.failed}


@dataclass
class Evaluation:
    """One look: the per-cell verdicts and every check of the family."""

    cells: list[CellVerdict]
    checks: list[Check]
    look: int = 1
    alpha: float = 0.0  # this look's nominal level
    flagged: dict = field(default_factory=dict)  # check key -> the look it was first rejected at
    seeded: dict = field(default_factory=dict)  # cell -> the last look that brought it seeds

    def confirmations(self) -> dict[str, list[str]]:
        """Checks rejected at a look before the last (``run_night``), by what came of them:
        ``confirmed`` (rejected again after their cells got more seeds), ``unconfirmed``
        (a regression because no seeds came: budget, seeds or looks ran out, or the night
        failed first) or ``cleared`` (passed with the seeds that came); one that ended
        undecided is listed among the undecided."""
        out: dict[str, list[str]] = {"confirmed": [], "unconfirmed": [], "cleared": []}
        for c in self.checks:
            if c.key not in self.flagged:
                continue
            more = any(self.seeded.get(cell, 0) > self.flagged[c.key] for cell in c.cells)
            what = (("confirmed" if more else "unconfirmed") if c.failed
                    else "cleared" if c.outcome in ("pass", "improved") else None)
            if what:
                out[what].append(f"{c.kind} {c.name}")
        return out

    @property
    def failing(self) -> bool:
        """The night has failed already: no more seeds can change that."""
        return any(v.failed for v in self.cells) or any(c.failed for c in self.checks)

    def rerun_cells(self) -> list[Key]:
        """Cells that a check to confirm or in the rerun band wants more seeds for (those to
        confirm first, then the most suspicious)."""
        out: dict[Key, None] = {}
        want = (c for c in self.checks if c.outcome in ("confirm", "rerun"))
        for c in sorted(want, key=lambda c: (c.outcome != "confirm", c.p)):
            for key in c.cells:
                out.setdefault(key)
        return list(out)


# ---- helpers ----------------------------------------------------------------------------
def _by_seed(trials: list[dict[str, Any]], key: str) -> dict[int, float]:
    out = {}
    for t in trials:
        v = number(t.get(key))
        if v is not None:
            out[int(t["seed"])] = v
    return out


def _speed_by_seed(trials: list[dict[str, Any]]) -> dict[int, float]:
    """One training speed a trial: the mean of its per-epoch images/s when recorded, else
    its own images/s (the epochs of one trial are not independent repeats)."""
    out = {}
    for t in trials:
        epochs = [v for v in (number(x) for x in (t.get("img_per_s_epochs") or [])) if v is not None]
        v = sum(epochs) / len(epochs) if epochs else number(t.get("img_per_s"))
        if v is not None and v > 0:
            out[int(t["seed"])] = v
    return out


def cell_device(trials: list[dict[str, Any]]) -> str | None:
    """The device of a cell's trials: one string, or 'mixed: a | b' when they differ."""
    devices = sorted({t["device"] for t in trials if t.get("device")})
    if not devices:
        return None
    return devices[0] if len(devices) == 1 else "mixed: " + " | ".join(devices)


def _problem(now_trials: list[dict[str, Any]], metric: str = "top1") -> tuple[str, str] | None:
    """('failed'|'missing', note) when a cell's trials did not all finish, else None."""
    if not now_trials:
        return "missing", "no trials"
    bad = [t for t in now_trials if t.get("status") in ("failed", "diverged")]
    if bad:
        return "failed", ", ".join(f"seed {t.get('seed')} {t.get('status')}" for t in bad)
    missing = [t for t in now_trials if t.get("status") != "done"]
    if missing:
        return "missing", ", ".join(f"seed {t.get('seed')} {t.get('status', 'missing')}"
                                    for t in missing)
    if not _by_seed(now_trials, metric):
        return "failed", f"done without a {metric} value"
    return None


def baseline_cells(baseline: dict[str, Any]) -> dict[Key, dict[str, Any]]:
    """The baseline's (entry's) cells keyed by (row, column)."""
    return {(c["row"], c["column"]): c for c in baseline["cells"]}


@dataclass
class _Cell:
    key: Key
    verdict: CellVerdict
    base: list[dict[str, Any]]
    now: list[dict[str, Any]]
    bid: Identity | None = None
    nid: Identity | None = None
    accuracy: bool = False
    speed: bool = False


def _determinism(c: _Cell, metric: str) -> None:
    v = c.verdict
    ok, why = determinism_applies(c.bid, c.nid)
    if not ok:
        v.determinism = f"not checked ({why})"
        return
    b, n = _by_seed(c.base, metric), _by_seed(c.now, metric)
    common = sorted(set(b) & set(n))
    if not common:
        v.determinism = "not checked (no common seed)"
        return
    v.changed_seeds = [s for s in common if b[s] != n[s]]
    v.determinism = "computation changed" if v.changed_seeds else "same"


def _prepare(baseline: dict[str, Any], now: dict[Key, list[dict[str, Any]]], metric: str,
             software: str | None, strict: bool) -> list[_Cell]:
    base = baseline_cells(baseline)
    req_of = {k: next((t.get("requested_precision") for t in ts if t.get("requested_precision")), None)
              for k, ts in now.items()}
    base_pool = [dict(t, requested_precision=t.get("requested_precision") or req_of.get(k))
                 for k, c in base.items() for t in c.get("trials", []) if t.get("status", "done") == "done"]
    now_pool = [t for ts in now.values() for t in ts if t.get("status") == "done"]
    out = []
    for key in list(base) + [k for k in now if k not in base]:
        row, col = key
        bcell = base.get(key)
        now_trials = now.get(key, [])
        done_now = [t for t in now_trials if t.get("status") == "done"]
        req = req_of.get(key)
        b_trials = [dict(t, requested_precision=t.get("requested_precision") or req)
                    for t in (bcell or {}).get("trials", []) if t.get("status", "done") == "done"]
        bv, nv = _by_seed(b_trials, metric), _by_seed(done_now, metric)
        v = CellVerdict(row=row, column=col, verdict="pass", n_base=len(bv), n_now=len(nv),
                        base_mean=_mean(bv.values()), now_mean=_mean(nv.values()), metric=metric,
                        strict_determinism=strict, base_device=cell_device(b_trials),
                        now_device=cell_device(done_now))
        c = _Cell(key, v, b_trials, done_now)
        out.append(c)
        problem = _problem(now_trials, metric)
        if bcell is None:
            v.note = "not in the baseline"
        if problem is not None:
            v.verdict, note = problem
            v.note = "; ".join(x for x in (note, v.note) if x)
            continue
        if v.base_mean is None:
            v.verdict = "new"
            continue
        v.delta = v.now_mean - v.base_mean
        c.bid, c.nid = identity(b_trials, software, base_pool), identity(done_now, pool=now_pool)
        v.base_class, v.now_class = c.bid.hardware, c.nid.hardware
        v.base_precision, v.now_precision = c.bid.precision, c.nid.precision
        c.accuracy, why = accuracy_comparable(c.bid, c.nid)
        if not c.accuracy:
            v.verdict, v.note = "not comparable", why
        c.speed, v.speed_note = speed_comparable(c.bid, c.nid)
        v.speed_verdict = "pending" if c.speed else "not comparable"
        _determinism(c, metric)
    return out


def _mean(xs) -> float | None:
    xs = list(xs)
    return sum(xs) / len(xs) if xs else None


# ---- the evaluation ---------------------------------------------------------------------
def evaluate(baseline: dict[str, Any], now: dict[Key, list[dict[str, Any]]],
             thresholds: Thresholds, *, parents: dict[str, str] | None = None,
             looks: Looks | None = None, look: int = 1, strict_determinism: bool = False,
             speed: bool = True, last_look: bool | None = None,
             fixed: dict[tuple[str, str, str], str] | None = None,
             models: dict[Key, str] | None = None,
             tricks: list[Trick] | None = None,
             flagged: frozenset[tuple[str, str, str]] = frozenset()) -> Evaluation:
    """Every cell's verdict and every check of one look.

    ``baseline``: a baseline entry (``cells``, optional ``provenance``); ``now`` maps (row,
    column) to per-seed dicts (seed, status, metric, img_per_s, device, precision ...);
    ``parents``: row -> the row its trick is measured against (a stacked table's tricks, over
    its columns); ``tricks``: more tricks as pairs of cells (Table 3's columns vs its
    reference column); neither: no per-trick checks; ``looks``/``look``: where the night is in its looks (default: one look
    only, so the rerun band is reported as ``undecided``); ``fixed``: outcomes decided at
    earlier looks (check key -> outcome), kept as they were; ``flagged``: checks rejected at
    an earlier look, whose rejection now is confirmed (:func:`decide`); ``speed=False``: no speed
    check at all (``regress --no-speed``: a shared runner whose load is not the baseline's);
    ``models``: the model each cell trains (a label; default its column), the group its seed
    noise is pooled in and its model check pools over (Tables 2, 3, 5 have the models in
    their rows: pooling by column would mix models whose seed SDs differ threefold).
    """
    th = thresholds
    metric = baseline.get("metric", "top1")  # baselines before transfer gating: top-1
    software = ((baseline.get("provenance") or {}).get("versions") or {}).get("torch_version")
    looks = looks or Looks(1, 1, 1, 1)
    alpha = looks.alpha(look, th.alpha)
    last = look >= looks.count if last_look is None else last_look
    cells = _prepare(baseline, now, metric, software, strict_determinism)
    if not speed:
        for c in cells:
            c.speed = False
            if c.verdict.speed_verdict == "pending":
                c.verdict.speed_verdict, c.verdict.speed_note = "not checked", "--no-speed"
    usable = [c for c in cells if c.accuracy]
    model = {c.key: (models or {}).get(c.key, c.key[1]) for c in cells}
    groups = list(dict.fromkeys(model[c.key] for c in usable))
    noise = {g: column_noise({(side, c.key): list(vals.values())
                              for c in usable if model[c.key] == g
                              for side, vals in (("b", _by_seed(c.base, metric)),
                                                 ("n", _by_seed(c.now, metric)))})
             for g in groups}
    checks: list[Check] = []
    vals = {c.key: (_by_seed(c.base, metric), _by_seed(c.now, metric)) for c in usable}
    for c in usable:
        checks.append(cell_check(*c.key, metric, *vals[c.key], noise[model[c.key]], th.floor, alpha))
    for g in groups:
        chk = model_check(g, metric, {k: vals[k] for k in vals if model[k] == g},
                          noise[g], th.pooled_floor, alpha)
        if chk is not None:
            checks.append(chk)
    tricks = list(tricks or ()) + stacked_tricks(parents or {}, [c.key for c in usable])
    for t in tricks:
        sides = _trick_sides(t, vals)
        checks += trick_checks(t.name, t.parent, metric, sides, {p: noise[model[p[0]]] for p in sides},
                               th.pooled_floor, alpha, cells={p: p for p in sides})
    checks += _mechanism_checks(usable, tricks, th, alpha)
    checks += [chk for c in cells for chk in [invariant_check(*c.key, c.base, c.now, _same_class(c),
                                                              _precisions(c), _deterministic(c))] if chk]
    checks += _speed_checks([c for c in cells if c.speed], th, alpha, model)
    for chk in checks:
        chk.look = look
    decide(checks, alpha, th.band, last, fixed, flagged)
    _fill_cells(cells, checks)
    return Evaluation([c.verdict for c in cells], checks, look, alpha)


def _same_class(c: _Cell) -> bool:
    """Both sides of ``c`` on one hardware class (their first batches are comparable)."""
    return (c.bid is not None and c.nid is not None and c.bid.hardware is not None
            and c.bid.hardware == c.nid.hardware)


def _deterministic(c: _Cell) -> bool:
    """Both sides of ``c`` where the determinism tier applies (same seed, same numbers)."""
    return c.bid is not None and c.nid is not None and determinism_applies(c.bid, c.nid)[0]


def _precisions(c: _Cell) -> tuple[str | None, str | None] | None:
    """The cell's effective precision on each side, when both ran on one hardware class with
    the class recorded (a legacy device string cannot say the request was resolved alike)."""
    if not _same_class(c) or not (c.bid.recorded and c.nid.recorded):
        return None
    if "?" in (c.bid.precision or "?") or "?" in (c.nid.precision or "?"):
        return None  # a TF32 policy not recorded: not a fact to compare
    return c.bid.precision, c.nid.precision


def _trick_sides(t: Trick, vals: dict[Key, tuple[dict, dict]]
                 ) -> dict[tuple[Key, Key], tuple[dict, dict, dict, dict]]:
    """(trick cell, parent cell) -> (trick base, parent base, trick now, parent now) for the
    pairs of ``t`` whose cells are both in ``vals`` (cell -> (base, now) values by seed)."""
    return {(k, pk): (vals[k][0], vals[pk][0], vals[k][1], vals[pk][1])
            for k, pk in t.pairs if k in vals and pk in vals}


def _mechanism_checks(cells: list[_Cell], tricks: list[Trick], th: Thresholds,
                      alpha: float) -> list[Check]:
    """One :func:`mechanism_check` per trick whose cells carry the mechanism metric on both
    sides (classification trials: the mean logit gap)."""
    vals = {c.key: (_by_seed(c.base, MECHANISM), _by_seed(c.now, MECHANISM)) for c in cells}
    out = []
    for t in tricks:
        sides = _trick_sides(t, vals)
        chk = mechanism_check(t.name, t.parent, MECHANISM, sides, alpha,
                              gating=th.pooled_floor < NEVER, cells={p: p for p in sides})
        if chk is not None:
            out.append(chk)
    return out


def _speed_checks(cells: list[_Cell], th: Thresholds, alpha: float,
                  model: dict[Key, str]) -> list[Check]:
    """Per cell (Mann-Whitney over trials) and per model (pooled log speed) speed checks."""
    out: list[Check] = []
    logs = {c.key: tuple({s: math.log(v) for s, v in _speed_by_seed(side).items()}
                         for side in (c.base, c.now)) for c in cells}
    for c in cells:
        b, n = (list(_speed_by_seed(side).values()) for side in (c.base, c.now))
        out.append(speed_check(*c.key, b, n, th.speed_frac, alpha))
    floor = -math.log(1.0 - th.speed_frac)
    for col in dict.fromkeys(model[k] for k in logs):
        mine = {k: v for k, v in logs.items() if model[k] == col}
        noise = column_noise({(side, key): list(v[i].values()) for key, v in mine.items()
                              for i, side in enumerate(("b", "n"))})
        chk = model_check(col, "log img_per_s", mine, noise, floor, alpha)
        if chk is not None:
            chk.kind = "speed-model"
            chk.note = f"mean log change of images/s over {len(mine)} cells (x{math.exp(chk.now):.3f})"
            out.append(chk)
    return out


def _fill_cells(cells: list[_Cell], checks: list[Check]) -> None:
    """Copy the cell and speed checks' outcomes into the cells' verdicts."""
    by = {(c.kind, c.cells[0]): c for c in checks if c.kind in ("cell", "speed")}
    for c in cells:
        v = c.verdict
        acc = by.get(("cell", c.key))
        if acc is not None:
            v.verdict, v.p, v.floor = acc.outcome, acc.p, acc.drop.floor
            if acc.note:
                v.note = "; ".join(x for x in (v.note, acc.note) if x)
        spd = by.get(("speed", c.key))
        if spd is not None:
            v.speed_verdict = spd.outcome
            v.base_speed, v.now_speed, v.speed_p = spd.base, spd.now, spd.p
            v.speed_delta = spd.now / spd.base - 1.0 if spd.base and spd.now is not None else None
            if spd.note:
                v.speed_note = spd.note


def compare(baseline: dict[str, Any], now: dict[Key, list[dict[str, Any]]],
            thresholds: Thresholds, **kwargs: Any) -> list[CellVerdict]:
    """The per-cell verdicts of :func:`evaluate` (one look)."""
    return evaluate(baseline, now, thresholds, **kwargs).cells


# Given the cells a rerun wants (most suspicious first) and the trials left in the budget,
# train or draw more seeds: (the whole of today's cells after it, trials added), or None.
More = Callable[[list[Key], int], "tuple[dict[Key, list[dict[str, Any]]], int] | None"]


def run_night(baseline: dict[str, Any], now: dict[Key, list[dict[str, Any]]],
              thresholds: Thresholds, *, looks: Looks, more: More | None, budget: int,
              parents: dict[str, str] | None = None, strict_determinism: bool = False,
              speed: bool = True, models: dict[Key, str] | None = None,
              tricks: list[Trick] | None = None
              ) -> tuple[Evaluation, dict[Key, list[dict[str, Any]]], int]:
    """One night as the gate decides it: look 1, then while checks are to confirm or in the
    rerun band, the night has not failed, looks remain and ``more`` brings seeds within
    ``budget`` trials, look again (outcomes decided earlier are kept; a check rejected
    before is a regression if rejected again). At the end, what is still in the band is
    ``undecided`` and what is still to confirm is a ``regression``. Returns (last
    evaluation, today's cells, trials added)."""
    kw: dict[str, Any] = {"parents": parents, "looks": looks, "strict_determinism": strict_determinism,
                          "speed": speed, "models": models, "tricks": tricks}
    ev = evaluate(baseline, now, thresholds, look=1, **kw)
    open_ = ("rerun", "confirm")
    fixed = {c.key: c.outcome for c in ev.checks if c.outcome not in open_}
    flagged = {c.key: 1 for c in ev.checks if c.outcome == "confirm"}
    seeded: dict[Key, int] = {}
    look, extra = 1, 0
    while more is not None and look < looks.count and ev.rerun_cells() and not ev.failing:
        got = more(ev.rerun_cells(), budget - extra)
        if got is None or got[1] == 0:
            break
        look += 1
        seeded.update({k: look for k, ts in got[0].items() if len(ts) > len(now.get(k, []))})
        now, n = got
        extra += n
        ev = evaluate(baseline, now, thresholds, look=look, fixed=fixed,
                      flagged=frozenset(flagged), **kw)
        fixed.update({c.key: c.outcome for c in ev.checks if c.outcome not in open_})
        flagged.update({c.key: look for c in ev.checks if c.outcome == "confirm" and c.key not in flagged})
    if any(c.outcome in open_ for c in ev.checks):  # budget or seeds ran out
        ev = evaluate(baseline, now, thresholds, look=look, fixed=fixed, flagged=frozenset(flagged),
                      last_look=True, **kw)
    ev.flagged, ev.seeded = flagged, seeded
    return ev, now, extra
