"""User experiment files: strict validation, the CLI's one-line errors, stable plans, examples."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.experiments import (ExperimentError, load_experiment, make_plan, paper_tables,
                                 read_experiment_file)
from harness.experiments.grid import grid_experiment
from harness.experiments.schema import check_design
from harness.scales import get_scale

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"

GOOD = """\
name: mine
rows:
  - {label: base}
  - {label: cos, recipe: {lr_schedule: cosine}}
columns:
  - {label: R18, model: resnet18}
"""

# (file name, content, substrings the error must contain besides the path)
MALFORMED = {
    "unknown_top_key": ("bad.yaml", GOOD + "colour: red\n", ["<top>.colour", "unknown key"]),
    "unknown_recipe_key": ("bad.yaml", GOOD.replace("lr_schedule", "lr_shedule"),
                           ["rows[1].recipe", "lr_shedule"]),
    "unknown_model": ("bad.yaml", GOOD.replace("resnet18", "resnet51"),
                      ["columns[0].model", "resnet51", "resnet50"]),
    "unknown_base_recipe": ("bad.yaml", GOOD + "base_recipe: turbo\n",
                            ["base_recipe", "turbo", "efficient"]),
    "wrong_type_seeds": ("bad.yaml", GOOD + "seeds: two\n", ["seeds", "'two'"]),
    "missing_model": ("bad.yaml", GOOD.replace(", model: resnet18", ""),
                      ["rows[0].model", "missing model"]),
    "missing_rows": ("bad.yaml", "name: x\ncolumns: [{label: a, model: resnet18}]\n",
                     ["rows", "missing"]),
    "unknown_metric": ("bad.yaml", GOOD + "metrics: [top1, top3]\n", ["metrics", "top3"]),
    "after_not_earlier": ("bad.yaml", GOOD.replace("{label: cos,", "{label: cos, after: nope,"),
                          ["rows[1].after", "nope"]),
    "reference_not_a_column": ("bad.yaml", GOOD + "reference_column: R50\n",
                               ["reference_column", "'R50'", "valid: R18"]),
    "reference_and_stacked": ("bad.yaml", GOOD.replace("{label: R18, model: resnet18}",
                                                       "{label: R18, model: resnet18}\n  - {label: R50, model: resnet50}")
                              + "reference_column: R18\nstacked: true\n", ["reference_column", "stacked"]),
    "invalid_yaml": ("bad.yaml", "name: x\nrows: [\n", ["malformed file"]),
    "python_tag_yaml": ("bad.yaml", "name: !!python/object/apply:os.system ['true']\n",
                        ["malformed file"]),
    "invalid_toml": ("bad.toml", 'name = "x"\nrows = [\n', ["malformed file"]),
    "toml_unknown_key": ("bad.toml", 'name = "x"\nspeed = 3\n', ["<top>.speed"]),
    "txt_extension": ("bad.txt", GOOD, ["<file>", "extension", ".toml"]),
}


def _write(tmp_path: Path, name: str, text: str) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_file_error_names_file_and_key(tmp_path, case):
    """Each malformed file raises ExperimentError: one line with the path and the bad key."""
    name, text, needles = MALFORMED[case]
    path = _write(tmp_path, name, text)
    with pytest.raises(ExperimentError) as info:
        read_experiment_file(path)
    msg = str(info.value)
    assert msg.startswith(str(path)) and "\n" not in msg
    for needle in needles:
        assert needle in msg


@pytest.mark.parametrize("case", ["unknown_top_key", "unknown_model", "wrong_type_seeds",
                                  "missing_model", "invalid_yaml", "invalid_toml", "txt_extension"])
def test_cli_dry_run_rejects_malformed_file(tmp_path, capsys, case):
    """`harness run FILE --dry-run` exits 2 with one stderr line and writes no store."""
    name, text, needles = MALFORMED[case]
    path = _write(tmp_path, name, text)
    store = tmp_path / "results" / "h.sqlite"
    rc = main(["run", str(path), "--dry-run", "--scale", "smoke", "--store", str(store)])
    out, err = capsys.readouterr()
    assert rc == 2
    assert err.count("\n") == 1 and err.startswith("error: ") and str(path) in err
    # A .txt path is not an experiment file to the CLI: it is an unknown table whose
    # valid choices include '<path to .yaml/.toml>'.
    assert (".yaml" if case == "txt_extension" else needles[0]) in err
    assert out == ""
    assert not store.exists() and not store.parent.exists()


def test_cli_subprocess_exit_code_and_no_store(tmp_path):
    """The real entry point (python -m harness) exits 2 on a bad file, one line on stderr."""
    path = _write(tmp_path, "bad.yaml", GOOD + "seeds: two\n")
    store = tmp_path / "store" / "h.sqlite"
    proc = subprocess.run([sys.executable, "-m", "harness", "run", str(path), "--dry-run",
                           "--store", str(store)], capture_output=True, text=True, cwd=ROOT,
                          timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(path) in lines[0] and "seeds" in lines[0]
    assert not store.parent.exists()


def test_cli_grid_errors_exit_2(capsys, tmp_path):
    """`run grid` with an unknown trick or model exits 2 with one line naming it."""
    store = tmp_path / "s" / "h.sqlite"
    for extra, needle in ((["--model", "resnet18", "--tricks", "cosine,warmupp"], "warmupp"),
                          (["--model", "resnet99", "--tricks", "cosine"], "resnet99"),
                          (["--tricks", "cosine"], "--model")):
        rc = main(["run", "grid", *extra, "--dry-run", "--store", str(store)])
        err = capsys.readouterr().err
        assert rc == 2 and err.count("\n") == 1 and needle in err
    assert not store.parent.exists()


@pytest.mark.parametrize("factors, needles", [
    ("{cosinee: 1}", ["rows[1].factors.cosinee", "unknown trick", "cosine"]),
    ("{cosine: 2}", ["rows[1].factors.cosine", "expected 0 or 1"]),
    ("{cosine: 0}", ["rows[1].factors.cosine", "says cosine=0"]),
])
def test_bad_factors_name_file_and_key(tmp_path, factors, needles):
    """A factor naming an unknown trick, a non-0/1 level, or disagreeing with the recipe."""
    text = GOOD.replace("{label: base}", "{label: base, factors: {cosine: 0}}").replace(
        "{label: cos,", f"{{label: cos, factors: {factors},") + "design: factorial\n"
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(ExperimentError) as info:
        check_design(read_experiment_file(path))
    msg = str(info.value)
    assert msg.startswith(str(path))
    for needle in needles:
        assert needle in msg


def test_bad_recipe_value_names_file_and_row(tmp_path):
    """A recipe value out of range is caught with the file and the row, not only at plan time."""
    path = _write(tmp_path, "bad.yaml", GOOD.replace("cosine", "linear"))
    with pytest.raises(ExperimentError) as info:
        check_design(read_experiment_file(path))
    msg = str(info.value)
    assert msg.startswith(f"{path}: rows[1].recipe: ") and "'linear'" in msg and "cosine" in msg


def test_unknown_design_is_rejected(tmp_path):
    """design: must be table, factorial, loo or stack."""
    path = _write(tmp_path, "bad.yaml", GOOD + "design: fractional\n")
    with pytest.raises(ExperimentError, match=r"bad.yaml: design: unknown design 'fractional'"):
        check_design(read_experiment_file(path))


@pytest.mark.parametrize("text, key", [
    (GOOD.replace("{label: cos,", "{label: cos, factors: {cosinee: 1},"), r"rows[1].factors.cosinee"),
    (GOOD + "design: fractional\n", "design"),
    (GOOD.replace("cosine", "linear"), "rows[1].recipe"),
])
def test_reading_a_file_runs_the_design_checks(tmp_path, text, key):
    """Reading a file runs check_design, so `run FILE` fails with file and key before planning."""
    path = _write(tmp_path, "bad.yaml", text)
    with pytest.raises(ExperimentError, match=f"^{path}: {key}".replace("[", r"\[").replace("]", r"\]")):
        read_experiment_file(path)


def _hashes(exp, scale="smoke", seeds=2):
    data = "/nonexistent/imagefolder" if exp.requires_imagefolder else None
    return [t.hash for t in make_plan(exp, get_scale(scale), seeds=seeds, data=data).all_trials()]


@pytest.mark.parametrize("table", sorted(paper_tables()))
def test_paper_tables_reload_to_the_same_spec_hashes(table):
    """Re-reading a paper table's YAML and planning again gives identical spec hashes."""
    first = _hashes(load_experiment(table))
    again = _hashes(read_experiment_file(paper_tables()[table]))
    assert first == again and len(first) == len(set(first)) > 0
    assert _hashes(load_experiment(table), "local") == _hashes(load_experiment(table), "local")


def test_grid_plans_are_stable():
    """Building the same grid twice gives the same trials (resumable runs rely on it)."""
    a = grid_experiment("resnet18_d", "cosine,mixup,warmup", "factorial", 2)
    b = grid_experiment("resnet18_d", "cosine,mixup,warmup", "factorial", 2)
    assert _hashes(a) == _hashes(b)


@pytest.mark.parametrize("name", ["custom_table.yaml", "factorial_three_tricks.yaml",
                                  "imagefolder_table.toml"])
def test_examples_parse_and_plan(name):
    """Every example file parses, passes the design checks and plans at the local scale."""
    exp = check_design(read_experiment_file(EXAMPLES / name))
    plan = make_plan(exp, get_scale("local"),
                     data="/data/my_images" if exp.requires_imagefolder else None)
    assert plan.all_trials()


def test_example_shapes():
    """custom: 3x2 on Fashion-MNIST; imagefolder: TOML needing --data-root."""
    custom = read_experiment_file(EXAMPLES / "custom_table.yaml")
    assert (len(custom.rows), len(custom.columns), custom.data) == (3, 2, "fashion_mnist")
    folder = read_experiment_file(EXAMPLES / "imagefolder_table.toml")
    assert folder.requires_imagefolder
    with pytest.raises(HarnessError, match="--data-root"):
        make_plan(folder, get_scale("local"))


def test_factorial_example_equals_the_grid():
    """The written-out factorial file plans exactly the trials of `run grid` (one mechanism)."""
    exp = check_design(read_experiment_file(EXAMPLES / "factorial_three_tricks.yaml"))
    grid = grid_experiment("resnet50_d", "cosine,label_smoothing,mixup", "factorial", 3)
    assert exp.design == "factorial" and len(exp.rows) == 8
    assert [r.label for r in exp.rows] == [r.label for r in grid.rows]
    assert [dict(r.factors) for r in exp.rows] == [dict(r.factors) for r in grid.rows]
    assert _hashes(exp, seeds=None) == _hashes(grid, seeds=None)
