"""Real clusters for the cluster and storage tests (test code only, never imported by the harness).

* :class:`MotoServer`: moto's S3-compatible server on a free loopback port, in a process of
  its own, with a bucket; credentials are the test's fake ones.
* :class:`RayCluster`: ``ray start`` nodes on 127.0.0.1, each a separate process tree in a
  folder of its own (working folder, TMPDIR, HOME) with a Ray temp folder of its own. They
  are stopped by that temp folder (``harness.ray_reaper.kill_session``), never with
  ``ray stop``, which stops every Ray on the machine. Worker nodes start through
  ``tests/ray_node_start.py`` (``ray start`` that keeps a worker node on loopback).
* Every node's Python processes import ``tests/cluster_site/sitecustomize.py``, an audit
  hook that records each ``open`` of a path under the folders a node must not touch (the
  driver's, the other nodes') and the working folder of every process that imports the
  trainer; :meth:`RayCluster.violations` and :meth:`RayCluster.trial_processes` read them.
"""
from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from harness.ray_reaper import kill_session

TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
SITE_DIR = TESTS_DIR / "cluster_site"
NODE_START = TESTS_DIR / "ray_node_start.py"
RAY = str(Path(sys.executable).with_name("ray"))
S3_ENV = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
          "AWS_DEFAULT_REGION": "us-east-1", "AWS_EC2_METADATA_DISABLED": "true"}
# Ray's own switch: with it off, the Ray processes that read it take 127.0.0.1 as this
# machine's IP, so nothing of a test cluster listens beyond loopback
LOOPBACK = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def base_env(**extra: str) -> dict[str, str]:
    """This environment less any Ray address, auth or storage settings, plus ``extra``."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_AUTH", "AWS_", "HARNESS_STORAGE", "CLUSTER_GUARD"))
           and k not in ("RAY_ADDRESS", "PYTHONPATH")}
    env.update(RAY_USAGE_STATS_ENABLED="0", MPLBACKEND="Agg", PYTHONUNBUFFERED="1",
               PYTHONPATH=os.pathsep.join([str(REPO), str(TESTS_DIR)]))
    env.update(extra)
    return env


# ---- S3 ---------------------------------------------------------------------------------
class MotoServer:
    """``python -m moto.server`` on 127.0.0.1:<free port>, stopped by :meth:`stop`."""

    def __init__(self, folder: Path, bucket: str = "harness-test") -> None:
        self.port = free_port()
        self.bucket = bucket
        self.endpoint = f"127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        self.log = (folder / "moto.log").open("w")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                      "-p", str(self.port)], env=base_env(**S3_ENV), cwd=folder,
                                     stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while True:
            try:
                urllib.request.urlopen(f"http://{self.endpoint}/", timeout=2).close()
                break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto server did not start: {(folder / 'moto.log').read_text()[-2000:]}")
                time.sleep(0.2)
        self.client().create_bucket(Bucket=bucket)

    def uri(self, prefix: str) -> str:
        return f"s3://{self.bucket}/{prefix}?endpoint_override={self.endpoint}&scheme=http"

    def client(self) -> Any:
        import boto3

        return boto3.client("s3", endpoint_url=f"http://{self.endpoint}", region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def keys(self, prefix: str = "") -> list[str]:
        out, token = [], None
        while True:
            kw = {"Bucket": self.bucket, "Prefix": prefix, **({"ContinuationToken": token} if token else {})}
            page = self.client().list_objects_v2(**kw)
            out += [o["Key"] for o in page.get("Contents", [])]
            token = page.get("NextContinuationToken")
            if not token:
                return out

    def stop(self) -> None:
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.log.close()


# ---- Ray --------------------------------------------------------------------------------
@dataclass
class Node:
    name: str
    folder: Path  # its working folder, TMPDIR and HOME live here
    temp_dir: str  # Ray's temp folder of this node: <short base>/ray (unix socket paths are short)

    @property
    def temp_base(self) -> str:
        """As RAY_TMPDIR, Ray's own lookup of "the latest cluster" finds this node's address file."""
        return os.path.dirname(self.temp_dir)
    env: dict[str, str] = field(default_factory=dict)


class RayCluster:
    """A head and worker nodes started by hand, as docs/cluster.md tells a user to."""

    def __init__(self, root: Path, token: str | None = None, s3: bool = False) -> None:
        self.root = root
        self.token = token
        self.s3 = s3
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.nodes: dict[str, Node] = {}
        self.guard_log = root / "guard"
        self.guard_log.mkdir(parents=True, exist_ok=True)
        self.driver_dir = root / "driver"
        self.driver_dir.mkdir(exist_ok=True)

    def _auth(self) -> dict[str, str]:
        return {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": self.token} if self.token else {"RAY_AUTH_MODE": "disabled"}

    def _node(self, name: str) -> Node:
        folder = self.root / name
        for sub in ("work", "tmp", "home"):
            (folder / sub).mkdir(parents=True, exist_ok=True)
        temp = os.path.join(tempfile.mkdtemp(prefix="rh-", dir="/tmp"), "ray")
        env = base_env(**LOOPBACK, **self._auth(), **(S3_ENV if self.s3 else {}),
                       TMPDIR=str(folder / "tmp"), HOME=str(folder / "home"), CLUSTER_NODE=name,
                       CLUSTER_GUARD_LOG=str(self.guard_log))
        env["PYTHONPATH"] = os.pathsep.join([str(SITE_DIR), str(REPO), str(TESTS_DIR)])
        node = Node(name, folder, temp, env)
        self.nodes[name] = node
        return node

    def _forbid(self) -> None:
        """Each node may not open the driver's folder or another node's."""
        for node in self.nodes.values():
            others = [str(self.driver_dir)] + [str(n.folder) for n in self.nodes.values() if n is not node]
            node.env["CLUSTER_GUARD_FORBID"] = os.pathsep.join(others)

    def _start(self, node: Node, argv: list[str]) -> None:
        self._forbid()
        log = node.folder / "ray-start.log"
        with log.open("w") as fh:
            proc = subprocess.run(argv, cwd=node.folder / "work", env=node.env, stdout=fh,
                                  stderr=subprocess.STDOUT, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(argv[:3])} failed: {log.read_text()[-3000:]}")

    def start_head(self, num_cpus: int = 0, system_config: dict[str, Any] | None = None) -> None:
        node = self._node("head")
        argv = [RAY, "start", "--head", "--port", str(self.port), "--node-ip-address", "127.0.0.1",
                "--temp-dir", node.temp_dir, "--include-dashboard=false", "--num-cpus", str(num_cpus),
                "--num-gpus", "0", "--dashboard-agent-listen-port", "0", "--node-name", "head",
                "--object-store-memory", str(100 * 2**20), "--disable-usage-stats"]
        if system_config:
            argv += ["--system-config", json.dumps(system_config)]
        self._start(node, argv)

    def add_node(self, name: str, num_cpus: int = 1) -> None:
        node = self._node(name)
        argv = [sys.executable, str(NODE_START), "start", "--address", self.address,
                "--node-ip-address", "127.0.0.1", "--temp-dir", node.temp_dir, "--num-cpus", str(num_cpus),
                "--num-gpus", "0", "--dashboard-agent-listen-port", "0", "--node-name", name,
                "--object-store-memory", str(100 * 2**20), "--disable-usage-stats"]
        self._start(node, argv)

    def driver_env(self, **extra: str) -> dict[str, str]:
        """A driver on this machine: the cluster's token and S3 credentials, no audit hook."""
        return base_env(**LOOPBACK, **self._auth(), **(S3_ENV if self.s3 else {}), **extra)

    def node_names(self) -> dict[str, str]:
        """Ray node id -> the node's name, dead nodes included (asked of the GCS)."""
        code = ("import json, sys; from ray._raylet import GcsClient; "
                "info = GcsClient(address=sys.argv[1]).get_all_node_info(timeout=10); "
                "print(json.dumps({k.hex(): v.node_name for k, v in info.items()}))")
        out = subprocess.run([sys.executable, "-c", code, self.address], env=self.driver_env(),
                             capture_output=True, text=True, timeout=60)
        return json.loads(out.stdout.strip().splitlines()[-1])

    def kill_node(self, name: str) -> None:
        """SIGTERM, then SIGKILL, every process of the node; its files (the address file
        ``ray start`` wrote included) stay."""
        kill_session(self.nodes[name].temp_dir)

    def stop(self) -> None:
        for node in reversed(list(self.nodes.values())):
            kill_session(node.temp_base)
            subprocess.run(["rm", "-rf", node.temp_base], check=False)

    # ---- what the audit hook saw ---------------------------------------------------------
    def _records(self, kind: str) -> list[dict[str, Any]]:
        out = []
        for p in sorted(self.guard_log.glob(f"{kind}-*.json")):
            try:
                out.append(json.loads(p.read_text()))
            except (OSError, ValueError):
                continue
        return out

    def violations(self) -> list[dict[str, Any]]:
        return self._records("violation")

    def clear_records(self) -> None:
        for p in self.guard_log.glob("*.json"):
            p.unlink()

    def trial_processes(self) -> list[dict[str, Any]]:
        return self._records("trial")


def new_token() -> str:
    return secrets.token_hex(16)


class KillNodeAfterCheckpoint:
    """``TrainOptions.after_checkpoint`` that takes a whole node down like a lost machine:
    the first process to pass epoch ``epoch`` (its checkpoint already uploaded: the
    workspace uploads before this hook runs) creates ``marker`` (atomically: one kill in
    all), SIGKILLs its raylet (its parent) and then itself. Picklable by reference
    (tests/ is on every node's path)."""

    def __init__(self, marker: Path, epoch: int) -> None:
        self.marker, self.epoch = str(marker), epoch

    def __call__(self, row: dict[str, Any]) -> None:
        if int(row["epoch"]) != self.epoch:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        parent = os.getppid()
        cmd = Path(f"/proc/{parent}/cmdline").read_bytes().split(b"\0")[0].decode(errors="replace")
        os.write(fd, json.dumps({"node": os.environ.get("CLUSTER_NODE"), "pid": os.getpid(),
                                 "parent": cmd, "epoch": self.epoch}).encode())
        os.close(fd)
        if cmd.endswith("raylet"):
            os.kill(parent, signal.SIGKILL)
        os.kill(os.getpid(), signal.SIGKILL)
