"""The nightly regression gate: run a table, compare every cell with a frozen baseline.

* Accuracy (top-1; a transfer table's own metric, mAP or mIoU): a cell regresses when
  ``now_mean < base_mean - max(floor, k * pooled_sd)`` where ``pooled_sd`` pools the
  per-seed standard deviations of baseline and now (0 when it cannot be computed, e.g. one
  seed on each side). A rise by more than the same margin is reported as "improved",
  never as a failure.
* Speed (training images/s): a cell regresses when ``now < base * (1 - speed_frac)``;
  compared only when both sides ran on the same device string, else "not comparable".
* A cell whose trials failed, diverged or are missing is a failure.

``floor``, ``k`` and ``speed_frac`` depend on the scale (:data:`THRESHOLDS`; docs/nightly.md
explains the choices). One module per job:

* :mod:`.comparison`: thresholds, statistics, verdicts; pure (dicts in, verdicts out);
* :mod:`.baseline`: the baseline file (names, freeze, save, load, resolve) and today's
  trials in its per-seed format;
* :mod:`.markdown`: the report's text;
* :mod:`.gate`: :func:`regress`, the whole gate as the CLI runs it (train, compare, write).
"""
from __future__ import annotations

from harness.regress.baseline import (BASELINES_DIR, baseline_path, check_name, freeze,
                                      load_baseline, read_cells, resolve_baseline, save_baseline)
from harness.regress.comparison import (THRESHOLDS, CellVerdict, Thresholds, compare, pooled_sd,
                                        thresholds_for)
from harness.regress.gate import (EXIT_BAD_INPUT, EXIT_PASS, EXIT_REGRESSION, REPORTS_DIR,
                                  RegressResult, offset_seeds, regress, train_plan, write_reports)
from harness.regress.markdown import render_markdown

__all__ = ["Thresholds", "THRESHOLDS", "thresholds_for", "CellVerdict", "compare", "pooled_sd",
           "offset_seeds", "BASELINES_DIR", "baseline_path", "check_name", "load_baseline",
           "save_baseline", "freeze", "read_cells", "resolve_baseline", "regress", "train_plan",
           "RegressResult", "render_markdown", "write_reports", "REPORTS_DIR", "EXIT_PASS",
           "EXIT_REGRESSION", "EXIT_BAD_INPUT"]
