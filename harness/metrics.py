"""Metric names, where each metric is stored, and the metric each task is judged by.

Read by the trainer side (``harness.transfer`` records a task's main metric), the reports
and the regression gate, so it imports nothing but the standard library.
"""
from __future__ import annotations

import math
from typing import Any

__all__ = ["METRIC_NAMES", "STORE_COLUMN", "MAIN_METRIC", "main_metric", "number"]

# How a metric is titled in the reports.
METRIC_NAMES = {"top1": "Top-1 accuracy (%)", "top5": "Top-5 accuracy (%)",
                "epoch_s": "Time per epoch", "img_per_s": "Training throughput (images/s)",
                "params": "Parameters", "macs": "MACs (the paper's 'FLOPs')",
                "map": "mAP (%)", "pixacc": "Pixel accuracy (%)", "miou": "mIoU (%)"}

# A metric whose trials column has another name (the others are columns of the same name,
# or, for a task's own metrics such as map and miou, keys of the trial's ``metrics``).
STORE_COLUMN = {"img_per_s": "train_img_per_s"}

# The metric a task is judged by: top-1 for classification, the task's own metric for the
# transfer tables (Sec 6: mAP for Table 8's detection, mIoU for Table 9's segmentation).
MAIN_METRIC = {"classification": "top1", "detection": "map", "segmentation": "miou"}


def main_metric(kind: str) -> str:
    """The metric an experiment of ``kind`` is judged (and gated) by; top-1 when unknown."""
    return MAIN_METRIC.get(kind, "top1")


def number(value: Any) -> float | None:
    """``value`` as a float, or None when it holds no number: None, NaN (SQLite gives a NaN
    back as NULL, pandas reads a NULL number as NaN), a bool, or something non-numeric."""
    if value is None or isinstance(value, bool):
        return None
    try:
        f = float(value)
    except (TypeError, ValueError):
        return None
    return None if math.isnan(f) else f
