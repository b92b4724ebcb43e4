"""``--log mlflow``'s callback: Ray Tune's MLflow logger with per-trial tags (harness/tracking.py).

Its own module because it imports Ray at import time; Tune pickles callbacks, so the class
lives at module level.
"""
from __future__ import annotations

from typing import Any

from ray.air.integrations.mlflow import MLflowLoggerCallback

from harness.tracking import trial_tags


class TaggedMLflowCallback(MLflowLoggerCallback):
    """One MLflow run per trial, tagged with that trial's spec hash, table, row, column, seed,
    model and scale (on top of the run-wide ``tags``)."""

    def log_trial_start(self, trial: Any) -> None:
        shared = self.tags
        self.tags = {**(shared or {}), **trial_tags(trial.config["trial"])}
        try:
            super().log_trial_start(trial)
        finally:
            self.tags = shared
