"""Rows that change more than one knob (issue 23): found, named, decomposed into their
factorial corners, and reported with each knob's effect."""
from __future__ import annotations

import subprocess

import pytest
import yaml

from conftest import cli_env, harness_cmd, last_json_line
from harness.errors import HarnessError
from harness.experiments import load_experiment, make_plan
from harness.experiments.decompose import compound_rows, decompose_experiment
from harness.scales import get_scale

SMOKE = get_scale("smoke")


def test_compound_rows_of_a_synthetic_table(tmp_path):
    """A made-up stacked table: one row changes one knob, one changes two (lr schedule and
    epochs), one changes three and has a teacher; the finder names exactly the knobs."""
    exp_file = tmp_path / "t.yaml"
    exp_file.write_text(yaml.safe_dump({
        "name": "synthetic", "title": "t", "base_recipe": "efficient", "cumulative": True,
        "stacked": True, "columns": [{"label": "R", "model": "resnet18"}],
        "rows": [{"label": "A"}, {"label": "B", "recipe": {"label_smoothing": 0.1}},
                 {"label": "C", "recipe": {"lr_schedule": "cosine", "epochs": 150}},
                 {"label": "D", "after": "B", "teacher": {"recipe": "label_smoothing"},
                  "recipe": {"mixup": True, "epochs": 200, "distill": True}}]}))
    found = compound_rows(load_experiment(str(exp_file)))
    assert set(found) == {"C", "D"}
    parent, knobs = found["C"]
    assert parent == "B" and [k.describe() for k in knobs] == ["epochs: 120 -> 150",
                                                               "lr_schedule: step -> cosine"]
    assert found["D"][0] == "B" and {k.field for k in found["D"][1]} == {"epochs", "mixup", "distill"}


def test_table6_mixup_rows_are_compound():
    """Table 6's two mixup rows change mixing and the schedule (and distillation)."""
    found = compound_rows(load_experiment("paper_table6"))
    assert {k.field for k in found["+ mixup w/o distill"][1]} == {"mixup", "epochs"}
    assert {k.field for k in found["+ distill w/ mixup"][1]} == {"mixup", "epochs", "distill"}
    assert "+ cosine decay" not in found


def test_decompose_plans_exactly_the_missing_corners():
    """The decomposition of '+ mixup w/o distill' reuses the table's trials for its parent
    and the row (same hashes) and adds only the two mixed corners, per model and seed."""
    exp = load_experiment("paper_table6")
    table = {t.hash for t in make_plan(exp, SMOKE).all_trials()}
    dplan = make_plan(decompose_experiment(exp, "+ mixup w/o distill"), SMOKE)
    new = [t for t in dplan.all_trials() if t.hash not in table]
    assert {t.row for t in new} == {"+ label smoothing + mixup=on", "+ label smoothing + epochs=200"}
    assert len(new) == 2 * len(exp.columns) * len(dplan.seeds)
    assert all(t.recipe.epochs == 200 and not t.recipe.mixup for t in new if "epochs" in t.row)
    three = make_plan(decompose_experiment(exp, "+ distill w/ mixup"), SMOKE)
    assert len(three.trials) == 8 * len(exp.columns) and three.teachers  # distilled corners


def test_decompose_unknown_row_lists_the_compound_ones():
    with pytest.raises(HarnessError, match=r"'\+ cosine decay'; valid choices: .*\+ mixup w/o distill"):
        decompose_experiment(load_experiment("paper_table6"), "+ cosine decay")


@pytest.mark.slow
def test_smoke_decompose_reports_per_knob_effects(tmp_path):
    """Table 6 at smoke, then ``--decompose '+ mixup w/o distill'``: the second run trains
    only the 12 missing corner trials, its report gives each knob's effect and the
    interaction per model, and the table's own report shows the decomposition."""
    store = str(tmp_path / "s.sqlite")
    env = cli_env()

    def run(*extra):
        p = subprocess.run(harness_cmd("run", "paper_table6", "--scale", "smoke", "--store", store,
                                       "--json", *extra), capture_output=True, text=True, env=env,
                           cwd=tmp_path, timeout=900)
        assert p.returncode == 0, p.stderr[-2000:]
        return last_json_line(p.stdout)

    run()
    out = run("--decompose", "+ mixup w/o distill")
    assert out["done"] == 12 and out["skipped"] == 12
    text = (tmp_path / out["report"]).read_text()
    assert "## Each knob's effect" in text and "epochs x mixup" in text
    for knob in ("| mixup ", "| epochs "):
        assert text.count(knob) >= 3  # one line per model
    report = subprocess.run(harness_cmd("report", "paper_table6", "--scale", "smoke", "--store", store),
                            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert report.returncode == 0, report.stderr
    main = (tmp_path / "reports" / "smoke" / "paper_table6.md").read_text()
    assert "## Rows that change more than one knob" in main
    assert "mixup: off -> on; epochs: 200" not in main and "epochs: 120 -> 200" in main
    assert "### '+ mixup w/o distill' decomposed" in main and "2^2 factorial" in main
    assert "Not every corner" in main  # '+ distill w/ mixup' was not decomposed
