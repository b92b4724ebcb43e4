"""The task registry: what a trial's ``spec.task`` names, built on its device for
``harness.fit.fit``. Classification is Sec 2-5 of the paper; detection and segmentation
fine-tune a classification trial's network (Sec 6, Tables 8 and 9)."""
from __future__ import annotations

from typing import Callable

from harness.errors import HarnessError
from harness.fit import Task
from harness.spec import TrialSpec
from harness.tasks.classification import ClassificationTask
from harness.transfer import FineTune
from harness.trial import TrainOptions

TASKS: dict[str, Callable[[TrialSpec, TrainOptions], Task]] = {
    "classification": ClassificationTask,
    "detection": FineTune,
    "segmentation": FineTune,
}


def build_task(spec: TrialSpec, opts: TrainOptions) -> Task:
    """The task of ``spec``, built and seeded; bad input raises HarnessError before compute."""
    try:
        factory = TASKS[spec.task]
    except KeyError:
        raise HarnessError(f"unknown task {spec.task!r}; valid: {', '.join(TASKS)}") from None
    return factory(spec, opts)
