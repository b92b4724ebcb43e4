"""Bad input never gets far: a HarnessError naming the key (library), or exit code 2 with
ONE line on stderr and nothing written (command line). Every such line names the bad value
and the valid choices (README: "one line naming the bad value and the valid choices").
Property tests use hypothesis (derandomized: tests/conftest.py); a few real subprocesses
check what a user actually sees.
"""
from __future__ import annotations

import contextlib
import io
import math
import os
import re
import string
import subprocess
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import (chdir, cli_env, fashion_mnist_folder, fashion_mnist_gz_bytes, harness_cmd,
                      stderr_lines)
from harness.cli import main
from harness.data.fashion_mnist import ALL_FILES
from harness.errors import HarnessError
from harness.experiments import paper_tables, parse_experiment
from harness.models import MODEL_NAMES
from harness.recipe import NAMED_RECIPES, Recipe
from harness.scales import SCALES

FASHION_MNIST = fashion_mnist_folder()  # where the harness finds it; None when it has none
FIELDS = set(Recipe.__dataclass_fields__)
TABLE_CHOICES = [*paper_tables(), "grid"]
DESIGNS = ("factorial", "loo", "stack")


def assert_names_value_and_choices(line: str, value: str, choices) -> None:
    """The one error line quotes the bad value and, after it, lists every valid choice (each
    as a whole word: 'resnet18_b' does not count as 'resnet18')."""
    assert value in line, f"{value} not named in {line!r}"
    after = line[line.index(value) + len(value):]
    missing = [c for c in choices if not re.search(rf"(?<!\w){re.escape(str(c))}(?!\w)", after)]
    assert not missing, f"valid choices {missing} not listed in {line!r}"
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

def test_hypothesis_examples_are_derandomized():
    """The property tests draw the same examples on every machine and run: tests/conftest.py
    loads a derandomized profile without an example database unless HYPOTHESIS_PROFILE asks
    for another, and this file's own settings keep it."""
    harness = settings.get_profile("harness")
    assert harness.derandomize is True and harness.database is None
    if os.environ.get("HYPOTHESIS_PROFILE", "harness") == "harness":
        assert settings.default.derandomize is True and settings.default.database is None
        assert SETTINGS.derandomize is True and SETTINGS.database is None


# ---- recipe values ------------------------------------------------------------------------
nan = st.just(math.nan)
BAD_VALUES = {
    "base_lr": st.floats(max_value=0.0) | nan,
    "batch_size": st.integers(max_value=0),
    "label_smoothing": st.floats(max_value=0.0, exclude_max=True) | st.floats(min_value=1.0) | nan,
    "mixup_alpha": st.floats(max_value=0.0) | nan,
    "momentum": st.floats(max_value=0.0, exclude_max=True) | st.floats(min_value=1.0) | nan,
    "weight_decay": st.floats(max_value=0.0, exclude_max=True) | nan,
    "epochs": st.floats(max_value=0.0) | nan,
    "distill_temperature": st.floats(max_value=0.0) | nan,
    "step_gamma": st.floats(max_value=0.0) | st.floats(min_value=1.0, exclude_min=True) | nan,
}
VALID_RANGES = {"base_lr": "> 0", "batch_size": ">= 1", "label_smoothing": "[0, 1)",
                "mixup_alpha": "> 0", "momentum": "[0, 1)", "weight_decay": ">= 0", "epochs": "> 0",
                "distill_temperature": "> 0", "step_gamma": "(0, 1]"}


@SETTINGS
@given(data=st.data(), key=st.sampled_from(sorted(BAD_VALUES)))
def test_out_of_range_recipe_value_names_the_key(data, key):
    """Zero/negative lr, batch, alpha, temperature or epochs; eps, momentum outside [0, 1);
    gamma outside (0, 1]; NaN anywhere -> HarnessError whose message names the key, the bad
    value and the valid range."""
    value = data.draw(BAD_VALUES[key])
    uses = {"mixup_alpha": {"mixup": True}, "distill_temperature": {"distill": True}}.get(key, {})
    with pytest.raises(HarnessError) as exc:
        Recipe.from_dict({key: value, **uses}).validate()
    assert_names_value_and_choices(str(exc.value), f"{key}={value!r}", [VALID_RANGES[key]])


def test_options_a_recipe_does_not_use_are_not_held_against_it():
    """Issue 22: a cosine recipe over 1 epoch keeps the default step milestones (30, 60, 90)
    and validates; mixup's alpha and the distillation temperature are checked only when the
    recipe mixes or distills; a step schedule still refuses milestones past its epochs and
    says which keys to change."""
    Recipe.from_dict({"lr_schedule": "cosine", "epochs": 1}).validate()
    Recipe.from_dict({"mixup_alpha": 0.0, "distill_temperature": -1.0}).validate()
    with pytest.raises(HarnessError, match=r"step_milestones=.*set step_milestones, or epochs"):
        Recipe.from_dict({"epochs": 1}).validate()


@SETTINGS
@given(key=st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1, max_size=30)
       .filter(lambda k: k not in FIELDS), value=st.integers() | st.text(max_size=5))
def test_unknown_recipe_key_names_the_key(key, value):
    """A key Recipe does not have (a typo) -> HarnessError quoting that key and listing every
    recipe key."""
    with pytest.raises(HarnessError) as exc:
        Recipe.from_dict({key: value})
    assert_names_value_and_choices(str(exc.value), repr(key), sorted(FIELDS))


def _not_a_number(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return True
    return False


junk = st.none() | st.lists(st.integers(), max_size=2) | st.dictionaries(st.text(max_size=2), st.integers(), max_size=1)
WRONG_TYPES = {
    "int": junk | st.booleans() | st.floats().filter(lambda f: not float(f).is_integer())
           | st.text(max_size=6).filter(_not_a_number),
    "float": junk | st.booleans() | st.text(max_size=6).filter(_not_a_number),
    "bool": junk | st.integers(min_value=2) | st.floats()
            | st.text(max_size=6).filter(lambda s: s.lower() not in ("true", "false", "1", "0", "yes", "no", "on", "off")),
    "str": junk | st.integers() | st.floats() | st.booleans(),
}
TYPED_KEYS = {"batch_size": "int", "base_lr": "float", "label_smoothing": "float", "epochs": "float",
              "mixup": "bool", "zero_gamma": "bool", "precision": "str", "lr_schedule": "str"}


@SETTINGS
@given(data=st.data(), key=st.sampled_from(sorted(TYPED_KEYS)))
def test_wrong_type_names_the_key(data, key):
    """A value of the wrong type (text for a number, a float for an int, a list, None...)
    -> HarnessError naming the key, the value and the expected type, both from Python and
    from an experiment file (which is named too)."""
    value = data.draw(WRONG_TYPES[TYPED_KEYS[key]])
    expected = f"type {TYPED_KEYS[key]}"
    with pytest.raises(HarnessError) as exc:
        Recipe.from_dict({key: value}).validate()
    assert_names_value_and_choices(str(exc.value), f"{key}={value!r}", [expected])
    exp = {"name": "t", "rows": [{"label": "a", "recipe": {key: value}}],
           "columns": [{"label": "c", "model": "resnet18"}]}
    with pytest.raises(HarnessError) as exc:
        parse_experiment(exp, "t.yaml")
    assert "t.yaml" in str(exc.value)
    assert_names_value_and_choices(str(exc.value), f"{key}={value!r}", [expected])


@pytest.mark.parametrize("item, value, choices", [
    ("base_lr=-0.1", "base_lr=-0.1", ["> 0"]),
    ("base_lr=0", "base_lr=0.0", ["> 0"]),
    ("label_smoothing=1.0", "label_smoothing=1.0", ["[0, 1)"]),
    ("label_smoothing=-0.1", "label_smoothing=-0.1", ["[0, 1)"]),
    ("step_gamma=0", "step_gamma=0.0", ["(0, 1]"]),
    ("batch_size=0", "batch_size=0", ["integer >= 1"]),
    ("batch_size=1.5", "batch_size='1.5'", ["type int"]),
    ("no_such_knob=1", "'no_such_knob'", sorted(FIELDS)),
    ("mixup=perhaps", "mixup='perhaps'", ["type bool"]),
    ("lr_schedule=linear", "'linear'", ["cosine", "step"]),
    ("precision=fp8", "'fp8'", ["bf16", "fp16", "fp32"]),
    ("base_lr", "'base_lr'", ["KEY=VALUE"]),
])
def test_train_set_bad_value_exit_2(item, value, choices, capsys, tmp_path):
    """``train --set KEY=VALUE`` with a bad value: exit 2, one stderr line naming the bad value
    and the valid choices (range, type or names), no checkpoint written."""
    argv = ["train", "--model", "resnet18", "--scale", "smoke", "--checkpoint-dir", str(tmp_path / "ck"),
            "--set", item]
    assert main(argv) == 2
    lines = stderr_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert_names_value_and_choices(lines[0], value, choices)
    assert not (tmp_path / "ck").exists()


# ---- command-line arguments (in process) ------------------------------------------------------
def _run_main(argv: list[str], cwd: Path) -> tuple[int, list[str]]:
    """main(argv) inside ``cwd``; returns (exit code, non-empty stderr lines)."""
    err = io.StringIO()
    with chdir(cwd), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            rc = main(argv)
        except SystemExit as exc:  # argparse usage errors
            rc = exc.code
    return rc, stderr_lines(err.getvalue())


name = st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1, max_size=24)


def _check_refused(argv: list[str]) -> str:
    """Run ``argv`` in an empty folder: exit 2, one stderr line, nothing written; returns the line."""
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        store = tmp_path / "results" / "store.sqlite"
        rc, lines = _run_main([*argv, "--store", str(store)] if argv[0] == "run" else
                              [*argv, "--checkpoint-dir", str(tmp_path / "ck")], tmp_path)
        assert rc == 2, (argv, lines)
        assert len(lines) == 1, (argv, lines)
        assert list(tmp_path.iterdir()) == [], f"{argv} wrote {list(tmp_path.rglob('*'))}"
        return lines[0]


def _is_experiment_path(t: str) -> bool:
    return Path(t).suffix in (".yaml", ".yml", ".toml")


@SETTINGS
@given(table=name.filter(lambda t: t not in paper_tables() and t != "grid" and not t.startswith("-")
                         and not _is_experiment_path(t)))
def test_unknown_table_exit_2(table):
    """``run TABLE`` with an unknown table -> exit 2, one line naming it and listing the paper
    tables and grid, no store."""
    line = _check_refused(["run", table, "--scale", "smoke"])
    assert_names_value_and_choices(line, repr(table), TABLE_CHOICES)


@SETTINGS
@given(stem=name.filter(lambda t: not t.startswith("-")), ext=st.sampled_from([".yaml", ".yml", ".toml"]))
def test_missing_experiment_file_exit_2(stem, ext):
    """``run PATH.yaml`` for a file that does not exist -> exit 2, one line naming the path,
    no store."""
    line = _check_refused(["run", stem + ext, "--scale", "smoke"])
    assert stem + ext in line


def test_missing_experiment_file_line_lists_the_tables():
    """README: bad input gives one line naming the bad value *and the valid choices*; for a
    missing experiment file those are the paper tables and grid (or an existing file)."""
    line = _check_refused(["run", "no_such_file.yaml", "--scale", "smoke"])
    assert_names_value_and_choices(line, "no_such_file.yaml", TABLE_CHOICES)


@SETTINGS
@given(model=name.filter(lambda m: m not in MODEL_NAMES and not m.startswith("-")))
def test_unknown_model_exit_2(model):
    """``train --model X`` and ``run grid --model X`` with an unknown model -> exit 2, one
    line naming the model and listing every model, nothing written."""
    for argv in (["train", "--model", model, "--scale", "smoke"],
                 ["run", "grid", "--model", model, "--tricks", "cosine", "--scale", "smoke"]):
        assert_names_value_and_choices(_check_refused(argv), repr(model), MODEL_NAMES)


@SETTINGS
@given(scale=name.filter(lambda s: s not in SCALES and not s.startswith("-")))
def test_unknown_scale_exit_2(scale):
    """``--scale X`` with an unknown scale -> exit 2, one line naming it and listing the
    scales, nothing written."""
    for argv in (["run", "paper_table2", "--scale", scale], ["train", "--model", "resnet18", "--scale", scale]):
        assert_names_value_and_choices(_check_refused(argv), repr(scale), sorted(SCALES))


FLAGS = st.sampled_from(["--seeds", "--max-concurrent"])


@SETTINGS
@given(flag=FLAGS, value=st.integers(max_value=0))
def test_bad_flag_value_exit_2(flag, value):
    """--seeds / --max-concurrent of 0 or negative -> exit 2, one line naming the flag and
    value and the valid range, no store."""
    line = _check_refused(["run", "paper_table2", "--scale", "smoke", flag, str(value)])
    assert flag in line
    assert_names_value_and_choices(line, repr(str(value)), ["an integer >= 1"])


@SETTINGS
@given(flag=FLAGS, value=name.filter(lambda v: not v.lstrip("-").isdigit() and not v.startswith("-")))
def test_non_integer_flag_value_exit_2(flag, value):
    """--seeds / --max-concurrent that is not an integer -> exit 2, one line naming the flag
    and the value, no store."""
    line = _check_refused(["run", "paper_table2", "--scale", "smoke", flag, value])
    assert flag in line and repr(value) in line


@pytest.mark.parametrize("flag", ["--seeds", "--max-concurrent"])
def test_non_integer_flag_value_line_gives_the_valid_range(flag):
    """A non-integer --seeds / --max-concurrent gets the same valid range as 0 does."""
    line = _check_refused(["run", "paper_table2", "--scale", "smoke", flag, "many"])
    assert_names_value_and_choices(line, "'many'", ["integer >= 1"])


@SETTINGS
@given(recipe=name.filter(lambda r: r not in NAMED_RECIPES and not r.startswith("-")),
       design=name.filter(lambda d: d not in DESIGNS and not d.startswith("-")))
def test_unknown_recipe_or_design_exit_2(recipe, design):
    """``train --recipe X`` and ``run grid --design X`` with unknown names -> exit 2, one line
    naming the name and listing the recipes (designs)."""
    line = _check_refused(["train", "--model", "resnet18", "--scale", "smoke", "--recipe", recipe])
    assert_names_value_and_choices(line, repr(recipe), sorted(NAMED_RECIPES))
    line = _check_refused(["run", "grid", "--model", "resnet18", "--tricks", "cosine", "--design", design,
                           "--scale", "smoke"])
    assert_names_value_and_choices(line, repr(design), DESIGNS)


TRICKS = ("cosine", "fp16", "label_smoothing", "linear_scaling", "mixup", "no_bias_decay", "warmup",
          "zero_gamma")


@SETTINGS
@given(trick=name.filter(lambda t: t not in TRICKS and not t.startswith("-") and "," not in t))
def test_unknown_grid_trick_exit_2(trick):
    """``run grid --tricks cosine,X`` with an unknown trick -> exit 2, one line naming it and
    listing the tricks a grid can vary."""
    line = _check_refused(["run", "grid", "--model", "resnet18", "--tricks", f"cosine,{trick}",
                           "--scale", "smoke"])
    assert_names_value_and_choices(line, repr(trick), TRICKS)


# ---- what a user sees: real subprocesses, run side by side ----------------------------------------
@pytest.fixture(scope="module")
def bad_cli(tmp_path_factory):
    """Launch every bad-input command at once; returns name -> (process, folder). The damaged
    data set is a copy of the Fashion-MNIST files the harness finds (wherever they lie), its
    training images cut in half; without Fashion-MNIST that one case is left out."""
    root = tmp_path_factory.mktemp("bad_cli")
    cases = {
        "table": ["run", "no_such_table", "--scale", "smoke"],
        "model": ["train", "--model", "no_such_model", "--scale", "smoke"],
        "scale": ["run", "paper_table2", "--scale", "galactic"],
        "flag_type": ["run", "paper_table2", "--scale", "smoke", "--max-concurrent", "many"],
        "address": ["run", "paper_table2", "--scale", "smoke", "--address", "127.0.0.1:1"],
    }
    victim = None
    if FASHION_MNIST is not None:
        data = root / "fmnist"
        data.mkdir()
        for name in ALL_FILES:
            (data / name).write_bytes(fashion_mnist_gz_bytes(FASHION_MNIST, name))
        victim = data / "train-images-idx3-ubyte.gz"
        with open(victim, "r+b") as fh:
            fh.truncate(victim.stat().st_size // 2)
        cases["dataset"] = ["train", "--model", "resnet18", "--scale", "local", "--data-root", str(data)]
    procs = {}
    for key, argv in cases.items():
        cwd = root / key
        cwd.mkdir()
        if argv[0] == "run":
            argv = [*argv, "--store", str(cwd / "results" / "store.sqlite")]
        procs[key] = (subprocess.Popen(harness_cmd(*argv), cwd=cwd, env=cli_env(), text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE), cwd)
    out = {}
    for key, (p, cwd) in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[key] = (subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr), cwd)
    out["victim"] = victim
    return out


@pytest.mark.parametrize("case", ["table", "model", "scale", "flag_type"])
def test_cli_bad_argument_one_line_exit_2_nothing_written(bad_cli, case):
    """``python -m harness`` with an unknown table/model/scale or a bad flag value: exit 2,
    exactly one line on stderr, nothing on stdout, and nothing written (no store). (Out of
    range values such as ``--seeds 0`` are covered in process by test_bad_flag_value_exit_2.)"""
    proc, cwd = bad_cli[case]
    assert proc.returncode == 2, proc.stderr
    assert len(stderr_lines(proc.stderr)) == 1, proc.stderr
    assert proc.stdout == ""
    assert list(cwd.iterdir()) == []


@pytest.mark.parametrize("case, value, choices", [
    ("table", "'no_such_table'", TABLE_CHOICES),
    ("model", "'no_such_model'", MODEL_NAMES),
    ("scale", "'galactic'", sorted(SCALES)),
    ("flag_type", "'many'", ["integer >= 1"]),
])
def test_cli_bad_argument_line_names_value_and_choices(bad_cli, case, value, choices):
    """What the user reads: the one stderr line quotes the bad value and lists the valid
    choices (all models, all scales, the paper tables and grid; the range of a flag)."""
    proc, _ = bad_cli[case]
    assert_names_value_and_choices(stderr_lines(proc.stderr)[0], value, choices)


def test_unreachable_address_exit_2_one_line(bad_cli):
    """``--address 127.0.0.1:1`` (nothing listens there): exit 2 and one line naming the
    address, and nothing written."""
    proc, cwd = bad_cli["address"]
    assert proc.returncode == 2, proc.stderr
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1 and "'127.0.0.1:1'" in lines[0], proc.stderr
    assert list(cwd.iterdir()) == []  # checked before the store is created


def test_unreachable_address_refused_before_ray_starts(tmp_path, monkeypatch):
    """The address is checked before Ray is started or any store is created: with the
    harness's one way to start Ray (harness.ray_env.init_ray) replaced by a tripwire, the run
    still ends with exit 2 and the one line (so it cannot be waiting on a Ray cluster)."""
    import harness.ray_env

    calls = []
    monkeypatch.setattr(harness.ray_env, "init_ray", lambda *a, **k: calls.append(a) or 1 / 0)
    rc, lines = _run_main(["run", "paper_table2", "--scale", "smoke", "--address", "127.0.0.1:1",
                           "--store", str(tmp_path / "results" / "s.sqlite")], tmp_path)
    assert rc == 2 and len(lines) == 1 and "cannot reach Ray cluster at '127.0.0.1:1'" in lines[0], lines
    assert calls == [] and list(tmp_path.iterdir()) == []


@pytest.mark.skipif(FASHION_MNIST is None, reason="the harness finds no Fashion-MNIST "
                    "($HARNESS_DATA_ROOT, /usr/share/datasets/fashion-mnist or ./data)")
def test_truncated_dataset_file_exit_2_names_file(bad_cli):
    """A truncated Fashion-MNIST .gz under --data-root: ``train --scale local`` exits 2 with
    one line naming the damaged file (before any training)."""
    proc, _ = bad_cli["dataset"]
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert str(bad_cli["victim"]) in lines[0] and "truncated" in lines[0]
