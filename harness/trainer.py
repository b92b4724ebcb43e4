"""The one shared trainer: every trial of every table runs through ``run_trial``.

``run_trial`` builds the trial's task (``harness.tasks``: classification, detection,
segmentation) and trains it with the one loop, ``harness.fit.fit``. Tricks enter only
through the recipe, at the fixed points of ``harness.tasks.classification``: model graph,
init (zero-gamma), parameter groups (no bias decay), per-iteration schedule (linear scaling,
warmup, step/cosine), precision (fp16/bf16 autocast + loss scaling), targets (label
smoothing, mixup) and loss (distillation). Needs only torch and torchvision (no Ray).
"""
from __future__ import annotations

import time

from harness.fit import fit
from harness.spec import TrialSpec
from harness.tasks import build_task
from harness.tasks.classification import (StepContext, build_model, build_optimizer, compute_loss,
                                          evaluate, make_schedule, train_step, unwrap)
from harness.trial import (EpochHook, TrainOptions, TrialResult, load_classifier, pick_device,
                           seed_everything)

__all__ = ["StepContext", "TrainOptions", "TrialResult", "build_model", "build_optimizer",
           "compute_loss", "evaluate", "load_classifier", "make_schedule", "pick_device",
           "run_trial", "seed_everything", "train_step", "unwrap"]


def run_trial(spec: TrialSpec, opts: TrainOptions | None = None,
              on_epoch: EpochHook | None = None) -> TrialResult:
    """Train and evaluate one trial. Bad input raises HarnessError before any compute;
    a NaN/inf loss ends the trial with status 'diverged'."""
    opts = opts or TrainOptions()
    t_start = time.perf_counter()
    task = build_task(spec, opts)
    return fit(task, spec, opts, on_epoch, t_start)
