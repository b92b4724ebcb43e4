"""The Ray Tune orchestrator end to end: a whole paper table through the CLI, stored trials
never retrained, GPUs and nodes shared out, failures contained, a killed driver resumed.
"""
from __future__ import annotations

import contextlib
import io
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import chdir, cli_env, last_json_line, run_cli
from ray_gate import TESTS_DIR, Gate, runtime_env
from harness.cli import main
from harness.experiments import load_experiment, make_plan
from harness.orchestrator import RunOptions, run_plan
from harness.scales import SMOKE
from harness.store import Store

SUMMARY_KEYS = {"table", "scale", "trials", "done", "failed", "skipped", "report"}

pytestmark = pytest.mark.usefixtures("ray_down_after_module")


def _quiet(msg: str) -> None:
    pass


def _stored(store: Path) -> dict[str, str]:
    """spec_hash -> run_id of the stored trials (read-only; the driver may be writing)."""
    if not store.exists():
        return {}
    try:
        with Store(store, readonly=True) as st:
            df = st.trials_df()
    except Exception:  # the driver may still be creating the file
        return {}
    return dict(zip(df["spec_hash"], df["run_id"]))


# The first run's driver: harness.cli.main, as ``python -m harness`` runs it, with the test
# gate of tests/ray_gate.py installed in its embedded Ray's workers (one keyword added to the
# harness's init_ray). Everything else is the real command.
from ray_gate import GATED_DRIVER  # noqa: E402  (one copy, in tests/ray_gate.py)
KILLED_AFTER = 3  # trials stored when the driver is killed


@pytest.fixture(scope="module")
def table6(tmp_path_factory):
    """``run paper_table6 --scale smoke --json`` three times in a fresh folder:

    1. killed (SIGKILL to the driver) with exactly 3 trials stored: the gate lets the first 3
       trials train and holds every later one before it trains, so the run stands still
       with 3 trials stored and the rest unstarted or running, whatever the machine's speed;
    2. run again to the end (``--json``, report written; the plain command, no gate);
    3. run a third time (``--json --no-report``, in process): everything is stored by then.
    """
    cwd = tmp_path_factory.mktemp("table6")
    gate = Gate(tmp_path_factory.mktemp("table6_gate"))
    gate.hold_after(KILLED_AFTER)
    store = cwd / "results" / "harness.sqlite"
    args = ["run", "paper_table6", "--scale", "smoke", "--store", store, "--json"]
    code = GATED_DRIVER.format(tests=str(TESTS_DIR), gate=str(gate.folder))
    driver = subprocess.Popen([sys.executable, "-c", code, *map(str, args)], cwd=cwd, env=cli_env(),
                              text=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        while len(_stored(store)) < KILLED_AFTER and driver.poll() is None:
            time.sleep(0.2)  # polling interval only: the gate, not time, decides what is stored
        assert driver.poll() is None, "the driver ended before it could be killed"
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
    finally:
        try:  # whatever the driver started in its session must not outlive the test
            os.killpg(driver.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    killed = _stored(store)
    resumed = run_cli(*args, cwd=cwd)
    after_resume = _stored(store)
    # the third run needs no Ray and no training: in this process (no interpreter start-up)
    out, err = io.StringIO(), io.StringIO()
    with chdir(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        rc = main([*map(str, args), "--no-report"])
    again = subprocess.CompletedProcess(args, rc, out.getvalue(), err.getvalue())
    return {"cwd": cwd, "store": store, "killed": killed, "resumed": resumed,
            "after_resume": after_resume, "again": again}


@pytest.mark.slow
def test_table6_smoke_runs_every_trial_and_prints_json(table6):
    """All 38 trials of Table 6 (2 teachers + 6 rows x 3 models x 2 seeds) end up stored
    as done; the run's last stdout line is the JSON summary and the report is written."""
    proc = table6["resumed"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = last_json_line(proc.stdout)
    assert SUMMARY_KEYS <= set(summary)
    assert (summary["table"], summary["scale"]) == ("paper_table6", "smoke")
    assert summary["trials"] == 38
    assert summary["done"] + summary["skipped"] == 38
    assert summary["failed"] == 0 and summary["diverged"] == 0
    assert (table6["cwd"] / summary["report"]).is_file()
    with Store(table6["store"], readonly=True) as st:
        df = st.trials_df(table_name="paper_table6")
    assert len(df) == 38 and set(df["status"]) == {"done"}
    assert df["spec_hash"].is_unique


@pytest.mark.slow
def test_killed_driver_resumes_only_missing_trials(table6):
    """SIGKILL the driver once its first trials are stored: the next run trains only the
    missing trials (skipped == what was stored; those keep their run_id), every trial
    ends up done exactly once, and the store passes PRAGMA integrity_check."""
    killed, resumed = table6["killed"], table6["resumed"]
    assert len(killed) == KILLED_AFTER
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = last_json_line(resumed.stdout)
    assert summary["skipped"] == len(killed)
    assert summary["done"] == 38 - len(killed)
    after = table6["after_resume"]
    assert {h: after[h] for h in killed} == killed  # not retrained
    conn = sqlite3.connect(f"file:{table6['store']}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
    finally:
        conn.close()


@pytest.mark.slow
def test_table6_second_run_trains_nothing(table6):
    """Running the table once more finds every trial stored: skipped == trials, nothing is
    retrained (every row keeps its run_id)."""
    proc = table6["again"]
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = last_json_line(proc.stdout)
    assert summary["skipped"] == summary["trials"] == 38
    assert summary["done"] == 0 and summary["failed"] == 0
    assert _stored(table6["store"]) == table6["after_resume"]


@pytest.mark.slow
def test_dry_run_prints_plan_and_trains_nothing(tmp_path, capsys, monkeypatch):
    """``run paper_table6 --dry-run`` prints every planned trial and a compute estimate, and
    writes nothing (no store, no report, no checkpoints) and starts no Ray."""
    import ray

    monkeypatch.chdir(tmp_path)
    ray_was_up = ray.is_initialized()
    store = tmp_path / "results" / "harness.sqlite"
    assert main(["run", "paper_table6", "--scale", "smoke", "--store", str(store), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert "38 trials in 2 stage(s), 0 stored" in out
    plan = make_plan(load_experiment("paper_table6"), SMOKE)
    for spec in plan.all_trials():
        assert spec.hash[:10] in out
    assert list(tmp_path.iterdir()) == []
    assert ray.is_initialized() == ray_was_up


@pytest.mark.slow
def test_trials_spread_over_two_nodes(tmp_path, write_experiment, armed_gate):
    """On a two-node Ray cluster (ray.cluster_utils, one CPU per node) joined by address,
    trials run on both nodes: the stored Ray node ids cover both. The gate's barrier holds
    each trial until both have started, so the two run at once, which one CPU per node allows
    only on different nodes (no reliance on trials happening to overlap in time)."""
    import ray
    from ray.cluster_utils import Cluster

    from harness.ray_env import shutdown_ray

    shutdown_ray()  # the driver must join the cluster, not a session left by another test
    path = write_experiment("nodes", [{"label": "a"}], seeds=2)
    plan = make_plan(load_experiment(str(path)), SMOKE)
    assert len(plan.all_trials()) == 2
    armed_gate.barrier(2)
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        node_ids = {n.node_id for n in cluster.list_all_nodes()}
        assert len(node_ids) == 2
        store = tmp_path / "store.sqlite"
        summary = run_plan(plan, RunOptions(store=str(store), address=cluster.address, max_concurrent=2,
                                            ray_init_kwargs={"runtime_env": runtime_env(armed_gate.folder)},
                                            log=_quiet))
        assert summary.done == 2, summary
        assert armed_gate.arrivals() == 2  # both trials went through the barrier
        with Store(store, readonly=True) as st:
            used = {e["node_id"] for e in st.trials_df()["extra"]}
        assert used == node_ids
    finally:
        ray.shutdown()
        cluster.shutdown()


@pytest.mark.slow
def test_four_fake_gpus_one_per_trial(tmp_path, write_experiment, local_ray, armed_gate):
    """With 4 GPUs declared to Ray (``ray.init(num_gpus=4)`` on this GPU-less machine) and
    gpus_per_trial=1, four concurrent trials each get their own GPU: CUDA_VISIBLE_DEVICES
    differs per trial (recorded in the store's extra column)."""
    # The gate's barrier holds each trial until all four have started: four actors at once,
    # each holding a GPU. (Without it Tune may hand a finished trial's actor, and its GPU, to
    # a trial whose own actor has not started yet: correct, but not four distinct GPUs.)
    # The kill hook is disarmed: its marker file exists.
    rows = [{"label": "a"}, {"label": "b", "recipe": {"label_smoothing": 0.1}}]
    path = write_experiment("gpus", rows, seeds=2)
    plan = make_plan(load_experiment(str(path)), SMOKE)
    assert len(plan.all_trials()) == 4
    store = tmp_path / "store.sqlite"
    armed_gate.barrier(4)
    # local_ray: the shared embedded session, started with num_gpus=4, num_cpus=4 and the gate
    opts = RunOptions(store=str(store), address=local_ray, gpus_per_trial=1, max_concurrent=4,
                      log=_quiet)
    summary = run_plan(plan, opts)
    assert summary.done == 4, summary
    assert armed_gate.arrivals() == 4  # all four went through the barrier
    with Store(store, readonly=True) as st:
        extras = list(st.trials_df()["extra"])
    devices = sorted(e["cuda_visible_devices"] for e in extras)
    assert devices == ["0", "1", "2", "3"], extras


@pytest.mark.slow
def test_failing_trial_is_stored_as_failed_and_others_finish(mixed_ray_run):
    """A trial that raises inside its Ray worker (batch 512 > 256 training images) is
    stored as 'failed' with the exception's message; the run's other trials finish."""
    run = mixed_ray_run
    with Store(run.store, readonly=True) as st:
        df = st.trials_df()
    rows = {r.row_label: r for r in df.itertuples()}
    assert len(rows) == 4
    assert rows["fails"].status == "failed"
    assert "batch size 512 exceeds the 256 training images" in rows["fails"].error
    assert "\n" not in rows["fails"].error
    assert rows["plain"].status == "done" and rows["killed"].status == "done"
    assert run.summary.failed == 1
