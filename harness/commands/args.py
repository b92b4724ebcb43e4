"""What several commands share: their arguments, the checks of those, what they build.

``run``, ``regress``, ``baseline save``, ``report`` and ``train`` take the same table,
store, data, seeds and (``run``, ``regress``) cluster flags; each flag is defined once
here, each one-line check is written once, and :func:`run_options` is the one place that
turns the flags into the orchestrator's :class:`~harness.orchestrator.RunOptions`.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from harness.errors import HarnessError
from harness.experiments import Experiment
from harness.scales import SCALES, ScaleOverrides
from harness.storage import STORAGE_ENV, Storage, probe
from harness.store import DEFAULT_STORE
from harness.trial import TrainOptions
from harness.tracking import TRACKERS, check_tracker, mlflow_uri

if TYPE_CHECKING:  # harness.orchestrator imports Ray, which `harness train` must not need
    from harness.orchestrator import RunOptions




# ---- arguments ------------------------------------------------------------------------
def table_args(p: argparse.ArgumentParser) -> None:
    """--scale, --store, --data-root: where a table's trials run and are stored."""
    p.add_argument("--scale", default="local", help=f"one of {', '.join(SCALES)} (default local)")
    store_arg(p, help="results store (SQLite)")
    p.add_argument("--data-root", default=None,
                   help="dataset folder: Fashion-MNIST files, or an ImageFolder (train/ + val/)")


FIRST_WAVE = 3  # seeds per cell in an adaptive run's first wave


def integer(minimum: int):
    """An argparse ``type``: an int >= ``minimum``; anything else is one line naming the
    value and the valid range (argparse prefixes the flag and exits 2)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum:
            raise argparse.ArgumentTypeError(f"bad value {text!r}; valid: an integer >= {minimum}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def store_arg(p: argparse.ArgumentParser, help: str | None = None) -> None:
    p.add_argument("--store", default=DEFAULT_STORE, help=help)


def seeds_args(p: argparse.ArgumentParser, offset: bool = False,
               help: str = "seeds per cell (default: the table's, else the scale's)") -> None:
    """--seeds N (and with ``offset`` --seed-offset K: seeds K..K+N-1)."""
    p.add_argument("--seeds", type=integer(1), default=None, help=help)
    if offset:
        p.add_argument("--seed-offset", type=integer(0), default=0,
                       help="use seeds K..K+N-1, e.g. a seed set other than the baseline's (default 0)")


def cluster_args(p: argparse.ArgumentParser) -> None:
    """The Ray cluster and each trial's resources (run, regress)."""
    p.add_argument("--address", default=None,
                   help="join this Ray cluster (HOST:PORT or auto); default: embedded local Ray")
    p.add_argument("--max-concurrent", type=integer(1), default=None, help="at most K trials at once")
    p.add_argument("--cpus-per-trial", type=float, default=1.0)
    p.add_argument("--gpus-per-trial", type=float, default=None,
                   help="GPUs per trial (default: 1 at the paper scale, 0.25 for miniatures, 0 without GPUs)")
    p.add_argument("--workers-per-trial", type=integer(1), default=None,
                   help="data-parallel workers per trial (Ray Train TorchTrainer, DDP; gloo on CPU). "
                   "Default: --gpus-per-trial when it is above 1, else 1")
    p.add_argument("--max-failures", type=integer(0), default=2,
                   help="retries of a crashed trial (from its checkpoint)")
    p.add_argument("--storage", default=os.environ.get(STORAGE_ENV) or None, metavar="URI",
                   help="where checkpoints, teachers/backbones and Ray Tune's state live: a path every "
                   "node mounts, or s3://BUCKET/PREFIX[?endpoint_override=HOST:PORT&scheme=http], gs://... "
                   f"(default ${STORAGE_ENV}, else the results folder beside --store: one machine); "
                   "see docs/cluster.md")


def loading_args(p: argparse.ArgumentParser) -> None:
    """How ImageFolder data is decoded (train, run, regress): speed only, never a trial's hash."""
    p.add_argument("--decode", choices=("workers", "device"), default="workers",
                   help="ImageFolder decoding: 'workers' = host DataLoader workers with transforms.v2 "
                   "(default); 'device' = batched JPEG decode and augmentation on the GPU")
    p.add_argument("--loader-workers", type=integer(0), default=None, metavar="N",
                   help="DataLoader worker processes per trial for ImageFolder data (default: one "
                   "per core available to the trial, less one)")
    p.add_argument("--tf32", action="store_true",
                   help="CUDA: let fp32 matmuls and convolutions use TF32 (off: the paper's FP32; a "
                   "trial that used it is recorded with precision 'tf32')")


# ---- experiment tracking (issue 22 item 7; harness/tracking.py) ----------------------------
def tracker(text: str) -> str:
    """An argparse ``type`` for --log: a tracker name (and, for mlflow, MLflow importable)."""
    if text not in TRACKERS:  # argparse prefixes "argument --log:"
        raise argparse.ArgumentTypeError(f"bad value {text!r}; valid choices: {', '.join(TRACKERS)}")
    try:
        return check_tracker(text)  # type: ignore[return-value]
    except HarnessError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def tracking_args(p: argparse.ArgumentParser) -> None:
    """--log tensorboard|mlflow and --log-dir (run, regress)."""
    p.add_argument("--log", dest="tracker", type=tracker, default=None, metavar="|".join(TRACKERS),
                   help="also log every trial to TensorBoard (event files in each trial's Tune folder, "
                   "<storage>/ray/<table>-<run>/<spec hash>/) or MLflow (one run per trial, tagged with "
                   "its spec hash, table, row, column and seed)")
    p.add_argument("--log-dir", default=None, metavar="PATH|URI",
                   help="--log mlflow: the tracking folder or URI (default $MLFLOW_TRACKING_URI, else "
                   "mlruns/ beside --store)")


_DURATION = re.compile(r"^(?:(\d+(?:\.\d+)?)h)?(?:(\d+(?:\.\d+)?)m)?(?:(\d+(?:\.\d+)?)s)?$")


def parse_duration(text: str) -> float:
    """'30m', '2h', '1h30m', '90s' -> seconds; anything else is one line naming the value."""
    m = _DURATION.match(text.strip()) if text else None
    if not m or not any(m.groups()):
        raise HarnessError(f"bad --budget {text!r}; valid: a duration such as 90s, 30m, 2h or 1h30m")
    h, mins, s = (float(g) if g else 0.0 for g in m.groups())
    return h * 3600 + mins * 60 + s


def check_tracking(args: argparse.Namespace) -> None:
    """--log with --log-dir, checked before anything is written (one line, exit 2)."""
    check_tracker(getattr(args, "tracker", None), getattr(args, "log_dir", None))


def decisive_args(p: argparse.ArgumentParser, report: bool = False) -> None:
    """--until-decisive [--max-seeds N] [--spending obf|pocock] (run; report with ``report``)."""
    p.add_argument("--until-decisive", action="store_true",
                   help="the report of an --until-decisive run: every stored seed per cell, verdicts "
                   "at the levels of its looks" if report else
                   "add seeds wave by wave (3 per cell first) only where a verdict is undecided, "
                   "under a group-sequential alpha-spending rule (harness/adaptive.py)")
    p.add_argument("--max-seeds", type=integer(FIRST_WAVE), default=12, metavar="N",
                   help=f"--until-decisive: at most N seeds per cell (default 12; >= {FIRST_WAVE}, the first wave)")
    p.add_argument("--spending", choices=("pocock", "obf"), default="pocock",
                   help="--until-decisive: Pocock-type (default: spends alpha evenly over the looks, so "
                   "a run its --budget cuts short has not saved it for looks it never reaches) or "
                   "O'Brien-Fleming-type alpha spending")


def looks(args: argparse.Namespace) -> Any:
    """The group-sequential rule of --until-decisive (a harness.report.verdicts.Looks; None
    without it)."""
    if not getattr(args, "until_decisive", False):
        return None
    from harness.report.verdicts import Looks  # scipy, statsmodels, pandas: not for `train`

    return Looks(first=FIRST_WAVE, max_seeds=args.max_seeds, kind=args.spending)


def json_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="last stdout line: a JSON summary")


# ---- a user's data set: the overrides of its derived scale (harness/data_scale.py) ------
def scale_override_args(p: argparse.ArgumentParser) -> None:
    """--image-size N and --epochs N (train, run, report): in every trial's hash when set."""
    p.add_argument("--image-size", type=integer(1), default=0, metavar="N",
                   help="ImageFolder data: train and evaluate on N x N px images (default: at smoke/local "
                   "the training images' median shorter side, measured; at paper 224, or the model's own crop where it differs, e.g. Inception-V3 299)")
    p.add_argument("--epochs", type=integer(1), default=0, metavar="N",
                   help="train N epochs for the paper's 120-epoch schedule (a 200-epoch row ceil(N x 200/120)); "
                   "step milestones and warmup keep their fraction (default: the scale's rule; on an "
                   "ImageFolder at local at least 1,000 SGD steps for a 120-epoch recipe)")


def check_plan_overrides(plan: Any) -> None:
    """Bad --image-size for the plan's data: one line, exit 2, before anything is written."""
    from harness.data_scale import check_overrides

    for spec in plan.all_trials()[:1]:  # a plan's trials share data and overrides
        check_overrides(spec)


def scale_overrides(args: argparse.Namespace) -> ScaleOverrides:
    """The --image-size / --epochs of ``args`` (0 = the scale's own rule)."""
    return ScaleOverrides(image_size=getattr(args, "image_size", 0) or 0, epochs=getattr(args, "epochs", 0) or 0)


def schedule_warnings(plan: Any, data_root: str | None, refuse_small: bool = True) -> list[str]:
    """One line per schedule of ``plan`` too short for its data (harness/data_scale.py),
    each also printed on stderr; measures a user's folder (cached) when not yet measured."""
    from harness.data_scale import check_batches, plan_scale, schedule_warnings as warnings

    scale = plan_scale(plan, data_root, strict=True)
    lines = []
    try:  # a folder smaller than one batch: every trial would fail, so a run refuses it
        check_batches(scale, [t.recipe for t in plan.all_trials() if t.task == "classification"])
    except HarnessError as exc:
        if refuse_small:
            raise
        lines.append(f"warning: {exc}")
    lines += warnings(scale, [t.recipe for t in plan.all_trials()])
    for line in lines:
        print(line, file=sys.stderr, flush=True)
    return lines


# ---- checks ---------------------------------------------------------------------------
def dataset(args: argparse.Namespace, exp: Experiment) -> str | None:
    """An ImageFolder --data-root is the dataset itself for tables that need one (Table 7)."""
    if exp.requires_imagefolder and args.data_root:
        return args.data_root
    return None


# ---- what the flags build -------------------------------------------------------------
def train_options(args: argparse.Namespace, **more: Any) -> TrainOptions:
    """The trainer options of --data-root, --decode and --loader-workers, plus ``more``."""
    return TrainOptions(data_root=args.data_root, decode=args.decode,
                        loader_workers=args.loader_workers, tf32=args.tf32, **more)


def run_options(args: argparse.Namespace) -> RunOptions:
    """The orchestrator's options from the store, cluster and data flags (run, regress)."""
    from harness.orchestrator import RunOptions  # Ray: only commands that train need it

    workers, gpus = _workers(args)
    check_tracking(args)
    tracker_name = getattr(args, "tracker", None)
    log_dir = (mlflow_uri(args.log_dir, Path(args.store).resolve().parent)  # the user's store's folder
               if tracker_name == "mlflow" else None)
    return RunOptions(store=args.store, address=args.address, storage=storage(args),
                      max_concurrent=args.max_concurrent,
                      cpus_per_trial=args.cpus_per_trial, gpus_per_trial=gpus,
                      workers_per_trial=workers, max_failures=args.max_failures,
                      train=train_options(args), tracker=tracker_name, log_dir=log_dir)


def storage(args: argparse.Namespace) -> str | None:
    """--storage, checked for its form (a one-line error names a malformed one); None: default."""
    return Storage.parse(args.storage).root if args.storage else None


def check_storage(args: argparse.Namespace) -> None:
    """Probe --storage (write, read, delete a small object) before anything is written."""
    if args.storage:
        probe(Storage.parse(args.storage))


def _workers(args: argparse.Namespace) -> tuple[int, float | None]:
    """--gpus-per-trial N > 1 means N DDP workers with one GPU each (global batch unchanged)."""
    gpus = args.gpus_per_trial
    if gpus is not None and gpus < 0:
        raise HarnessError(f"bad --gpus-per-trial {gpus}; valid: a number >= 0")
    workers = args.workers_per_trial or (int(gpus) if gpus and gpus > 1 else 1)
    if workers < 1:
        raise HarnessError(f"bad --workers-per-trial {workers}; valid: an integer >= 1")
    if gpus and gpus > 1:
        if gpus != int(gpus):
            raise HarnessError(f"bad --gpus-per-trial {gpus}; above 1 it must be a whole number of GPUs")
        gpus = 1.0
    return workers, gpus


def emit_json(obj: object) -> None:
    """--json: the LAST line of stdout is one JSON object (scripts rely on it)."""
    sys.stdout.flush()
    print(json.dumps(obj, default=str), flush=True)
