"""Experiment tracking as an option of ``run``/``regress``: ``--log tensorboard|mlflow``.

Both are Ray Tune's own logger callbacks, one tracked run per trial, added beside the store
callback of :mod:`harness.orchestrator`; the store stays the record the reports and the gate
read, the trackers are views for people.

* ``tensorboard``: ``ray.tune.logger.TBXLoggerCallback`` (tensorboardX, which ``ray[tune]``
  brings). Event files go in each trial's Tune folder, ``<storage>/ray/<table>-<run id>/<spec
  hash>/`` (the storage is the results folder beside ``--store`` unless ``--storage`` says
  otherwise): ``tensorboard --logdir results/ray``. Epoch metrics are scalars
  (``ray/tune/top1``, ...); the trial's config, spec hash, table, row, column and seed
  included, is its hparams (written when the trial ends).
* ``mlflow``: ``ray.air.integrations.mlflow.MLflowLoggerCallback``. One MLflow run per trial,
  named by and tagged with its spec hash, table, row, column, seed and model, in the
  experiment named by the table. Tracking URI: ``--log-dir`` (a folder or any MLflow URI),
  else ``$MLFLOW_TRACKING_URI``, else ``results/mlruns`` beside ``--store``. A folder is
  MLflow's file store, which MLflow 3 keeps behind ``MLFLOW_ALLOW_FILE_STORE=true`` (set for the
  run unless already set: ``mlflow-skinny`` has no database backend; ``mlflow ui
  --backend-store-uri results/mlruns`` reads it). MLflow is optional (the ``tracking`` extra).
"""
from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

from harness.errors import HarnessError

TRACKERS = ("tensorboard", "mlflow")
MLFLOW_ENV = "MLFLOW_TRACKING_URI"
FILE_STORE_ENV = "MLFLOW_ALLOW_FILE_STORE"
MLFLOW_HINT = "pip install 'bag-of-tricks-harness[tracking]' (or pip install mlflow-skinny)"


def check_tracker(tracker: str | None, log_dir: str | None = None) -> str | None:
    """``--log`` and ``--log-dir`` checked before anything runs: one line, exit 2, when bad."""
    if tracker is None:
        if log_dir:
            raise HarnessError(f"bad --log-dir {log_dir!r} without --log; valid: --log-dir with "
                               "--log mlflow")
        return None
    if tracker not in TRACKERS:
        raise HarnessError(f"bad --log {tracker!r}; valid choices: {', '.join(TRACKERS)}")
    if tracker == "tensorboard" and log_dir:
        raise HarnessError(f"bad --log-dir {log_dir!r} with --log tensorboard: its event files go "
                           "in each trial's Tune folder (<storage>/ray/...); valid: --log-dir with "
                           "--log mlflow, or --storage to move the whole run")
    if tracker == "mlflow" and importlib.util.find_spec("mlflow") is None:
        raise HarnessError(f"--log mlflow needs MLflow, which is not installed; install it with: {MLFLOW_HINT}")
    return tracker


def mlflow_uri(log_dir: str | None, results: Path) -> str:
    """The tracking URI: ``--log-dir``, else ``$MLFLOW_TRACKING_URI``, else ``results/mlruns``."""
    target = log_dir or os.environ.get(MLFLOW_ENV) or str(results / "mlruns")
    return target if "://" in target or target.startswith("file:") else Path(target).resolve().as_uri()


def trial_tags(config: dict[str, Any]) -> dict[str, str]:
    """The tags of one trial's tracked run, from its Tune config (``worker_config``)."""
    spec = config["spec"]
    return {"spec_hash": config["spec_hash"], "table": spec["table"], "row": spec["row"],
            "column": spec["column"], "seed": str(spec["seed"]), "model": spec["model"],
            "scale": spec["scale"]}


def tracking_callbacks(tracker: str | None, experiment: str, results: Path,
                       log_dir: str | None = None) -> list[Any]:
    """Ray Tune callbacks for ``tracker`` (none for None)."""
    if tracker is None:
        return []
    if tracker == "tensorboard":
        from ray.tune.logger import TBXLoggerCallback  # Ray: only runs that train need it

        return [TBXLoggerCallback()]
    from harness.tracking_mlflow import TaggedMLflowCallback  # Ray, MLflow

    uri = mlflow_uri(log_dir, results)
    if uri.startswith("file:"):  # MLflow 3 keeps its file store behind this opt-in; skinny has no DB one
        os.environ.setdefault(FILE_STORE_ENV, "true")
    return [TaggedMLflowCallback(tracking_uri=uri, experiment_name=experiment,
                                 tags={"harness": "bag-of-tricks"}, trial_tags=trial_tags)]
