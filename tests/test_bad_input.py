"""Bad input never gets far: a HarnessError naming the key (library), or exit code 2 with
ONE line on stderr and nothing written (command line). Property tests use hypothesis;
a few real subprocesses check what a user actually sees.
"""
from __future__ import annotations

import contextlib
import io
import math
import shutil
import string
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import chdir, cli_env, harness_cmd, stderr_lines
from harness.cli import main
from harness.errors import HarnessError
from harness.experiments import paper_tables, parse_experiment
from harness.models import MODEL_NAMES
from harness.recipe import NAMED_RECIPES, Recipe
from harness.scales import SCALES

FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")
FIELDS = set(Recipe.__dataclass_fields__)
SETTINGS = settings(max_examples=40, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

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


@SETTINGS
@given(data=st.data(), key=st.sampled_from(sorted(BAD_VALUES)))
def test_out_of_range_recipe_value_names_the_key(data, key):
    """Zero/negative lr, batch, alpha, temperature or epochs; eps, momentum outside [0, 1);
    gamma outside (0, 1]; NaN anywhere -> HarnessError whose message names the key."""
    value = data.draw(BAD_VALUES[key])
    with pytest.raises(HarnessError) as exc:
        Recipe.from_dict({key: value}).validate()
    assert key in str(exc.value)


@SETTINGS
@given(key=st.text(alphabet=string.ascii_letters + string.digits + "_-.", min_size=1, max_size=30)
       .filter(lambda k: k not in FIELDS), value=st.integers() | st.text(max_size=5))
def test_unknown_recipe_key_names_the_key(key, value):
    """A key Recipe does not have (a typo) -> HarnessError quoting that key."""
    with pytest.raises(HarnessError) as exc:
        Recipe.from_dict({key: value})
    assert repr(key) in str(exc.value)


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
    -> HarnessError naming the key, both from Python and from an experiment file."""
    value = data.draw(WRONG_TYPES[TYPED_KEYS[key]])
    with pytest.raises(HarnessError) as exc:
        Recipe.from_dict({key: value}).validate()
    assert key in str(exc.value)
    exp = {"name": "t", "rows": [{"label": "a", "recipe": {key: value}}],
           "columns": [{"label": "c", "model": "resnet18"}]}
    with pytest.raises(HarnessError) as exc:
        parse_experiment(exp, "t.yaml")
    assert key in str(exc.value) and "t.yaml" in str(exc.value)


@pytest.mark.parametrize("sets", [["base_lr=-0.1"], ["base_lr=0"], ["label_smoothing=1.0"],
                                  ["label_smoothing=-0.1"], ["mixup_alpha=0"], ["batch_size=0"],
                                  ["batch_size=1.5"], ["no_such_knob=1"], ["mixup=perhaps"], ["base_lr"]])
def test_train_set_bad_value_exit_2(sets, capsys, tmp_path):
    """``train --set KEY=VALUE`` with a bad value: exit 2, one stderr line naming the key,
    no checkpoint written."""
    argv = ["train", "--model", "resnet18", "--scale", "smoke", "--checkpoint-dir", str(tmp_path / "ck")]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 2
    lines = stderr_lines(capsys.readouterr().err)
    assert len(lines) == 1
    assert sets[0].split("=")[0] in lines[0]
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


def _check_refused(argv: list[str]) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        store = tmp_path / "results" / "store.sqlite"
        rc, lines = _run_main([*argv, "--store", str(store)] if argv[0] == "run" else
                              [*argv, "--checkpoint-dir", str(tmp_path / "ck")], tmp_path)
        assert rc == 2, (argv, lines)
        assert len(lines) == 1, (argv, lines)
        assert list(tmp_path.iterdir()) == [], f"{argv} wrote {list(tmp_path.rglob('*'))}"


@SETTINGS
@given(table=name.filter(lambda t: t not in paper_tables() and t != "grid" and not t.startswith("-")))
def test_unknown_table_exit_2(table):
    """``run TABLE`` with an unknown table (or a missing .yaml) -> exit 2, one line, no store."""
    _check_refused(["run", table, "--scale", "smoke"])


@SETTINGS
@given(model=name.filter(lambda m: m not in MODEL_NAMES and not m.startswith("-")))
def test_unknown_model_exit_2(model):
    """``train --model X`` and ``run grid --model X`` with an unknown model -> exit 2, one
    line naming the model, nothing written."""
    _check_refused(["train", "--model", model, "--scale", "smoke"])
    _check_refused(["run", "grid", "--model", model, "--tricks", "cosine", "--scale", "smoke"])


@SETTINGS
@given(scale=name.filter(lambda s: s not in SCALES and not s.startswith("-")))
def test_unknown_scale_exit_2(scale):
    """``--scale X`` with an unknown scale -> exit 2, one line, nothing written."""
    _check_refused(["run", "paper_table2", "--scale", scale])
    _check_refused(["train", "--model", "resnet18", "--scale", scale])


@SETTINGS
@given(flag=st.sampled_from(["--seeds", "--max-concurrent"]),
       value=st.integers(max_value=0).map(str) | name.filter(lambda v: not v.lstrip("-").isdigit()))
def test_bad_flag_value_exit_2(flag, value):
    """--seeds / --max-concurrent of 0, negative, or not an integer -> exit 2, one line,
    no store."""
    _check_refused(["run", "paper_table2", "--scale", "smoke", flag, value])


@SETTINGS
@given(recipe=name.filter(lambda r: r not in NAMED_RECIPES and not r.startswith("-")),
       design=name.filter(lambda d: d not in ("factorial", "loo", "stack") and not d.startswith("-")))
def test_unknown_recipe_or_design_exit_2(recipe, design):
    """``train --recipe X`` and ``run grid --design X`` with unknown names -> exit 2."""
    _check_refused(["train", "--model", "resnet18", "--scale", "smoke", "--recipe", recipe])
    _check_refused(["run", "grid", "--model", "resnet18", "--tricks", "cosine", "--design", design,
                    "--scale", "smoke"])


# ---- what a user sees: real subprocesses, run side by side ----------------------------------------
@pytest.fixture(scope="module")
def bad_cli(tmp_path_factory):
    """Launch every bad-input command at once; returns name -> (process, seconds, folder)."""
    root = tmp_path_factory.mktemp("bad_cli")
    data = root / "fmnist"
    data.mkdir()
    for f in FASHION_MNIST.glob("*-ubyte.gz"):
        shutil.copy(f, data / f.name)
    victim = data / "train-images-idx3-ubyte.gz"
    with open(victim, "r+b") as fh:
        fh.truncate(victim.stat().st_size // 2)
    cases = {
        "table": ["run", "no_such_table", "--scale", "smoke"],
        "model": ["train", "--model", "no_such_model", "--scale", "smoke"],
        "scale": ["run", "paper_table2", "--scale", "galactic"],
        "flag_type": ["run", "paper_table2", "--scale", "smoke", "--max-concurrent", "many"],
        "address": ["run", "paper_table2", "--scale", "smoke", "--address", "127.0.0.1:1"],
        "dataset": ["train", "--model", "resnet18", "--scale", "local", "--data-root", str(data)],
    }
    procs = {}
    for key, argv in cases.items():
        cwd = root / key
        cwd.mkdir()
        if argv[0] == "run":
            argv = [*argv, "--store", str(cwd / "results" / "store.sqlite")]
        procs[key] = (subprocess.Popen(harness_cmd(*argv), cwd=cwd, env=cli_env(), text=True,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE), time.time(), cwd)
    out = {}
    for key, (p, t0, cwd) in procs.items():
        stdout, stderr = p.communicate(timeout=300)
        out[key] = (subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr), time.time() - t0, cwd)
    out["victim"] = victim
    return out


@pytest.mark.parametrize("case", ["table", "model", "scale", "flag_type"])
def test_cli_bad_argument_one_line_exit_2_nothing_written(bad_cli, case):
    """``python -m harness`` with an unknown table/model/scale or a bad flag value: exit 2,
    exactly one line on stderr, nothing on stdout, and nothing written (no store). (Out of
    range values such as ``--seeds 0`` are covered in process by test_bad_flag_value_exit_2.)"""
    proc, _, cwd = bad_cli[case]
    assert proc.returncode == 2, proc.stderr
    assert len(stderr_lines(proc.stderr)) == 1, proc.stderr
    assert proc.stdout == ""
    assert list(cwd.iterdir()) == []


def test_unreachable_address_exit_2_quickly(bad_cli):
    """``--address 127.0.0.1:1`` (nothing listens there) fails fast with exit 2 and one line,
    instead of Ray waiting minutes for a cluster that is not there, and writes nothing."""
    proc, seconds, cwd = bad_cli["address"]
    assert proc.returncode == 2, proc.stderr
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1 and "127.0.0.1:1" in lines[0], proc.stderr
    assert seconds < 90  # a process start (torch import) on a busy 2-core machine; no Ray wait
    assert list(cwd.iterdir()) == []  # checked before the store is created


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="needs Debian's dataset-fashion-mnist")
def test_truncated_dataset_file_exit_2_names_file(bad_cli):
    """A truncated Fashion-MNIST .gz under --data-root: ``train --scale local`` exits 2 with
    one line naming the damaged file (before any training)."""
    proc, _, _ = bad_cli["dataset"]
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert str(bad_cli["victim"]) in lines[0] and "truncated" in lines[0]
