"""Shared fixtures: tiny experiment files, CLI subprocesses, socket inspection, and the one
mixed Ray run that several reliability/security tests read.

Ray is expensive here (first init ~3 s, each Tune run ~10 s on 2 cores), so tests that only
*inspect* a Ray run share ``mixed_ray_run`` (session-scoped): one Tune run of four trials
that covers a worker killed mid-trial, a diverging trial, a failing trial and a plain one,
and records the listening sockets of Ray's processes while the run is live.
"""
from __future__ import annotations

import contextlib
import glob
import ipaddress
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]

os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("MPLBACKEND", "Agg")

# ---- hypothesis: the same examples on every machine and every run -------------------------
# derandomize: examples come from a hash of each test, not from a random seed; database=None:
# no replay of examples a previous run on this machine happened to save. A test's own
# @settings(...) inherits these. HYPOTHESIS_PROFILE=explore gives random search when wanted.
from hypothesis import settings as _hyp_settings  # noqa: E402

_hyp_settings.register_profile("harness", derandomize=True, database=None, print_blob=True)
_hyp_settings.register_profile("explore", derandomize=False, database=None, print_blob=True)
_hyp_settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "harness"))


# ---- experiment files ------------------------------------------------------------------
def experiment_dict(name: str, rows: list[dict], model: str = "resnet50_d", seeds: int = 1,
                    base_recipe: str = "baseline", **top: Any) -> dict[str, Any]:
    """A minimal experiment: the given rows x one column of ``model``, ``seeds`` seeds."""
    return {"name": name, "base_recipe": base_recipe, "seeds": seeds, "rows": rows,
            "columns": [{"label": model, "model": model}], **top}


@pytest.fixture
def write_experiment(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``write_experiment(name, rows, **kw)`` -> path of a YAML file in tmp_path."""

    def write(name: str, rows: list[dict], **kw: Any) -> Path:
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(experiment_dict(name, rows, **kw), sort_keys=False))
        return path

    return write


# ---- subprocesses ----------------------------------------------------------------------
def cli_env(extra_pythonpath: list[str] | None = None, **env: str) -> dict[str, str]:
    """Environment for ``python -m harness`` subprocesses: this checkout first on the path."""
    out = dict(os.environ)
    out.update(RAY_USAGE_STATS_ENABLED="0", MPLBACKEND="Agg", PYTHONUNBUFFERED="1")
    out["PYTHONPATH"] = os.pathsep.join([*(extra_pythonpath or []), str(REPO)])
    out.update(env)
    return out


def harness_cmd(*args: str) -> list[str]:
    return [sys.executable, "-m", "harness", *map(str, args)]


def run_cli(*args: str, cwd: Path, timeout: float = 600, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    """Run ``python -m harness ARGS`` in ``cwd`` and return the finished process (text)."""
    return subprocess.run(harness_cmd(*args), cwd=cwd, env=env or cli_env(), text=True,
                          capture_output=True, timeout=timeout)


def last_json_line(stdout: str) -> Any:
    """The last non-empty stdout line, parsed as JSON (the CLI's contract)."""
    lines = [ln for ln in stdout.splitlines() if ln.strip()]
    assert lines, "no stdout"
    return json.loads(lines[-1])


def stderr_lines(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.strip()]


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    """contextlib.chdir for Python 3.10 (pyproject allows it; chdir arrived in 3.11)."""
    old = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


# ---- Fashion-MNIST, found the way the harness finds it ----------------------------------------
def fashion_mnist_folder() -> Path | None:
    """The folder the harness itself would read Fashion-MNIST from (``find_fashion_mnist``:
    ``$HARNESS_DATA_ROOT``, else Debian's /usr/share/datasets/fashion-mnist, else
    ./data/FashionMNIST/raw), or None when it has none: tests that need the real files skip
    only then, wherever the files lie."""
    from harness.data import DataError
    from harness.data.fashion_mnist import find_fashion_mnist

    try:
        return find_fashion_mnist()
    except DataError:
        return None


def fashion_mnist_file(folder: Path, name: str) -> Path:
    """``folder/name`` (a ``*-ubyte.gz``), or its uncompressed twin, which the harness accepts too."""
    gz = folder / name
    return gz if gz.is_file() else folder / name.removesuffix(".gz")


def fashion_mnist_gz_bytes(folder: Path, name: str) -> bytes:
    """The gzip bytes of one Fashion-MNIST file (compressed here when only the raw file exists)."""
    import gzip

    path = fashion_mnist_file(folder, name)
    data = path.read_bytes()
    return data if path.suffix == ".gz" else gzip.compress(data, compresslevel=1)


# ---- sockets and processes (Linux /proc) ------------------------------------------------
def process_tree(root: int) -> set[int]:
    """``root`` and all its live descendants."""
    parent: dict[int, int] = {}
    for stat in glob.glob("/proc/[0-9]*/stat"):
        try:
            text = Path(stat).read_text()
        except OSError:
            continue
        pid = int(text.split(" ", 1)[0])
        parent[pid] = int(text.rsplit(")", 1)[1].split()[1])
    tree, frontier = {root}, [root]
    while frontier:
        p = frontier.pop()
        kids = [c for c, pp in parent.items() if pp == p and c not in tree]
        tree.update(kids)
        frontier.extend(kids)
    return tree


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def _decode_addr(hexaddr: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    raw = bytes.fromhex(hexaddr)
    if len(raw) == 4:
        return ipaddress.IPv4Address(raw[::-1])
    # /proc/net/tcp6: four 32-bit words, each in host (little-endian) order
    return ipaddress.IPv6Address(b"".join(raw[i:i + 4][::-1] for i in range(0, 16, 4)))


@dataclass(frozen=True)
class Listener:
    pid: int
    cmd: str
    address: str
    port: int

    @property
    def loopback(self) -> bool:
        ip = ipaddress.ip_address(self.address)
        mapped = getattr(ip, "ipv4_mapped", None)
        return ip.is_loopback or bool(mapped and mapped.is_loopback)


def listening_sockets(pids: set[int]) -> list[Listener]:
    """TCP sockets in LISTEN state owned by ``pids`` (inode -> pid via /proc/<pid>/fd)."""
    owner: dict[str, int] = {}
    for pid in pids:
        for fd in glob.glob(f"/proc/{pid}/fd/*"):
            try:
                link = os.readlink(fd)
            except OSError:
                continue
            if link.startswith("socket:["):
                owner[link[8:-1]] = pid
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] != "0A" or cols[9] not in owner:  # 0A = TCP_LISTEN
                continue
            addr, port = cols[1].split(":")
            pid = owner[cols[9]]
            found.append(Listener(pid, cmdline(pid), str(_decode_addr(addr)), int(port, 16)))
    return found


# ---- one embedded Ray session shared by the in-process Ray tests ---------------------------
KILL_AFTER_EPOCH = 2  # the 3-epoch trial is SIGKILLed right after its epoch-2 checkpoint
DISARMED = "disarmed\n"  # kill-marker content before the mixed run arms the hook


@pytest.fixture
def one_thread() -> Iterator[None]:
    """Tiny tensors: one thread is fastest and avoids OpenMP contention on a shared machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def kill_marker(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the mixed run's KillAfterCheckpoint (tests/ray_gate.py) records that it killed
    a worker. It fires only while this file does not exist, so it starts out present
    (disarmed); the mixed run deletes it (arms it) just before it starts."""
    marker = tmp_path_factory.mktemp("kill") / "killed.marker"
    marker.write_text(DISARMED)
    return marker


@pytest.fixture(scope="session")
def ray_gate(tmp_path_factory: pytest.TempPathFactory):
    """The gate of tests/ray_gate.py that every worker of the shared Ray session installs:
    a test arms it (``barrier(n)``, ``hold_after(k)``) to make trials overlap or pause by
    construction; it is disarmed (a no-op) otherwise, and after each test that arms it."""
    from ray_gate import Gate

    return Gate(tmp_path_factory.mktemp("ray_gate"))


@pytest.fixture
def armed_gate(ray_gate):
    """``ray_gate``, disarmed again when the test ends (whatever it armed)."""
    ray_gate.reset()
    yield ray_gate
    ray_gate.reset()


def ensure_local_ray(kill_marker: Path, gate) -> str:
    """Start (once) the embedded local Ray the in-process tests share, through the
    harness's own init_ray (loopback, dashboard off); returns its GCS address.

    4 CPUs and 4 declared GPUs (ray.init(num_gpus=4) on a GPU-less machine); every worker
    gets, via runtime_env, the test gate of tests/ray_gate.py (a no-op unless a test arms
    it) and tests/ on its path. Passing the address to RunOptions
    makes run_plan join this session instead of starting and stopping its own.
    """
    import ray

    from harness.ray_env import init_ray
    from ray_gate import runtime_env

    if not ray.is_initialized():
        init_ray(None, num_cpus=4, num_gpus=4, runtime_env=runtime_env(gate.folder))

        @ray.remote(num_cpus=1)
        def warm() -> int:
            time.sleep(1.0)  # hold the CPU so that several distinct workers start
            return os.getpid()

        # idle workers in the pool, so Tune's first actors start without waiting for new
        # worker processes (Ray starts at most #cores of them at a time)
        ray.get([warm.remote() for _ in range(4)])
    return ray.get_runtime_context().gcs_address


@pytest.fixture(scope="module")
def ray_down_after_module():
    """Shut Ray down when the module ends, so no session leaks into other test files."""
    yield
    from harness.ray_env import shutdown_ray

    shutdown_ray()


@pytest.fixture
def local_ray(kill_marker: Path, ray_gate, ray_down_after_module) -> str:
    return ensure_local_ray(kill_marker, ray_gate)


# ---- the shared mixed Ray run -------------------------------------------------------------

MIXED_ROWS = [
    # 3 epochs at smoke (360 paper epochs / 120); its worker is killed after epoch 2
    {"label": "killed", "recipe": {"epochs": 360}},
    {"label": "plain"},
    # lr 1e6 / 16 at smoke: the loss is NaN within the first epoch (checked in the test)
    {"label": "diverges", "recipe": {"base_lr": 1000000.0}},
    # batch 8192 / 16 = 512 > the 256 synthetic training images: the trial raises ValueError
    {"label": "fails", "recipe": {"batch_size": 8192}},
]


@dataclass
class MixedRun:
    store: Path
    results: Path
    experiment: Path
    marker: Path
    summary: Any
    plan: Any
    listeners: list[Listener] = field(default_factory=list)
    tree_cmds: list[str] = field(default_factory=list)
    log: list[str] = field(default_factory=list)

    def spec(self, row: str):
        return next(t for t in self.plan.all_trials() if t.row == row)


@pytest.fixture(scope="session")
def mixed_ray_run(tmp_path_factory: pytest.TempPathFactory, kill_marker: Path, ray_gate) -> MixedRun:
    """One real Ray Tune run (the shared embedded Ray) of MIXED_ROWS at the smoke scale.

    The trials' ``TrainOptions.after_checkpoint`` is a KillAfterCheckpoint (tests/ray_gate.py)
    that SIGKILLs the first worker to save epoch KILL_AFTER_EPOCH; ``max_failures=1`` lets
    Tune retry the killed trial once.
    While the run is live (at the first stored trial) the listening sockets of this
    process and all its descendants (GCS, raylet, agents, workers) are recorded.
    Callers shut Ray down at the end of their module (``ray_down_after_module``).
    """
    from harness.experiments import load_experiment, make_plan
    from harness.orchestrator import RunOptions, run_plan
    from harness.scales import SMOKE
    from harness.trial import TrainOptions
    from ray_gate import KillAfterCheckpoint

    root = tmp_path_factory.mktemp("mixed")
    exp_path = root / "mixed.yaml"
    exp_path.write_text(yaml.safe_dump(experiment_dict("mixed", MIXED_ROWS)))
    marker = kill_marker
    store = root / "results" / "store.sqlite"
    run = MixedRun(store=store, results=store.parent, experiment=exp_path, marker=marker,
                   summary=None, plan=make_plan(load_experiment(str(exp_path)), SMOKE))

    def log(msg: str) -> None:
        run.log.append(msg)
        if msg.startswith("[") and not run.listeners:
            tree = process_tree(os.getpid())
            run.listeners = listening_sockets(tree)
            run.tree_cmds = [cmdline(p) for p in sorted(tree)]

    address = ensure_local_ray(kill_marker, ray_gate)
    ray_gate.reset()  # the gate stays disarmed: this run needs no forced overlap
    assert marker.read_text() == DISARMED, "the kill hook fired before the mixed run"
    marker.unlink()  # arm the kill hook: the first trial to save epoch 2 is SIGKILLed
    opts = RunOptions(store=str(store), address=address, max_concurrent=2, gpus_per_trial=0,
                      max_failures=1, log=log,
                      train=TrainOptions(after_checkpoint=KillAfterCheckpoint(marker, KILL_AFTER_EPOCH)))
    t0 = time.time()
    run.summary = run_plan(run.plan, opts)
    run.log.append(f"mixed run took {time.time() - t0:.1f}s")
    return run
