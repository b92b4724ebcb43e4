"""The embedded cluster's isolation and joining a cluster by hand, as a new user would:

* SIGKILL of the driver leaves no process of its embedded cluster (nor its temp folder);
* with a separately started ``ray start --head`` cluster running (Ray's lookup and
  RAY_ADDRESS both pointing at it), and then with only its stale address file left, the
  default mode starts and uses a cluster of its own;
* joining that token-authenticated cluster: with the token in the default token file the run
  succeeds; without it, or with a wrong one, exit 2 and one line saying what to set.
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from conftest import cmdline, experiment_dict, last_json_line, process_tree, stderr_lines
from harness.ray_reaper import session_processes
from harness.store import Store
from ray_gate import TESTS_DIR, Gate
from ray_nodes import RayCluster, base_env, new_token

pytestmark = pytest.mark.slow


def _tiny(folder: Path, name: str = "tiny") -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(yaml.safe_dump(experiment_dict(name, [{"label": "a"}], model="resnet18")))
    return path


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


# The driver: harness.cli.main as `python -m harness` runs it, with the test gate of
# tests/ray_gate.py in its embedded cluster's workers (every trial waits before training).
from ray_gate import GATED_DRIVER  # noqa: E402  (one copy, in tests/ray_gate.py)


def test_sigkill_of_the_driver_leaves_no_embedded_ray_process(tmp_path):
    """A run whose trials are all held (so the cluster is up, agents and trial workers
    included) has its driver SIGKILLed: within a minute no process of its process tree is
    alive, none uses the cluster's temp folder, and the folder is gone."""
    gate = Gate(tmp_path / "gate")
    gate.hold_after(0)
    exp = _tiny(tmp_path)
    code = GATED_DRIVER.format(tests=str(TESTS_DIR), gate=str(gate.folder))
    driver = subprocess.Popen([sys.executable, "-c", code, "run", str(exp), "--scale", "smoke",
                               "--store", str(tmp_path / "results" / "h.sqlite")],
                              cwd=tmp_path, env=base_env(HOME=str(tmp_path)),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while True:  # until a trial worker holds in the gate (polling only: the gate holds it)
            tree = process_tree(driver.pid)
            cmds = {p: cmdline(p) for p in tree}
            if any(c.startswith("ray::ImplicitFunc") for c in cmds.values()):
                break
            assert driver.poll() is None, "the driver ended before it could be killed"
            assert time.monotonic() < deadline, cmds
            time.sleep(0.5)
        reaper = [c for c in cmds.values() if "ray_reaper.py" in c]
        assert len(reaper) == 1, cmds
        folder = reaper[0].split()[-2]
        assert re.search(r"/ray-harness-[^/]+$", folder) and session_processes(folder)
        assert any("raylet" in c for c in cmds.values()) and any("DashboardAgent" in c for c in cmds.values())
        os.kill(driver.pid, signal.SIGKILL)
        driver.wait(timeout=30)
        tree.discard(driver.pid)
        deadline = time.monotonic() + 60
        while ([p for p in tree if _alive(p)] or session_processes(folder) or Path(folder).exists()) \
                and time.monotonic() < deadline:
            time.sleep(0.5)
        assert [cmds[p] for p in tree if _alive(p)] == []
        assert session_processes(folder) == []
        assert not Path(folder).exists()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()


# ---- a cluster started by hand ------------------------------------------------------------------
@pytest.fixture(scope="module")
def head(tmp_path_factory):
    """``ray start --head`` with token authentication and one CPU, in a folder of its own."""
    ray = RayCluster(tmp_path_factory.mktemp("head"), token=new_token())
    try:
        ray.start_head(num_cpus=1)
        yield ray
    finally:
        ray.stop()


def _driver(head: RayCluster, tmp_path: Path, *args: str, token_file: bool = False,
            **env: str) -> subprocess.CompletedProcess:
    """``python -m harness ARGS`` as a user on this machine would run it: no Ray variables
    set, HOME a fresh folder (with the cluster's token in ~/.ray/auth_token if asked)."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    if token_file:
        (home / ".ray").mkdir(exist_ok=True)
        (home / ".ray" / "auth_token").write_text(head.token or "")
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return subprocess.run([sys.executable, "-m", "harness", *args], cwd=work,
                          env=base_env(HOME=str(home), RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0", **env),
                          capture_output=True, text=True, timeout=600)


def test_join_with_token_from_the_default_token_file(head, tmp_path):
    """The cluster's token in ~/.ray/auth_token, RAY_AUTH_MODE unset: the run joins and
    trains on the cluster (the trial ran on its node)."""
    exp = _tiny(tmp_path)
    store = tmp_path / "work" / "results" / "h.sqlite"
    proc = _driver(head, tmp_path, "run", str(exp), "--scale", "smoke", "--no-report", "--json",
                   "--store", str(store), "--address", head.address, token_file=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert last_json_line(proc.stdout)["done"] == 1
    with Store(store, readonly=True) as st:
        node_id = st.trials_df()["extra"][0]["node_id"]
    assert node_id in head.node_names()


@pytest.mark.parametrize("case", ["no_token", "wrong_token"])
def test_join_without_the_token_exit_2_one_line(head, tmp_path, case):
    """No token anywhere (no RAY_AUTH_TOKEN, no ~/.ray/auth_token), or a wrong one: exit 2
    with one line naming the address and what to set, and nothing written."""
    exp = _tiny(tmp_path)
    env = {"RAY_AUTH_TOKEN": "0" * 32} if case == "wrong_token" else {}
    proc = _driver(head, tmp_path, "run", str(exp), "--scale", "smoke", "--store",
                   str(tmp_path / "work" / "results" / "h.sqlite"), "--address", head.address, **env)
    assert proc.returncode == 2, proc.stderr[-3000:]
    lines = stderr_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr
    assert repr(head.address) in lines[0] and "RAY_AUTH_TOKEN" in lines[0], lines
    assert ("rejected" in lines[0]) == (case == "wrong_token"), lines
    assert list((tmp_path / "work").iterdir()) == []


def test_default_mode_ignores_a_live_ray_start_cluster(head, tmp_path):
    """RAY_ADDRESS and Ray's own lookup (the address file ``ray start`` wrote, found through
    RAY_TMPDIR) both name the live cluster: without --address the run still starts and
    uses an embedded cluster of its own (its trial's node is not the cluster's)."""
    node = head.nodes["head"]
    assert Path(node.temp_dir, "ray_current_cluster").is_file()
    exp = _tiny(tmp_path)
    store = tmp_path / "work" / "results" / "h.sqlite"
    proc = _driver(head, tmp_path, "run", str(exp), "--scale", "smoke", "--no-report", "--json",
                   "--store", str(store), RAY_ADDRESS=head.address, RAY_TMPDIR=node.temp_base,
                   token_file=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with Store(store, readonly=True) as st:
        node_id = st.trials_df()["extra"][0]["node_id"]
    assert node_id not in head.node_names()


def test_default_mode_ignores_a_stale_address_file(head, tmp_path):
    """The cluster killed without ``ray stop`` (its address file left behind) and RAY_ADDRESS
    still naming it: the default mode starts its own cluster and finishes the run instead of
    retrying the dead GCS. (Kills the module's cluster: the last test here.)"""
    node = head.nodes["head"]
    head.kill_node("head")
    assert Path(node.temp_dir, "ray_current_cluster").read_text().strip() == head.address
    exp = _tiny(tmp_path)
    proc = _driver(head, tmp_path, "run", str(exp), "--scale", "smoke", "--no-report", "--json",
                   "--store", str(tmp_path / "work" / "results" / "h.sqlite"),
                   RAY_ADDRESS=head.address, RAY_TMPDIR=node.temp_base)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert last_json_line(proc.stdout)["done"] == 1
