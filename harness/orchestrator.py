"""Ray Tune runs a plan: one Ray trial per TrialSpec, stage by stage (teachers first).

The driver alone writes the store, one transaction per finished trial (a Tune callback),
so killing the driver loses at most the trials still running, and the next run trains
only what is missing. Everything a trial shares with the driver or with other trials lives
in the run's storage (``harness.storage``: the results folder by default, else
``--storage``, e.g. ``s3://bucket/prefix``): each trial checkpoints every epoch to
``checkpoints/<spec hash>/ckpt.pt`` there, a student or transfer trial reads its teacher or
backbone from there, and Ray Tune keeps its experiment state there. A trial's worker reaches
those files only through the storage (``harness.workspace``), so ``FailureConfig(max_failures)``
restarts a crashed trial on any node and it resumes from its stored checkpoint.
"""
from __future__ import annotations

import dataclasses
import json
import os
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from ray.tune import Callback

from harness import provenance
from harness import storage as st
from harness.errors import HarnessError
from harness.experiments import Plan
from harness.data_scale import plan_scale
from harness.estimate import longest_first, model_macs
from harness.records import failed_record, trial_record
from harness.spec import TrialSpec, spec_from_dict, spec_to_dict
from harness.store import DEFAULT_STORE, Store
from harness.tracking import mlflow_uri, tracking_callbacks
from harness.trial import PATH_FIELDS, TrainOptions
from harness.workspace import TrialFiles, Workspace


@dataclass
class RunOptions:
    """How a plan runs: the store, the cluster and each trial's resources, and ``train``,
    the options every trial's trainer gets (its paths and threads are set per trial)."""

    store: str = DEFAULT_STORE
    address: str | None = None  # join an existing Ray cluster; None = embedded local Ray
    storage: str | None = None  # checkpoints, teachers, Tune state (harness.storage); None = results folder
    max_concurrent: int | None = None
    cpus_per_trial: float = 1
    gpus_per_trial: float | None = None  # None: 1 at the paper scale, 0.25 for miniatures, 0 on CPU
    max_failures: int = 2
    workers_per_trial: int = 1  # > 1: each trial is a Ray Train TorchTrainer with N DDP workers
    train: TrainOptions = field(default_factory=TrainOptions)
    ray_init_kwargs: dict[str, Any] = field(default_factory=dict)  # tests: num_gpus, num_cpus
    tracker: str | None = None  # --log: "tensorboard" | "mlflow" (harness/tracking.py); None = off
    log_dir: str | None = None  # --log mlflow: the tracking URI (None: results/mlruns beside the store)
    log: Callable[[str], None] = field(default=lambda m: print(m, file=sys.stderr, flush=True))


@dataclass
class RunSummary:
    run_id: str
    table: str
    scale: str
    trials: int = 0
    done: int = 0
    failed: int = 0
    diverged: int = 0
    skipped: int = 0
    wall_s: float = 0.0
    compute_s: float = 0.0  # sum of the trials' own wall time
    concurrency: int = 1  # trials the cluster could run at once (Ray overhead = 1 - compute / (wall x this))
    started: float = field(default_factory=time.time)  # the run's start (epoch seconds), for its ETA


def trial_slots(cluster: dict[str, float], cpus_per_trial: float, gpus_per_trial: float,
                workers: int = 1, max_concurrent: int | None = None) -> int:
    """How many trials fit on the cluster at once: its CPUs (and GPUs, when trials take
    some) over one trial's share, capped by ``max_concurrent``."""
    workers = max(1, workers)
    fits = [cluster.get("CPU", 0.0) / (cpus_per_trial * workers)] if cpus_per_trial > 0 else []
    if gpus_per_trial > 0:
        fits.append(cluster.get("GPU", 0.0) / (gpus_per_trial * workers))
    slots = int(min(fits) + 1e-9) if fits else 1
    if max_concurrent:
        slots = min(slots, max_concurrent)
    return max(1, slots)


def results_dir(store_path: str) -> Path:
    return Path(store_path).resolve().parent


def run_storage(opts: RunOptions) -> st.Storage:
    """The run's storage: ``--storage``, else the results folder beside the store (one machine)."""
    return st.Storage.parse(opts.storage) if opts.storage else st.Storage.local(results_dir(opts.store))


def worker_config(spec: TrialSpec, opts: TrainOptions, files: TrialFiles, **extra: Any) -> dict[str, Any]:
    """What travels to a Ray worker for one trial: the spec, the trainer's options (the log
    function and the driver's paths stay behind) and where its files live in the storage."""
    options = {f.name: getattr(opts, f.name) for f in dataclasses.fields(opts)
               if f.name != "log" and f.name not in PATH_FIELDS}
    return {"spec": spec_to_dict(spec), "spec_hash": spec.hash, "options": options,
            "files": files.to_dict(), **extra}


def worker_trial(config: dict[str, Any], log: Callable[[str], None]) -> tuple[TrialSpec, TrainOptions]:
    """The inverse of :func:`worker_config`, in the worker: the spec and its options (the
    paths are the workspace's, see :class:`harness.workspace.Workspace`)."""
    return spec_from_dict(config["spec"]), TrainOptions(**config["options"], log=log)


def _trial_body(config: dict[str, Any], report: Callable[[dict[str, Any]], None], rank: int = 0) -> None:
    """One trial through the shared trainer; ``report`` sends epoch rows and the final result.
    Its files come from, and go back to, the storage (``Workspace``), whichever node this is."""
    import ray

    from harness.trainer import run_trial

    files = TrialFiles(**config["files"])
    with Workspace(files, rank) as ws:
        spec, opts = worker_trial(config, ws.log)
        ws.log(f"== {spec.describe()} pid={os.getpid()} node={os.uname().nodename} {provenance.utc_now()}")
        ws.clear_error()
        try:
            result = run_trial(spec, ws.options(opts), on_epoch=lambda row: report({**row, "final": False}))
        except Exception as exc:  # recorded for the driver, then Tune sees the failure as usual
            msg = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:2000]
            ws.log(msg)
            ws.record_error(msg)
            raise
        result.checkpoint = files.checkpoint if result.checkpoint else None  # the stored one
    report({**result.to_json(), "history_json": json.dumps(result.history), "final": True,
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "node": os.uname().nodename, "node_id": ray.get_runtime_context().get_node_id()})


def tune_trainable(config: dict[str, Any]) -> None:
    """Runs inside a Ray worker: one trial, epochs reported to Tune."""
    from ray import tune

    _trial_body(config["trial"], tune.report)


def ddp_worker(config: dict[str, Any]) -> None:
    """One of N Ray Train workers of a data-parallel trial (torch.distributed is set up)."""
    import ray.train

    _trial_body(config, lambda metrics: ray.train.report(metrics), ray.train.get_context().get_world_rank())


def tune_ddp_driver(config: dict[str, Any]) -> None:
    """A Tune trial that runs its spec as Ray Train's TorchTrainer with N DDP workers."""
    from ray.train import RunConfig as TrainRunConfig
    from ray.train import ScalingConfig
    from ray.train.torch import TorchConfig, TorchTrainer
    from ray.tune.integration.ray_train import TuneReportCallback

    c = config["trial"]
    use_gpu = c["gpus"] > 0
    # --cpus-per-trial is the trial's total: split over its workers (2 workers fit 2 cores).
    per_worker = {"CPU": c["cpus"] / c["workers"], **({"GPU": c["gpus"]} if use_gpu else {})}
    fs, ray_path = _tune_storage(c["ray_storage"])
    trainer = TorchTrainer(
        ddp_worker, train_loop_config=c,
        scaling_config=ScalingConfig(num_workers=c["workers"], use_gpu=use_gpu,
                                     resources_per_worker=per_worker),
        torch_config=TorchConfig(backend="nccl" if use_gpu else "gloo"),
        run_config=TrainRunConfig(name=f"{c['spec_hash']}-ddp", storage_path=ray_path,
                                  storage_filesystem=fs, callbacks=[TuneReportCallback()]))
    trainer.fit()


def _tune_storage(uri: str) -> tuple[Any, str]:
    """Ray Tune's ``(storage_filesystem, storage_path)`` for a storage URI (local: no fs)."""
    if st.local_path(uri) is not None:
        return None, st.local_path(uri)
    return st.filesystem(uri)


def _error_text(files: dict[str, Any]) -> str | None:
    """The one-line error the trial body stored before failing (Tune's own error can be
    missing, e.g. when the retry's actor died; it is also a long Ray traceback)."""
    try:
        return (st.read_text(files["error"]) or "").strip() or None
    except Exception:  # noqa: BLE001 - storage unreachable now: Tune's error is used instead
        return None


def _result_from_trial(trial: Any) -> dict[str, Any] | None:
    res = dict(trial.last_result or {})
    if not res.get("final"):
        return None
    res["history"] = json.loads(res.pop("history_json", "[]"))
    return res


class StoreCallback(Callback):
    """Runs in the driver: one store transaction per finished trial, and a progress line.

    Tune pickles its run config (callbacks included), so the open store is dropped from
    the pickled state; only the driver's live instance ever writes.
    """

    def __init__(self, store: Store, specs: dict[str, TrialSpec], summary: RunSummary, git: str,
                 macs: dict[str, int | None], log: Callable[[str], None],
                 log_copies: dict[str, tuple[str, Path]] | None = None) -> None:
        self._store, self.specs, self.summary, self.git = store, specs, summary, git
        self.macs, self.log = macs, log
        self.log_copies = log_copies or {}  # object storage: hash -> (stored log, driver's copy)
        self.finished = 0

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state.pop("_store", None)
        state.pop("log", None)
        return state

    def on_trial_complete(self, iteration, trials, trial, **info):
        spec = self.specs[trial.config["trial"]["spec_hash"]]
        res = _result_from_trial(trial)
        started = trial.config["trial"]["started_at"]
        if res is None:
            rec = failed_record(spec, self.summary.run_id, "trial ended without a final result",
                                started_at=started, git_commit=self.git)
        else:
            rec = trial_record(spec, self.summary.run_id, res, started_at=started,
                               git_commit=self.git, macs=self.macs.get(spec.model))
        self._put(rec, trials)

    def on_trial_error(self, iteration, trials, trial, **info):
        spec = self.specs[trial.config["trial"]["spec_hash"]]
        err = (_error_text(trial.config["trial"]["files"]) or trial.get_error()
               or "trial failed (no error text)")
        self._put(failed_record(spec, self.summary.run_id, str(err),
                                started_at=trial.config["trial"]["started_at"], git_commit=self.git), trials)

    def _put(self, rec, trials) -> None:
        self._store.put_trial(rec)
        self._fetch_log(rec.spec_hash)
        self.finished += 1
        s = self.summary
        setattr(s, rec.status, getattr(s, rec.status) + 1)
        s.compute_s += rec.wall_s or 0.0
        running = sum(1 for t in trials if t.status == "RUNNING")
        # the ETA covers the whole plan, every stage, at the run's rate so far
        ended = s.done + s.failed + s.diverged
        left = max(0, s.trials - s.skipped - ended)
        rate = (time.time() - s.started) / max(1, ended)
        self.log(f"[{rec.status:8s}] {rec.row_label} / {rec.column_label} seed {rec.seed} "
                 f"top1={_fmt(rec.top1)} | done {s.done} failed {s.failed} diverged {s.diverged} "
                 f"skipped {s.skipped} running {running} left {left} | ETA {_eta(rate * left)}")


    def _fetch_log(self, spec_hash: str) -> None:
        """A copy of the trial's stored log in the driver's results/logs (best effort: the
        stored one stays the reference)."""
        if spec_hash not in self.log_copies:
            return
        uri, copy = self.log_copies[spec_hash]
        try:
            if st.exists(uri):
                st.download(uri, copy)
        except Exception as exc:  # noqa: BLE001 - a missing copy must not lose the stored result
            self.log(f"could not copy the log of {spec_hash} from the storage: {type(exc).__name__}: {exc}")


def _tracking_line(opts: RunOptions, storage: st.Storage) -> str:
    """Where --log writes, for the run's first line."""
    if opts.tracker == "tensorboard":
        return f"; TensorBoard events in {storage.ray()}/{{table}}-{{run id}}/{{spec hash}}/"
    if opts.tracker == "mlflow":
        return f"; MLflow runs at {opts.log_dir or mlflow_default(opts)}"
    return ""


def mlflow_default(opts: RunOptions) -> str:
    """MLflow's tracking URI when RunOptions name none (``harness.tracking.mlflow_uri``)."""
    return mlflow_uri(None, results_dir(opts.store))


def _trial_name(trial: Any) -> str:
    """Short, stable Ray trial names: the spec hash (Ray's default embeds the whole config)."""
    return trial.config["trial"]["spec_hash"]


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def _eta(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m}m{s:02d}s"


def _resources(plan: Plan, opts: RunOptions) -> dict[str, float]:
    import ray

    gpus = opts.gpus_per_trial
    if gpus is None:
        have = ray.cluster_resources().get("GPU", 0)
        gpus = 0 if not have else (1 if plan.scale.name == "paper" else 0.25)
    return {"cpu": opts.cpus_per_trial, "gpu": gpus}


def _slots(plan: Plan, opts: RunOptions) -> int:
    import ray

    res = _resources(plan, opts)
    return trial_slots(ray.cluster_resources(), opts.cpus_per_trial, res["gpu"],
                       opts.workers_per_trial, opts.max_concurrent)


def dependency_checkpoint(store: Store, storage: st.Storage, dep: TrialSpec | None, role: str) -> str | None:
    """Where a trial this one depends on (teacher, backbone) keeps its final checkpoint, as a
    storage URI any node can read: the run's storage, else the path or URI its record names
    (a local file is first copied into an object storage, so no worker reads a driver path)."""
    if dep is None:
        return None
    rec = store.get_trial(dep.hash)
    if rec is None or rec.status != "done":
        why = "not trained" if rec is None else (rec.error or rec.status)
        raise HarnessError(f"{role} {dep.hash} unavailable: {why}")
    target = storage.checkpoint(dep.hash)
    try:
        if st.exists(target):
            return target
        if rec.checkpoint and st.exists(rec.checkpoint):
            if storage.is_local or st.local_path(rec.checkpoint) is None:
                return rec.checkpoint
            st.upload(Path(rec.checkpoint), target)  # stored by a local run: make it reachable
            return target
    except HarnessError:
        raise
    except Exception as exc:  # noqa: BLE001 - storage errors: one line, the trial is failed
        raise HarnessError(f"{role} {dep.hash} unavailable: {type(exc).__name__}: {exc}") from None
    raise HarnessError(f"{role} {dep.hash} unavailable: no checkpoint at {target}"
                       + (f" or {rec.checkpoint}" if rec.checkpoint and rec.checkpoint != target else ""))


def _run_stage(stage: list[TrialSpec], store: Store, plan: Plan, opts: RunOptions,
               summary: RunSummary, git: str, macs: dict[str, int | None], storage: st.Storage,
               marker_id: str | None) -> None:
    from ray import tune

    rdir = results_dir(opts.store)
    configs, specs, log_copies = [], {}, {}
    for spec in longest_first(plan, stage, macs):
        started = provenance.utc_now()
        try:
            teacher = dependency_checkpoint(store, storage, spec.teacher, "teacher")
            backbone = dependency_checkpoint(store, storage, spec.backbone, "backbone")
        except HarnessError as exc:
            store.put_trial(failed_record(spec, summary.run_id, str(exc), started_at=started, git_commit=git))
            summary.failed += 1
            continue
        specs[spec.hash] = spec
        files = TrialFiles.of(storage, spec.hash, teacher=teacher, backbone=backbone, marker_id=marker_id)
        if not storage.is_local:
            log_copies[spec.hash] = (files.log, rdir / "logs" / f"{spec.hash}.log")
        threads = max(1, int(opts.cpus_per_trial / opts.workers_per_trial))
        # ImageFolder loader workers: the trial's own CPUs less the training thread, not every
        # core of the node (eight trials on a node would each take them all)
        workers = opts.train.loader_workers if opts.train.loader_workers is not None else threads - 1
        train = dataclasses.replace(opts.train, threads=threads, loader_workers=workers)
        configs.append(worker_config(spec, train, files, started_at=started, cpus=opts.cpus_per_trial,
                                     workers=opts.workers_per_trial, ray_storage=storage.ray()))
    if not configs:
        return
    res = _resources(plan, opts)
    for c in configs:
        c["gpus"] = res["gpu"]
    ddp = opts.workers_per_trial > 1
    trainable = tune.with_resources(tune_ddp_driver, {"cpu": 0.01}) if ddp else tune.with_resources(tune_trainable, res)
    cb = StoreCallback(store, specs, summary, git, macs, opts.log, log_copies)
    trackers = tracking_callbacks(opts.tracker, plan.experiment.name, rdir, opts.log_dir)
    fs, ray_path = _tune_storage(storage.ray())
    tuner = tune.Tuner(
        trainable,
        param_space={"trial": tune.grid_search(configs)},
        tune_config=tune.TuneConfig(max_concurrent_trials=opts.max_concurrent, reuse_actors=not ddp,
                                    trial_name_creator=_trial_name,
                                    trial_dirname_creator=_trial_name),
        run_config=tune.RunConfig(name=f"{plan.experiment.name}-{summary.run_id}",
                                  storage_path=ray_path, storage_filesystem=fs, verbose=0,
                                  callbacks=[cb, *trackers],
                                  failure_config=tune.FailureConfig(max_failures=opts.max_failures)),
    )
    tuner.fit()


def run_plan(plan: Plan, opts: RunOptions, argv: list[str] | None = None) -> RunSummary:
    """Train every missing trial of the plan; stored trials are skipped, never retrained.

    The storage is probed and the cluster joined (or started) before the run is recorded,
    so a bad --storage or --address leaves the store as it was."""
    from harness.ray_env import init_ray, shutdown_ray

    t0 = time.time()
    summary = RunSummary(run_id=time.strftime("%Y%m%d-%H%M%S-") + uuid.uuid4().hex[:6],
                         table=plan.experiment.name, scale=plan.scale.name)
    git = provenance.git_commit()
    storage = run_storage(opts)
    if opts.storage:
        st.probe(storage)
    with Store(opts.store) as store:
        all_trials = plan.all_trials()
        summary.trials = len(all_trials)
        done = store.done_hashes([t.hash for t in all_trials])
        todo = [[t for t in stage if t.hash not in done] for stage in plan.stages()]
        summary.skipped = sum(len(s) for s in plan.stages()) - sum(len(s) for s in todo)
        if any(todo):
            init_ray(opts.address, **opts.ray_init_kwargs)
        try:
            store.start_run(summary.run_id, plan.experiment.name, plan.scale.name,
                            " ".join(argv or []), git)
            opts.log(f"{plan.experiment.name} @ {plan.scale.name}: {summary.trials} trials, "
                     f"{summary.skipped} already stored, {sum(map(len, todo))} to train"
                     + ("" if storage.is_local and not opts.storage else f"; storage {storage}")
                     + _tracking_line(opts, storage))
            if any(todo):
                marker_id = storage.ensure_marker()
                macs = model_macs(plan, plan_scale(plan, opts.train.data_root))  # the size, channels, classes run
                summary.concurrency = _slots(plan, opts)
                for stage in todo:
                    if stage:
                        _run_stage(stage, store, plan, opts, summary, git, macs, storage, marker_id)
            summary.wall_s = time.time() - t0
            store.finish_run(summary.run_id, summary.trials, summary.done + summary.skipped,
                             summary.failed, summary.skipped)
        finally:
            if any(todo) and not opts.address:
                shutdown_ray()
    return summary
