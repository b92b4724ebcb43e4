"""The gate's decisions: machine classes in baseline files, what is not comparable, the
family-wise control, the pooled per-model and per-trick checks, the rerun band and the
determinism tier. Stores are filled with chosen numbers (tests/test_regress.py's helpers);
nothing trains."""
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from harness.errors import HarnessError
from harness.experiments import load_experiment, make_plan
from harness.regress import (THRESHOLDS, GateOptions, Looks, Trick, column_tricks, compare,
                             evaluate, load_baseline, regress, resolve_baseline, run_night,
                             select_entry)
from harness.regress.checks import Check, decide
from harness.scales import get_scale
from harness.statistics import Drop
from test_regress import (DEVICE, TABLE, TORCH, VICTIM, VICTIM_NAME, by_cell, cli, fill,
                          freeze_from, now_from, plan_for, top1_of, victim_index, work)  # noqa: F401

OTHER = "cpu:Other CPU [fma avx2 avx512f avx512_bf16 amx_bf16] AVX512 x1 | fp32=ieee"
THIRD = "cpu:Third CPU [fma] DEFAULT x1 | fp32=ieee"
LEGACY = "cpu:x86_64 x1"  # what every trial recorded before harness.machine


def _json(work: Path) -> dict:
    return json.loads(max((work / "reports" / "regress").glob("*.json"),
                          key=lambda p: p.stat().st_mtime_ns).read_text())


def _save(capsys, store: str, scale: str = "smoke") -> None:
    assert cli(capsys, "baseline", "save", TABLE, "--scale", scale, "--store", store)[0] == 0


# ---- machine classes in one baseline file ------------------------------------------------
def test_two_machine_classes_in_one_baseline_the_matching_one_chosen(work, capsys):
    """Saving on a second machine adds its entry to the same file; the gate compares each
    machine's run with its own entry, and a third machine exits 2 naming both classes."""
    plan = plan_for()
    fill(work / "a.sqlite", plan)
    fill(work / "b.sqlite", plan, device=lambda i, s: OTHER, speed=lambda i, s: 3000.0 + s,
         top1=lambda i, s: top1_of(i, s) + 5)
    _save(capsys, "a.sqlite")
    _save(capsys, "b.sqlite")
    data = load_baseline(work / "results" / "baselines" / "paper_table6-smoke.json")
    classes = [e["machine_class"] for e in data["entries"]]
    assert classes == [OTHER.split(" | ")[0], DEVICE.split(" | ")[0]]  # the last saved first
    _save(capsys, "a.sqlite")  # re-freezing a class replaces its entry, keeps the other
    data = load_baseline(work / "results" / "baselines" / "paper_table6-smoke.json")
    assert [e["machine_class"] for e in data["entries"]] == classes[::-1]
    for store, cls in (("a.sqlite", classes[1]), ("b.sqlite", classes[0])):
        rc, out, err = cli(capsys, "regress", TABLE, "--scale", "smoke", "--store", store, "--no-train")
        rep = _json(work)
        assert rc == 0, err
        assert rep["baseline_machine_class"] == cls == rep["machine_class"]
        assert {c["outcome"] for c in rep["checks"] if c["kind"] == "speed-model"} == {"pass"}
        assert {c["determinism"] for c in rep["cells"]} == {"same"}
    fill(work / "c.sqlite", plan, device=lambda i, s: THIRD)
    rc, _, err = cli(capsys, "regress", TABLE, "--scale", "smoke", "--store", "c.sqlite", "--no-train")
    assert rc == 2 and len(err.strip().splitlines()) == 1
    assert classes[0] in err and classes[1] in err and "--machine" in err
    rc, _, err = cli(capsys, "regress", TABLE, "--scale", "smoke", "--store", "c.sqlite", "--no-train",
                     "--machine", classes[1])
    assert rc == 0, err
    assert _json(work)["baseline_machine_class"] == classes[1]
    rc, _, err = cli(capsys, "regress", TABLE, "--scale", "smoke", "--store", "c.sqlite", "--no-train",
                     "--machine", "cpu:nowhere")
    assert rc == 2 and "'cpu:nowhere'" in err and classes[0] in err


def test_baseline_from_another_class_speed_not_comparable_exit_0(work, capsys):
    """The same stored smoke results against their own baseline whose device strings were
    edited to another machine: speed is 'not comparable' (with the reason), not a failure,
    and the same-precision accuracy is still compared."""
    plan = plan_for()
    fill(work / "s.sqlite", plan, epochs=5)
    _save(capsys, "s.sqlite")
    path = work / "results" / "baselines" / "paper_table6-smoke.json"
    data = json.loads(path.read_text())
    for cell in data["cells"]:
        cell["device"] = OTHER
        for t in cell["trials"]:
            t["device"] = OTHER
            t["img_per_s_epochs"] = [x * 3 for x in t["img_per_s_epochs"]]  # "3x faster there"
    data["machine_class"] = OTHER.split(" | ")[0]
    path.write_text(json.dumps(data))
    rc, out, err = cli(capsys, "regress", TABLE, "--scale", "smoke", "--store", "s.sqlite", "--no-train")
    assert rc == 0, err
    rep = _json(work)
    assert rep["baseline_selected_by"].startswith("the only entry")
    assert {c["speed_verdict"] for c in rep["cells"]} == {"not comparable"}
    assert all("hardware class differs" in c["speed_note"] for c in rep["cells"])
    assert not [c for c in rep["checks"] if c["kind"].startswith("speed")]  # nothing to test
    assert {c["verdict"] for c in rep["cells"]} == {"pass"}  # fp32 both sides: compared
    assert {c["determinism"] for c in rep["cells"]} == {"not checked (another hardware class)"}
    md = next((work / "reports" / "regress").glob("*.md")).read_text()
    assert "not comparable (hardware class differs" in md


def test_issue_bf16_run_vs_fp32_baseline_on_legacy_device_strings(work, capsys):
    """The issue: both sides recorded 'cpu:x86_64 x1'; the baseline's fp16 recipes ran fp32
    (no native bf16), today's bf16, and MobileNet is slower. The classes derived from the
    precisions differ: speed and accuracy are 'not comparable' and the gate passes."""
    plan = plan_for("local")
    k = victim_index(plan)
    fill(work / "a.sqlite", plan, device=lambda i, s: LEGACY, epochs=5)
    fill(work / "b.sqlite", plan, device=lambda i, s: LEGACY, precision=lambda i, s: "bf16", epochs=5,
         speed=lambda i, s: 740.0 if i == k else 2100.0, top1=lambda i, s: top1_of(i, s) - 3)
    _save(capsys, "a.sqlite", "local")
    rc, out, err = cli(capsys, "regress", TABLE, "--scale", "local", "--store", "b.sqlite", "--no-train")
    assert rc == 0, err
    rep = _json(work)
    assert rep["machine_class"] == "cpu:x86_64 x1 [native bf16: yes]"
    assert rep["baseline_machine_class"] == "cpu:x86_64 x1 [native bf16: no]"
    cells = {c["cell"]: c for c in rep["cells"]}
    assert cells[VICTIM_NAME]["speed_verdict"] == "not comparable"
    assert {c["verdict"] for c in rep["cells"]} == {"not comparable"}
    assert "precision differs: baseline fp32 vs now bf16" in cells[VICTIM_NAME]["note"]


def test_committed_format_1_baselines_still_load():
    """Every baseline committed under results/baselines/ loads (one entry, or a re-frozen
    file's entries for the AVX2 machine and this one); a format-1 file's fp16 cells have no recorded precision, so their accuracy is not comparable (a
    reason, no failure)."""
    root = Path(__file__).resolve().parents[1] / "results" / "baselines"
    files = sorted(root.glob("*.json"))
    assert files
    formats = {}
    for f in files:
        data = load_baseline(f)
        formats[f.name] = data["format"]
        assert data["format"] in (1, 2) and data["entries"]
        if len(data["entries"]) == 1:
            entry = select_entry(data, "cpu:anything")
            assert entry["selected_by"].startswith("the only entry") and entry["cells"]
        else:  # a re-frozen file keeps the old machine's entry beside the new one's
            for e in data["entries"]:
                assert select_entry(data, e["machine_class"])["machine_class"] == e["machine_class"]
    assert formats["paper_table6-local.json"] == 2  # re-frozen from the decisive run
    # a format-1 file (Table 5's as first committed, kept as a fixture when it was re-frozen)
    old = Path(__file__).resolve().parent / "data" / "format1-paper_table5-local.json"
    data = load_baseline(old)
    assert data["format"] == 1
    now = {(c["row"], c["column"]): [dict(t, precision="bf16", requested_precision="fp16")
                                     for t in c["trials"]] for c in data["cells"]}
    verdicts = compare(select_entry(data, None), now, THRESHOLDS["local"])
    assert {v.verdict for v in verdicts} == {"not comparable"}
    assert "baseline precision not recorded" in verdicts[0].note
    assert {v.speed_verdict for v in verdicts} == {"not comparable"}
    assert not any(v.failed for v in verdicts)


# ---- family-wise control -----------------------------------------------------------------
def _check(name: str, p: float, drop: float = 2.0, upper: float = 3.0, floor: float = 1.0) -> Check:
    return Check("cell", name, "top1", ((name, "c"),),
                 drop=Drop(drop, 0.5, drop / 0.5, 10, p, upper, floor, "unclear"))


def test_family_wise_holm_on_a_hand_made_family():
    """Holm at alpha 0.025 over five checks with p = .001, .004, .006, .03, .2: compare p(i)
    with alpha/(5-i+1) = .005, .00625, .00833, .0125, .025: the first three are rejected
    (the second's drop is below the floor: rerun), the fourth is not (p < band 0.05: rerun),
    the fifth passes. Before the last look a first rejection is ``confirm``; a check
    rejected at an earlier look (``flagged``) is a regression when rejected again. Ten checks at p = .004 each would all fail uncorrected; Holm rejects
    none (.004 > .0025) and sends them to the rerun band; on the last look, undecided."""
    checks = [_check("a", 0.001), _check("b", 0.004, drop=0.8), _check("c", 0.006),
              _check("d", 0.03), _check("e", 0.2)]
    decide(checks, alpha=0.025, band=0.05, last_look=True)
    assert [c.outcome for c in checks] == ["regression", "undecided", "regression", "undecided", "pass"]
    decide(checks, alpha=0.025, band=0.05, last_look=False)  # rejected before the last look:
    assert [c.outcome for c in checks] == ["confirm", "rerun", "confirm", "rerun", "pass"]  # confirm
    decide(checks, alpha=0.025, band=0.05, last_look=False, flagged=frozenset({checks[0].key}))
    assert [c.outcome for c in checks][:3] == ["regression", "rerun", "confirm"]
    ten = [_check(str(i), 0.004) for i in range(10)]
    decide(ten, alpha=0.025, band=0.05, last_look=False)
    assert {c.outcome for c in ten} == {"rerun"}
    decide(ten, alpha=0.025, band=0.05, last_look=True)
    assert {c.outcome for c in ten} == {"undecided"}
    ok = _check("ok", 0.01, drop=0.2, upper=0.9)  # upper bound below the floor: a clear pass
    decide([ok], alpha=0.025, band=0.05, last_look=False)
    assert ok.outcome == "pass"


def test_looks_spend_alpha_pocock_type():
    """One look uses alpha itself; three looks (2, 4, 6 seeds vs a 2-seed baseline) each get a
    smaller nominal level, decreasing (Pocock-type on unequal information increments)."""
    assert Looks(2, 2, 2, 2).alpha(1, 0.025) == 0.025
    levels = [Looks(2, 2, 6, 2).alpha(k, 0.025) for k in (1, 2, 3)]
    assert all(0 < a < 0.025 for a in levels) and levels == sorted(levels, reverse=True)
    assert sum(levels) > 0.025  # the looks are correlated: their union still spends 0.025


# ---- pooled checks on synthetic examples -------------------------------------------------
def _cells(means: dict, seeds: int, jitter=(-0.05, 0.05, 0.0, 0.03, -0.03, 0.01)) -> dict:
    return {key: [{"seed": s, "status": "done", "top1": m + jitter[s % len(jitter)],
                   "img_per_s": 1000.0, "device": DEVICE, "precision": "fp32",
                   "torch_version": TORCH} for s in range(seeds)] for key, m in means.items()}


def _baseline(cells: dict) -> dict:
    return {"cells": [{"row": r, "column": c, "seeds": [t["seed"] for t in ts], "trials": ts}
                      for (r, c), ts in cells.items()]}


ROWS = {"base": None, "+ label smoothing": "base", "+ mixup": "+ label smoothing"}
COLS = ("ResNet-50-D", "MobileNet")


def _means(shift: dict | None = None) -> dict:
    """base 80, label smoothing +0.6, mixup +0.4 on top, in both models."""
    delta = {"base": 0.0, "+ label smoothing": 0.6, "+ mixup": 1.0}
    return {(r, c): 80.0 + j + delta[r] - (shift or {}).get((r, c), 0.0)
            for r in ROWS for j, c in enumerate(COLS)}


def test_trick_check_catches_a_vanished_delta():
    """Label smoothing silently stops working: its row equals its parent in every model
    (each cell 0.6 lower, below the cell floor of 1 point, and mixup's row with it). The
    cells pass; the per-trick check finds label smoothing's delta gone."""
    parents = {r: p for r, p in ROWS.items() if p}
    base = _baseline(_cells(_means(), 4))
    lost = {("+ label smoothing", c): 0.6 for c in COLS} | {("+ mixup", c): 0.6 for c in COLS}
    ev = evaluate(base, _cells(_means(lost), 4), THRESHOLDS["local"], parents=parents)
    outcomes = {(c.kind, c.name): c.outcome for c in ev.checks}
    assert outcomes[("trick", "+ label smoothing")] == "regression"
    assert outcomes[("trick", "+ mixup")] == "pass"  # mixup's own delta is intact
    assert {o for (k, _), o in outcomes.items() if k == "cell"} <= {"pass", "undecided"}
    trick = next(c for c in ev.checks if c.name == "+ label smoothing")
    assert math.isclose(trick.base, 0.6, abs_tol=0.05) and abs(trick.now) < 0.05
    same = evaluate(base, _cells(_means(), 4), THRESHOLDS["local"], parents=parents)
    assert not any(c.failed for c in same.checks)


def _trick_of(ev, name: str):
    return next(c for c in ev.checks if c.kind == "trick" and c.name == name)


def test_trick_check_of_a_reference_column_table():
    """Table 3's layout: the models in the rows, Efficient compared with the Baseline column.
    Efficient's tricks silently stop working (its cells equal Baseline's: each 0.6 lower,
    below the cell floor): the column's trick check fails, with the lost delta 0.6 by hand
    (mean over the two models of base delta 0.6 minus today's 0); an intact night passes."""
    models = ("ResNet-50", "MobileNet")
    means = {(m, c): 80.0 + j + (0.6 if c == "Efficient" else 0.0)
             for j, m in enumerate(models) for c in ("Baseline", "Efficient")}
    tricks = [Trick("Efficient", "Baseline",
                    tuple(((m, "Efficient"), (m, "Baseline")) for m in models))]
    kw = {"tricks": tricks, "models": {k: k[0] for k in means}}
    base = _baseline(_cells(means, 4))
    off = {k: v - (0.6 if k[1] == "Efficient" else 0.0) for k, v in means.items()}
    ev = evaluate(base, _cells(off, 4), THRESHOLDS["local"], **kw)
    trick = _trick_of(ev, "Efficient")
    assert trick.outcome == "regression"
    assert math.isclose(trick.drop.drop, 0.6, abs_tol=1e-9)
    assert set(trick.cells) == set(means)
    assert not any(v.failed for v in ev.cells)
    assert _trick_of(evaluate(base, _cells(means, 4), THRESHOLDS["local"], **kw),
                     "Efficient").outcome == "pass"


def test_a_clearly_negative_trick_gets_a_trick_gone_check_too():
    """A trick that costs 0.6 points in the baseline (label smoothing at ``local``) and stops
    working: its row rises to its parent's. The ``trick-gone`` check (toward 0 is the loss)
    fails with the drop 0.6 by hand. A trick whose cost grows by 0.6 instead (its row falls
    under the 1-point cell floor) fails the plain ``trick`` check, as before. A trick with no
    clear baseline delta gets no trick-gone check."""
    parents = {"+ ls": "base"}

    def means(cost):
        return {(r, c): 80.0 + j - (cost if r == "+ ls" else 0.0)
                for r in ("base", "+ ls") for j, c in enumerate(COLS)}
    base = _baseline(_cells(means(0.6), 4))
    for tonight, failing in ((0.0, "trick-gone"), (1.2, "trick")):
        ev = evaluate(base, _cells(means(tonight), 4), THRESHOLDS["local"], parents=parents)
        got = {c.kind: c for c in ev.checks if c.name == "+ ls"}
        assert set(got) == {"trick", "trick-gone"}
        assert got[failing].outcome == "regression"
        assert math.isclose(got[failing].drop.drop, 0.6, abs_tol=1e-9)
        other = ({"trick", "trick-gone"} - {failing}).pop()
        assert got[other].outcome != "regression"
    assert "rise toward 0" in got["trick-gone"].note
    flat = evaluate(_baseline(_cells(means(0.0), 4)), _cells(means(0.0), 4), THRESHOLDS["local"],
                    parents=parents)
    assert not any(c.kind == "trick-gone" for c in flat.checks)


def test_column_tricks_of_paper_table3():
    """The real Table 3 plan: Efficient vs Baseline on each of its three models."""
    plan = make_plan(load_experiment("paper_table3"), get_scale("smoke"), seeds=2)
    tricks = column_tricks(plan)
    assert [(t.name, t.parent) for t in tricks] == [("Efficient", "Baseline")]
    rows = [r.label for r in plan.experiment.rows]
    assert tricks[0].pairs == tuple(((r, "Efficient"), (r, "Baseline")) for r in rows)
    assert column_tricks(plan_for()) == []  # a stacked table's tricks are its rows


def test_model_check_catches_a_small_drop_of_every_cell():
    """Every MobileNet cell 0.5 lower (half the cell floor): no cell fails, the model's
    pooled check does; ResNet-50-D, unchanged, passes."""
    base = _baseline(_cells(_means(), 3))
    now = _cells(_means({(r, "MobileNet"): 0.5 for r in ROWS}), 3)
    ev = evaluate(base, now, THRESHOLDS["local"])
    outcomes = {(c.kind, c.name): c.outcome for c in ev.checks}
    assert outcomes[("model", "MobileNet")] == "regression"
    assert outcomes[("model", "ResNet-50-D")] == "pass"
    assert not any(v.failed for v in ev.cells)


# ---- the rerun band ----------------------------------------------------------------------
def _shifted(k: int):
    """The victim cell 1.1 points lower on seeds 0-1 (in the rerun band against a 2-seed
    baseline) and 1.6 lower on the seeds a rerun adds (a regression once they come)."""
    return lambda i, s: top1_of(i, s) - ((1.1 if s < 2 else 1.6) if i == k else 0.0)


def test_rerun_band_gets_more_seeds_then_decides(work, capsys):
    """Look 1 puts the victim in the rerun band; the gate trains two more seeds of that cell
    only, look 2 rejects it and two more seeds confirm it at look 3 (exit 1). With --budget 0 it cannot: the cell stays
    undecided and the gate passes (exit 0), naming it."""
    plan = plan_for("local")
    k = victim_index(plan)
    fill(work / "a.sqlite", plan)
    _save(capsys, "a.sqlite", "local")
    baseline = resolve_baseline(TABLE, TABLE, "local", None, None)
    trained = []

    def train(p, store, opts):
        trained.append({key: [t.seed for t in ts] for key, ts in p.trials.items()})
        fill(Path(store), p, top1=_shifted(k))

    r = regress(plan, baseline, store=str(work / "b.sqlite"), train=train, log=lambda m: None)
    assert r.exit_code == 1 and r.summary["failures"][0].startswith(VICTIM_NAME)
    # look 2 rejects it; before the last look that is confirmed with two more seeds (look 3)
    assert trained[1:] == [{VICTIM: [2, 3]}, {VICTIM: [4, 5]}] and r.summary["rerun_trials"] == 4
    assert r.summary["family"]["look"] == 3
    assert r.summary["confirmations"] == {"confirmed": [f"cell {VICTIM_NAME}"], "unconfirmed": [],
                                          "cleared": []}
    trained.clear()
    r = regress(plan, baseline, store=str(work / "c.sqlite"), train=train, log=lambda m: None,
                options=GateOptions(budget=0))
    assert r.exit_code == 0 and r.summary["status"] == "undecided"
    assert r.summary["undecided"] == [f"cell {VICTIM_NAME}"] and len(trained) == 1
    assert by_cell(r.verdicts)[VICTIM].verdict == "undecided"
    rc, out, err = cli(capsys, "regress", TABLE, "--scale", "local", "--store", "c.sqlite", "--no-train")
    assert rc == 0 and "UNDECIDED" in out and "undecided" in err, (out, err)


# ---- the determinism tier ----------------------------------------------------------------
def test_a_rejection_before_the_last_look_is_confirmed_or_cleared():
    """Tonight's two seeds of one cell are 1.6 points low (two bad seeds): look 1 rejects the
    cell and its model, and the night does not fail yet (``confirm``). The seeds the rerun
    brings are normal: the rejections clear and the night passes. Were they as low, the
    night would fail (test_rerun_band_gets_more_seeds_then_decides)."""
    base = _baseline(_cells(_means(), 3))
    victim = ("+ mixup", "ResNet-50-D")
    now = _cells(_means({victim: 1.6}), 2)
    looks = Looks(2, 2, 6, 3)
    first = evaluate(base, now, THRESHOLDS["local"], looks=looks)
    assert {(c.kind, c.name) for c in first.checks if c.outcome == "confirm"} == {
        ("cell", "+ mixup / ResNet-50-D"), ("model", "ResNet-50-D")}
    assert not first.failing and first.rerun_cells()[0] == victim
    normal = _cells(_means(), 4)

    def more(cells, left):
        got = {k: now[k] + ([dict(t, seed=t["seed"] + 10) for t in normal[k][:2]] if k in cells else [])
               for k in now}
        return got, 2 * len(cells)
    ev, _, extra = run_night(base, now, THRESHOLDS["local"], looks=looks, more=more, budget=20)
    assert not ev.failing and extra > 0
    assert ev.confirmations() == {"confirmed": [], "unconfirmed": [],
                                  "cleared": ["cell + mixup / ResNet-50-D", "model ResNet-50-D"]}
    # no seeds can come (no reruns, or the budget or the seeds ran out): the rejection stands,
    # listed as unconfirmed
    for give in (None, lambda cells, left: None):
        ev, _, extra = run_night(base, now, THRESHOLDS["local"], looks=looks, more=give, budget=20)
        assert ev.failing and extra == 0
        assert ev.confirmations() == {"confirmed": [], "cleared": [], "unconfirmed": [
            "cell + mixup / ResNet-50-D", "model ResNet-50-D"]}


def test_determinism_same_and_computation_changed(work, capsys):
    """Same machine class, precision and torch, same seeds: identical top-1 is 'same'; one
    seed 0.01 points off is 'computation changed', a note (exit 0), or a failure naming the
    cell with --strict-determinism (exit 1). Another torch version is not checked."""
    plan = plan_for()
    k = victim_index(plan)
    fill(work / "a.sqlite", plan)
    _save(capsys, "a.sqlite")
    rc, _, err = cli(capsys, "regress", TABLE, "--scale", "smoke", "--store", "a.sqlite", "--no-train")
    assert rc == 0 and {c["determinism"] for c in _json(work)["cells"]} == {"same"}
    fill(work / "b.sqlite", plan, top1=lambda i, s: top1_of(i, s) + (0.01 if (i, s) == (k, 1) else 0))
    rc, out, err = cli(capsys, "regress", TABLE, "--scale", "smoke", "--store", "b.sqlite", "--no-train")
    rep = _json(work)
    assert rc == 0 and rep["computation_changed"] == [VICTIM_NAME] and "computation changed" in out
    cell = next(c for c in rep["cells"] if c["cell"] == VICTIM_NAME)
    assert cell["determinism"] == "computation changed" and cell["changed_seeds"] == [1]
    rc, out, err = cli(capsys, "regress", TABLE, "--scale", "smoke", "--store", "b.sqlite", "--no-train",
                       "--strict-determinism")
    assert rc == 1 and VICTIM_NAME in err and "computation changed" in err
    other = now_from(fill(work / "c.sqlite", plan), plan)
    for ts in other.values():
        for t in ts:
            t["torch_version"] = "2.99"
    base = freeze_from(work / "a.sqlite", plan)
    assert {v.determinism for v in compare(base, other, THRESHOLDS["smoke"])} == {
        "not checked (other software (torch 2.14.1+cpu vs 2.99))"}


def test_machine_must_be_a_class_of_the_file(work, capsys):
    """A baseline entry that is asked for by name and is not in the file is bad input."""
    plan = plan_for()
    fill(work / "a.sqlite", plan)
    _save(capsys, "a.sqlite")
    data = load_baseline(work / "results" / "baselines" / "paper_table6-smoke.json")
    with pytest.raises(HarnessError, match="bad --machine"):
        select_entry(data, None, machine="cpu:elsewhere")


def test_no_speed_gates_accuracy_only():
    """Every cell 3x slower (a busy shared runner): the speed checks fail the night; with
    speed off there is no speed check, the cells say so, and accuracy alone passes."""
    base = _baseline(_cells(_means(), 3))
    slow = _cells(_means(), 3)
    for ts in slow.values():
        for t in ts:
            t["img_per_s"] = 330.0 + t["seed"]
    for t in (t for ts in base["cells"] for t in ts["trials"]):
        t["img_per_s"] = 1000.0 + t["seed"]
    on = evaluate(base, slow, THRESHOLDS["local"])
    assert any(c.failed for c in on.checks if c.kind.startswith("speed"))
    off = evaluate(base, slow, THRESHOLDS["local"], speed=False)
    assert not any(c.kind.startswith("speed") for c in off.checks)
    assert {v.speed_verdict for v in off.cells} == {"not checked"}
    assert not any(v.failed for v in off.cells)
