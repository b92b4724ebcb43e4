"""``--log mlflow``'s callback: Ray Tune's MLflow logger with per-trial tags (harness/tracking.py).

Its own module because it imports Ray at import time; Tune pickles callbacks, so the class
lives at module level.
"""
from __future__ import annotations

from typing import Any, Callable

from ray.air.integrations.mlflow import MLflowLoggerCallback


class TaggedMLflowCallback(MLflowLoggerCallback):
    """One MLflow run per trial, tagged with ``trial_tags(trial config)`` (spec hash, table,
    row, column, seed, ...) on top of the run-wide ``tags``."""

    def __init__(self, *, trial_tags: Callable[[dict[str, Any]], dict[str, str]], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.trial_tags = trial_tags

    def log_trial_start(self, trial: Any) -> None:
        shared = self.tags
        self.tags = {**(shared or {}), **self.trial_tags(trial.config["trial"])}
        try:
            super().log_trial_start(trial)
        finally:
            self.tags = shared
