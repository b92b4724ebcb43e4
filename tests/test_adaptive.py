"""Adaptive seeds (``run --until-decisive``): durations, sub-plans, which cells grow, and
an end-to-end smoke run that adds seeds only where a verdict was undecided."""
from __future__ import annotations

import json
import math

import pytest

from conftest import cli_env, harness_cmd, last_json_line
from harness.adaptive import cells_to_grow
from harness.commands.args import parse_duration
from harness.errors import HarnessError
from harness.experiments import load_experiment, make_plan, subplan
from harness.report.verdicts import Comparison, Looks, TrickVerdicts
from harness.scales import get_scale
from harness.statistics import Verdict


@pytest.mark.parametrize("text,seconds", [("90s", 90), ("30m", 1800), ("2h", 7200),
                                          ("1h30m", 5400), ("0.5h", 1800)])
def test_parse_duration(text, seconds):
    """The budget's forms, checked by hand."""
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("bad", ["", "3x", "m", "1h-5m", "soon"])
def test_bad_duration_names_the_value_and_the_form(bad):
    """An unparseable --budget is one HarnessError naming it and the valid form."""
    with pytest.raises(HarnessError, match=r"bad --budget .*valid: a duration such as 90s, 30m"):
        parse_duration(bad)


def test_subplan_cuts_cells_and_keeps_only_needed_teachers():
    """A wave's plan: each cell's first n seeds in order; teachers only for distilled rows."""
    plan = make_plan(load_experiment("paper_table6"), get_scale("smoke"), seeds=5)
    cells = list(plan.trials)
    sub = subplan(plan, {cell: (4 if i == 0 else 3) for i, cell in enumerate(cells)})
    assert [s.seed for s in sub.trials[cells[0]]] == [0, 1, 2, 3]
    assert all([s.seed for s in sub.trials[c]] == [0, 1, 2] for c in cells[1:])
    assert sub.trials[cells[0]][3].hash == plan.trials[cells[0]][3].hash  # ordinary trials
    assert len(sub.teachers) == len(plan.teachers) == 2
    no_distill = {c: 3 for c in cells if "distill" not in c[0]}
    only = subplan(plan, {**{c: 0 for c in cells}, **no_distill})
    assert only.teachers == []


def _cmp(row, parent, col, name):
    return Comparison(row, parent, col, None, 0.5, Verdict(name, None, ""))


def test_cells_to_grow_are_the_undecided_comparisons_cells():
    """Per-model: an undecided row grows itself and its parent in that column; decided and
    not-run ones grow nothing; an undecided pooled verdict grows every model's pair."""
    a = _cmp("B", "A", "m1", "undecided")
    b = _cmp("B", "A", "m2", "reproduced")
    c = _cmp("C", "B", "m1", "no effect")
    d = _cmp("C", "B", "m2", "not run")
    pooled_b = Comparison("B", "A", "pooled", None, 0.5, Verdict("reproduced", None, ""), members=[a, b])
    pooled_c = Comparison("C", "B", "pooled", None, 0.5, Verdict("undecided", None, ""), members=[c, d])
    v = TrickVerdicts("top1", 0.5, None, [a, b, c, d], [pooled_b, pooled_c], {})
    assert cells_to_grow(v) == {("B", "m1"), ("A", "m1"), ("C", "m1")}


def test_looks_levels_follow_obrien_fleming_spending():
    """Nominal alphas grow look by look and the last is below 0.05 (O'Brien-Fleming-type)."""
    looks = Looks(first=3, max_seeds=8, kind="obf")
    alphas = [looks.alpha(n) for n in range(3, 9)]
    assert alphas == sorted(alphas) and alphas[-1] < 0.05 and alphas[0] < 0.005
    assert looks.alpha(20) == alphas[-1]  # past the last look: the last look's level
    assert "O'Brien-Fleming" in looks.describe()
    flat = [Looks(3, 8).alpha(n) for n in range(3, 9)]  # Pocock-type, the default: nearly flat
    assert max(flat) / min(flat) < 2 and flat[0] > 10 * alphas[0]


@pytest.mark.slow
def test_smoke_until_decisive_adds_seeds_only_to_undecided_cells(tmp_path):
    """``run paper_table6 --scale smoke --until-decisive --max-seeds 4 --json``: more than
    the plain run's 38 trials, and the second wave gave a 4th seed to exactly the cells that
    fed an undecided verdict of the first wave (3 seeds per cell), and those trials are stored."""
    import subprocess

    from harness.report.tables import load_report_data
    from harness.store import Store

    store = tmp_path / "s.sqlite"
    proc = subprocess.run(harness_cmd("run", "paper_table6", "--scale", "smoke", "--until-decisive",
                                      "--max-seeds", "4", "--json", "--store", str(store), "--no-report"),
                          capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = last_json_line(proc.stdout)
    assert out["trials"] > 38 and out["failed"] == 0 and len(out["waves"]) >= 2
    exp, scale = load_experiment("paper_table6"), get_scale("smoke")
    looks = Looks(first=3, max_seeds=4)  # the CLI's default spending (Pocock-type)
    full = make_plan(exp, scale, seeds=4)
    with Store(store, readonly=True) as st:
        stored = set(st.done_hashes([t.hash for t in full.all_trials()]))
    w1, w2 = out["waves"][0]["seeds"], out["waves"][1]["seeds"]
    assert set(w1.values()) == {3}
    fourth = {tuple(k.split(" / ")) for k, n in w2.items() if n == 4}
    assert all(full.trials[cell][3].hash in stored for cell in fourth)
    # the first wave's verdicts, recomputed from its 3 seeds per cell
    wave1 = load_report_data(exp, scale, store, seeds=[0, 1, 2])
    wave1.looks = looks
    grown = cells_to_grow(wave1.verdicts("top1"))
    assert fourth and fourth == grown
    assert json.dumps(out["looks"]) and not math.isnan(out["wall_s"])


def test_max_seeds_below_the_first_wave_exit_2(tmp_path):
    """--max-seeds 1 (< the first wave's 3 seeds) exits 2 with one line naming it."""
    import subprocess

    proc = subprocess.run(harness_cmd("run", "paper_table6", "--scale", "smoke", "--until-decisive",
                                      "--max-seeds", "1", "--store", str(tmp_path / "s.sqlite")),
                          capture_output=True, text=True, env=cli_env(), cwd=tmp_path, timeout=300)
    assert proc.returncode == 2 and "--max-seeds" in proc.stderr and "'1'" in proc.stderr
    assert "integer >= 3" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "s.sqlite").exists()
