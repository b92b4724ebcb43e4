"""A gate around the trainer inside Ray workers, so Ray tests get the overlap (or the pause)
they need by construction instead of by timing.

Ray runs :func:`install` in every worker of a session started with :func:`runtime_env`
(``worker_process_setup_hook``). It wraps ``harness.trainer.run_trial`` (the trainer's
stable entry point, which the orchestrator calls for every trial) with :func:`_gate`, which
reads what a test armed in the gate folder (``$HARNESS_TEST_GATE_DIR``):

* ``barrier`` holding N: each trial, before it trains, registers and waits until N trials
  have registered, so N trials are provably running at the same time (each on its own
  actor, with its own resources);
* ``hold_after`` holding K: the first K trials to start train as usual; every later trial
  waits before training until its worker is killed (the run stands still with exactly K
  trials finished).

With nothing armed, run_trial is untouched. Test code only, never imported by the harness.
"""
from __future__ import annotations

import importlib.abc
import os
import sys
import time
from pathlib import Path
from typing import Any

ENV = "HARNESS_TEST_GATE_DIR"
TESTS_DIR = Path(__file__).resolve().parent
REPO = TESTS_DIR.parent
BARRIER_LIMIT_S = 600.0  # hang guard: a barrier that never fills fails its trials
HOLD_LIMIT_S = 1800.0  # hang guard: a held worker whose driver never kills it exits


# ---- driver side ----------------------------------------------------------------------
def runtime_env(gate_dir: Path, env_vars: dict[str, str] | None = None) -> dict[str, Any]:
    """The runtime_env that installs the gate in every worker: this module and this checkout
    first on the workers' path (so they run the harness under test), the gate folder, and
    ``env_vars`` (e.g. the trainer's kill hook)."""
    path = [str(TESTS_DIR), str(REPO)]
    path += [str(Path(p).resolve()) for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    env = {"PYTHONPATH": os.pathsep.join(dict.fromkeys(path)), ENV: str(gate_dir), **(env_vars or {})}
    return {"env_vars": env, "worker_process_setup_hook": "ray_gate.install"}


class Gate:
    """Arms and disarms the gate folder from a test (the driver's side)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        folder.mkdir(parents=True, exist_ok=True)

    def _write(self, name: str, text: str) -> None:
        tmp = self.folder / f".{name}.tmp"
        tmp.write_text(text)
        tmp.replace(self.folder / name)  # atomic: a worker never reads half a number

    def reset(self) -> None:
        for p in self.folder.iterdir():
            if p.is_dir():
                for q in p.iterdir():
                    q.unlink()
                p.rmdir()
            else:
                p.unlink()

    def barrier(self, n: int) -> None:
        self.reset()
        self._write("barrier", str(n))

    def hold_after(self, k: int) -> None:
        self.reset()
        self._write("hold_after", str(k))

    def arrivals(self) -> int:
        arrived = self.folder / "arrived"
        return len(list(arrived.iterdir())) if arrived.is_dir() else 0


# ---- worker side ----------------------------------------------------------------------
def _gate(spec: Any) -> None:
    folder = Path(os.environ[ENV])
    barrier, hold = folder / "barrier", folder / "hold_after"
    if barrier.is_file():
        n = int(barrier.read_text())
        arrived = folder / "arrived"
        arrived.mkdir(exist_ok=True)
        (arrived / f"{spec.hash}-{os.getpid()}-{time.time_ns()}").touch()
        t0 = time.monotonic()
        while len(list(arrived.iterdir())) < n:
            if time.monotonic() - t0 > BARRIER_LIMIT_S:
                raise RuntimeError(f"test barrier: only {len(list(arrived.iterdir()))} of {n} "
                                   f"trials started within {BARRIER_LIMIT_S:.0f} s")
            time.sleep(0.05)
    if hold.is_file():
        k = int(hold.read_text())
        for i in range(k):
            try:
                os.close(os.open(folder / f"slot-{i}", os.O_CREAT | os.O_EXCL | os.O_WRONLY))
                return  # one of the first K trials: train
            except FileExistsError:
                continue
        parent, t0 = os.getppid(), time.monotonic()
        while os.getppid() == parent and time.monotonic() - t0 < HOLD_LIMIT_S:
            time.sleep(0.5)
        os._exit(1)  # the driver (and its raylet) is gone, or the guard ran out


def _wrap(trainer: Any) -> None:
    real = trainer.run_trial
    if getattr(real, "_gated", False):
        return

    def run_trial(spec, opts=None, on_epoch=None):
        _gate(spec)
        return real(spec, opts, on_epoch)

    run_trial._gated = True  # type: ignore[attr-defined]
    trainer.run_trial = run_trial


class _WrapAfterExec(importlib.abc.Loader):
    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec):
        return self.inner.create_module(spec)

    def exec_module(self, module) -> None:
        self.inner.exec_module(module)
        _wrap(module)

    def __getattr__(self, name: str) -> Any:  # get_source, get_filename, ... for tracebacks
        return getattr(self.inner, name)


class _TrainerFinder(importlib.abc.MetaPathFinder):
    """Wraps run_trial right after harness.trainer is first imported (so workers that never
    train do not pay for importing torch)."""

    def find_spec(self, name, path, target=None):
        if name != "harness.trainer":
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _WrapAfterExec(spec.loader)
                return spec
        return None


def install() -> None:
    """Ray's worker_process_setup_hook: gate run_trial in this worker."""
    if not os.environ.get(ENV):
        return
    if "harness.trainer" in sys.modules:
        _wrap(sys.modules["harness.trainer"])
    elif not any(isinstance(f, _TrainerFinder) for f in sys.meta_path):
        sys.meta_path.insert(0, _TrainerFinder())


class KillAfterCheckpoint:
    """``TrainOptions.after_checkpoint`` that crashes a worker like a lost node: the first
    process to save epoch ``epoch``'s checkpoint creates ``marker`` (atomically, so one kill
    in all) and SIGKILLs itself; the retried trial finds the marker and trains on from the
    checkpoint. Picklable by reference (this module is on the workers' path)."""

    def __init__(self, marker: Path, epoch: int) -> None:
        self.marker, self.epoch = str(marker), epoch

    def __call__(self, row: dict[str, Any]) -> None:
        import signal

        if int(row["epoch"]) != self.epoch:
            return
        try:
            fd = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return
        os.write(fd, f"pid {os.getpid()} killed after epoch {self.epoch}\n".encode())
        os.close(fd)
        os.kill(os.getpid(), signal.SIGKILL)


# A driver script: harness.cli.main as `python -m harness` runs it, with this gate installed in
# its embedded cluster's workers (one keyword added to the harness's init_ray). Format it with
# ``tests`` (this folder) and ``gate`` (the gate folder); everything else is the real command.
GATED_DRIVER = """
import sys
from pathlib import Path
sys.path.insert(0, {tests!r})
import harness.ray_env
import ray_gate
real_init_ray = harness.ray_env.init_ray
def init_ray(address, **kwargs):
    kwargs.setdefault("runtime_env", ray_gate.runtime_env(Path({gate!r})))
    return real_init_ray(address, **kwargs)
harness.ray_env.init_ray = init_ray
from harness.cli import main
sys.exit(main(sys.argv[1:]))
"""
