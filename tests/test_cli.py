"""The command line as a user runs it: ``python -m harness ...`` in a subprocess.

The three commands run concurrently (one module fixture) to keep the file's wall time low.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import cli_env, harness_cmd, last_json_line
from harness.models import MODEL_NAMES

RESNET50_D_MACS = 4.3e9  # paper Table 5, ResNet-50-D
# Dependencies of the other commands: `harness train` runs where only torch and torchvision are.
NOT_FOR_TRAIN = ("ray", "pandas", "tabulate", "matplotlib", "yaml", "scipy", "statsmodels",
                 "ruptures", "torchmetrics", "pycocotools")


@pytest.fixture(scope="module")
def cli(tmp_path_factory):
    """``--help``, ``list models --json`` and ``train`` (with ``import ray`` and every other
    package beyond torch and torchvision made to fail)."""
    cwd = tmp_path_factory.mktemp("cli")
    no_ray = cwd / "no_ray"
    for pkg in NOT_FOR_TRAIN:
        (no_ray / pkg).mkdir(parents=True)
        (no_ray / pkg / "__init__.py").write_text(
            f"raise ImportError('{pkg} is blocked in this test: the standalone trainer must not need it')\n")
    jobs = {
        "help": (harness_cmd("--help"), cli_env()),
        "models": (harness_cmd("list", "models", "--json"), cli_env()),
        "train": (harness_cmd("train", "--model", "resnet50_d", "--scale", "smoke",
                              "--checkpoint-dir", cwd / "ckpt"), cli_env([str(no_ray)])),
    }
    procs = {k: subprocess.Popen(cmd, cwd=cwd, env=env, text=True, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE) for k, (cmd, env) in jobs.items()}
    out = {}
    for k, p in procs.items():
        stdout, stderr = p.communicate(timeout=600)
        out[k] = subprocess.CompletedProcess(p.args, p.returncode, stdout, stderr)
    out["cwd"] = cwd
    out["no_ray"] = no_ray
    return out


def test_help_works(cli):
    """``python -m harness --help`` exits 0 and names every command."""
    proc = cli["help"]
    assert proc.returncode == 0, proc.stderr
    for cmd in ("run", "train", "list", "report", "regress"):
        assert cmd in proc.stdout


def test_list_models_json(cli):
    """``list models --json`` prints a JSON array with name, params, macs, input_size for
    every registered model; ResNet-50-D's multiply-adds are within 3% of the paper's 4.3G."""
    proc = cli["models"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = json.loads(proc.stdout)
    assert isinstance(rows, list)
    assert sorted(r["name"] for r in rows) == sorted(MODEL_NAMES)
    for r in rows:
        assert {"name", "params", "macs", "input_size"} <= set(r)
        assert r["params"] > 0 and r["macs"] > 0 and r["input_size"] in (224, 299)
    r50d = next(r for r in rows if r["name"] == "resnet50_d")
    assert abs(r50d["macs"] - RESNET50_D_MACS) / RESNET50_D_MACS < 0.03


def test_train_smoke_prints_json_last_line(cli):
    """``train --model resnet50_d --scale smoke``: the last stdout line is one JSON object
    with status, top1, top5, epochs, train_img_per_s, wall_s."""
    proc = cli["train"]
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = last_json_line(proc.stdout)
    assert {"status", "top1", "top5", "epochs", "train_img_per_s", "wall_s"} <= set(res)
    assert res["status"] == "done" and res["epochs"] == 1
    assert 0 <= res["top1"] <= res["top5"] <= 100
    assert res["train_img_per_s"] > 0 and res["wall_s"] > 0


def test_train_needs_no_ray(cli):
    """The same ``train`` ran with ``ray`` (and pandas, PyYAML, ... :data:`NOT_FOR_TRAIN`)
    packages first on PYTHONPATH whose import raises ImportError: the standalone trainer
    (its parser and its checkpointing included) needs only torch and torchvision."""
    proc = cli["train"]
    assert (cli["no_ray"] / "ray" / "__init__.py").is_file()
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "is blocked" not in proc.stderr
    blocked = subprocess.run([sys.executable, "-c", "import ray"],
                             env=cli_env([str(cli["no_ray"])]), capture_output=True, text=True)
    assert blocked.returncode != 0 and "ray is blocked" in blocked.stderr  # the block works
    assert (Path(cli["cwd"]) / "ckpt" / "ckpt.pt").is_file()


def test_cli_default_store_is_the_store_default():
    """Every command's ``--store`` default is harness.store's DEFAULT_STORE (one constant),
    and importing harness.store for it loads no pandas (the parser builds with torch alone)."""
    code = ("import json, sys\nfrom harness.cli import build_parser\n"
            "from harness.store import DEFAULT_STORE\np = build_parser()\n"
            "stores = [p.parse_args([c, 'paper_table6']).store for c in ('run', 'regress', 'report')]\n"
            "print(json.dumps([stores, DEFAULT_STORE, 'pandas' in sys.modules]))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1]).stdout
    stores, default, pandas_loaded = json.loads(out.strip().splitlines()[-1])
    assert stores == [default] * 3 and default == "results/harness.sqlite" and not pandas_loaded


def test_run_and_regress_build_the_same_run_options():
    """run and regress share their cluster and data flags and turn them into RunOptions in
    one function: --gpus-per-trial 8 is 8 DDP workers of one GPU each for both."""
    pytest.importorskip("ray")
    from harness.cli import build_parser
    from harness.commands.args import run_options

    flags = ["--gpus-per-trial", "8", "--cpus-per-trial", "2", "--max-failures", "1",
             "--max-concurrent", "3", "--decode", "device", "--loader-workers", "4",
             "--data-root", "/data", "--store", "s.sqlite", "--address", "auto"]
    ap = build_parser()
    run = run_options(ap.parse_args(["run", "paper_table6", *flags]))
    regress = run_options(ap.parse_args(["regress", "paper_table6", *flags]))
    assert run == regress
    assert (run.workers_per_trial, run.gpus_per_trial, run.cpus_per_trial) == (8, 1.0, 2.0)
    assert (run.store, run.address, run.max_concurrent, run.max_failures) == ("s.sqlite", "auto", 3, 1)
    assert (run.train.data_root, run.train.decode, run.train.loader_workers) == ("/data", "device", 4)


def test_train_recipe_and_set_reach_the_trial(tmp_path, monkeypatch, capsys):
    """``train --recipe cosine --set base_lr=0.05 --set label_smoothing=0.2 --set epochs=240``
    (in process): the spec handed to run_trial carries the named recipe with both overrides; the
    JSON line and the stored checkpoint name that very trial (its spec hash); the lr is
    0.05 x 1024/256 (linear scaling) / 16 (smoke) and each epoch's lr follows the cosine
    schedule of 240 paper epochs = 2 smoke epochs of 4 iterations."""
    import math

    import harness.commands.train as train_command
    from harness.checkpoint import load_checkpoint
    from harness.cli import main
    from harness.recipe import named_recipe
    from harness.spec import TrialSpec

    seen = []
    real = train_command.run_trial
    monkeypatch.setattr(train_command, "run_trial",
                        lambda spec, opts=None, on_epoch=None: seen.append(spec) or real(spec, opts, on_epoch))
    ck = tmp_path / "ck"
    rc = main(["train", "--model", "resnet18", "--scale", "smoke", "--recipe", "cosine",
               "--set", "base_lr=0.05", "--set", "label_smoothing=0.2", "--set", "epochs=240",
               "--checkpoint-dir", str(ck)])
    out = last_json_line(capsys.readouterr().out)
    assert rc == 0 and out["status"] == "done", out
    want = TrialSpec("resnet18", named_recipe("cosine").replace(base_lr=0.05, label_smoothing=0.2,
                                                                epochs=240), "smoke", 0)
    assert len(seen) == 1 and seen[0].recipe == want.recipe and seen[0].hash == want.hash
    assert out["spec_hash"] == want.hash and out["recipe"] == "cosine"
    assert {"cosine", "label_smoothing", "warmup", "zero_gamma"} <= set(out["tricks"])
    base = 0.05 * 1024 / 256 / 16
    assert out["lr"] == pytest.approx(base) and out["epochs"] == 2
    ckpt = load_checkpoint(ck / "ckpt.pt")
    assert ckpt["spec_hash"] == want.hash and ckpt["epoch"] == 2
    for row, it in zip(ckpt["history"], (3, 7)):
        assert row["lr"] == pytest.approx(0.5 * (1 + math.cos(math.pi * it / 8)) * base)
