"""Experiment tracking as an option (issue 22 item 7): ``run --log tensorboard|mlflow``.

The fast tests check the flags' bad input; the slow ones run a two-trial smoke table on the
shared embedded Ray and read back what the trackers wrote: TensorBoard event files (parsed
record by record, no TensorBoard needed) and MLflow runs in a file store under tmp_path.
"""
from __future__ import annotations

import contextlib
import io
import struct
from pathlib import Path

import pytest

from harness.cli import main
from harness.errors import HarnessError
from harness.experiments import make_plan, parse_experiment
from harness.scales import get_scale
from harness.tracking import check_tracker, mlflow_uri, trial_tags

ROWS = [{"label": "baseline"}, {"label": "+ zero-gamma", "recipe": {"zero_gamma": True}}]


def _cli(argv: list[str]) -> tuple[int, list[str]]:
    err = io.StringIO()
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(err):
        try:
            code = main(argv)
        except SystemExit as exc:  # argparse's own errors
            code = exc.code
    return code, [ln for ln in err.getvalue().splitlines() if ln.strip()]


def test_bad_log_value_exits_2_naming_the_choices(tmp_path):
    """--log with an unknown tracker: exit 2, one line naming it and both valid choices, no store."""
    store = tmp_path / "s.sqlite"
    code, lines = _cli(["run", "paper_table2", "--scale", "smoke", "--store", str(store), "--log", "wandb"])
    assert code == 2 and len(lines) == 1
    assert "'wandb'" in lines[0] and "tensorboard" in lines[0] and "mlflow" in lines[0]
    assert not store.exists()


def test_log_dir_needs_mlflow(tmp_path):
    """--log-dir belongs to --log mlflow: with tensorboard or without --log it is refused
    before the store is written."""
    store = tmp_path / "s.sqlite"
    for extra in (["--log", "tensorboard", "--log-dir", str(tmp_path)], ["--log-dir", str(tmp_path)]):
        code, lines = _cli(["run", "paper_table2", "--scale", "smoke", "--store", str(store), *extra])
        assert code == 2 and len(lines) == 1 and "--log-dir" in lines[0], lines
    assert not store.exists()


@pytest.mark.parametrize("extra, names", [
    (["--log", "tensorboard", "--log-dir", "tb"], "--log-dir"),
    (["--budget", "30 minutes", "--until-decisive"], "--budget"),
    (["--budget", "30m"], "--until-decisive"),
    (["--storage", "s3:///no-bucket"], "--storage"),
])
def test_dry_run_checks_the_flags_a_run_would_refuse(tmp_path, monkeypatch, extra, names):
    """A dry run is a preflight: the flags a real run refuses (before it writes anything)
    are refused there too, one line naming the value, exit 2, nothing written."""
    monkeypatch.chdir(tmp_path)
    store = tmp_path / "s.sqlite"
    code, lines = _cli(["run", "paper_table2", "--scale", "smoke", "--store", str(store),
                        "--dry-run", *extra])
    assert code == 2 and len(lines) == 1 and names in lines[0], lines
    assert list(tmp_path.iterdir()) == []


def test_mlflow_missing_says_how_to_install(monkeypatch):
    """Without MLflow importable, --log mlflow is one line saying what to install."""
    import harness.tracking as tracking

    monkeypatch.setattr(tracking.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(HarnessError, match=r"pip install .*mlflow-skinny"):
        check_tracker("mlflow")


def test_mlflow_uri_precedence(tmp_path, monkeypatch):
    """--log-dir, else $MLFLOW_TRACKING_URI, else results/mlruns beside the store."""
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert mlflow_uri(None, tmp_path) == (tmp_path / "mlruns").resolve().as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:5000")
    assert mlflow_uri(None, tmp_path) == "http://127.0.0.1:5000"
    assert mlflow_uri(str(tmp_path / "x"), tmp_path) == (tmp_path / "x").resolve().as_uri()


# ---- on Ray ------------------------------------------------------------------------------------
def _plan(tmp_path: Path):
    exp = parse_experiment({"name": "track", "title": "tracking", "rows": ROWS, "seeds": 1,
                            "columns": [{"label": "R18", "model": "resnet18"}]}, src="track")
    return make_plan(exp, get_scale("smoke"), 1)


def _events(path: Path):
    """Every Event record of a TensorBoard event file (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    data, out, i = path.read_bytes(), [], 0
    while i < len(data):
        (n,) = struct.unpack("<Q", data[i:i + 8])
        out.append(event_pb2.Event.FromString(data[i + 12:i + 12 + n]))
        i += 12 + n + 4
    return out


@pytest.mark.slow
def test_tensorboard_events_per_trial_tagged_with_the_spec_hash(tmp_path, local_ray):
    """--log tensorboard: each trial's Tune folder (named by its spec hash) holds an event
    file whose scalars include top1 and whose hparams name the trial's spec hash."""
    from harness.orchestrator import RunOptions, run_plan

    plan = _plan(tmp_path)
    store = tmp_path / "r" / "s.sqlite"
    summary = run_plan(plan, RunOptions(store=str(store), address=local_ray, tracker="tensorboard"))
    assert summary.done == 2
    for spec in plan.all_trials():
        files = list((store.parent / "ray").glob(f"track-*/{spec.hash}/events.out.tfevents.*"))
        assert len(files) == 1, files
        events = _events(files[0])
        tags = {v.tag for e in events for v in e.summary.value}
        assert any(t.endswith("top1") for t in tags)
        hparams = b"".join(v.metadata.plugin_data.content for e in events for v in e.summary.value
                           if v.metadata.plugin_data.plugin_name == "hparams")
        assert spec.hash.encode() in hparams and b"spec_hash" in hparams


@pytest.mark.slow
def test_mlflow_one_run_per_trial_tagged_with_the_spec_hash(tmp_path, local_ray):
    """--log mlflow into a file store under tmp_path: one run per trial, tagged with its spec
    hash, table, row, column and seed, with its epoch metrics."""
    pytest.importorskip("mlflow", reason="mlflow-skinny (the 'tracking' extra) is not installed")
    from mlflow.tracking import MlflowClient

    from harness.orchestrator import RunOptions, run_plan

    plan = _plan(tmp_path)
    uri = mlflow_uri(str(tmp_path / "mlruns"), tmp_path)
    summary = run_plan(plan, RunOptions(store=str(tmp_path / "s.sqlite"), address=local_ray,
                                        tracker="mlflow", log_dir=uri))
    assert summary.done == 2
    client = MlflowClient(tracking_uri=uri)
    runs = client.search_runs([client.get_experiment_by_name("track").experiment_id])
    by_hash = {r.data.tags["spec_hash"]: r for r in runs}
    assert len(runs) == 2 and set(by_hash) == {s.hash for s in plan.all_trials()}
    for spec in plan.all_trials():
        run = by_hash[spec.hash]
        assert {k: run.data.tags[k] for k in ("table", "row", "column", "seed")} == {
            "table": "track", "row": spec.row, "column": "R18", "seed": "0"}
        assert run.info.status == "FINISHED" and "top1" in run.data.metrics


def test_trial_tags_from_a_worker_config():
    """The tags come from the trial's Tune config (what worker_config sends)."""
    from harness.orchestrator import worker_config
    from harness.trial import TrainOptions
    from harness.workspace import TrialFiles
    from harness.storage import Storage

    spec = _plan(Path(".")).all_trials()[1]
    files = TrialFiles.of(Storage.local("/tmp"), spec.hash)
    tags = trial_tags(worker_config(spec, TrainOptions(), files))
    assert tags == {"spec_hash": spec.hash, "table": "track", "row": "+ zero-gamma", "column": "R18",
                    "seed": "0", "model": "resnet18", "scale": "smoke"}
