"""The nightly regression gate: run a table, compare it with a frozen baseline.

* Checks (:mod:`.checks`, on the shared :mod:`harness.statistics`): each cell's metric
  (top-1; a transfer table's mAP or mIoU), each model's mean over its cells, each trick's
  delta over its parent row (Table 3: a column's over the reference column), each cell's
  training speed. One night is one family: Holm's
  step-down at family-wise alpha, and a drop must also reach a floor. Checks between a clear
  pass and a clear regression are ``rerun``: their cells get more seeds, within a budget,
  and the night looks again (alpha spent over the looks, Pocock-type).
* Machine identity (:mod:`.identity`): speed only within one hardware class, accuracy only
  at one effective precision; else ``not comparable``, never a failure. On one class and
  torch version a CPU's same seed must give the same top-1 (else ``computation changed``).
* A cell whose trials failed, diverged or are missing is a failure.

Floors depend on the scale (:data:`THRESHOLDS`; docs/nightly.md explains the choices).
One module per job:

* :mod:`.checks`: the tests and one look's decisions; :mod:`.identity`: what ran where;
* :mod:`.comparison`: thresholds, per-cell verdicts, :func:`evaluate`; pure (dicts in);
* :mod:`.baseline`: the baseline file (names, freeze, save with machine entries, load,
  select, resolve) and today's trials in its per-seed format;
* :mod:`.history`: the store's ``gate_history``; :mod:`.markdown`: the report's text;
* :mod:`.gate`: :func:`regress`, the whole gate as the CLI runs it (train, compare, rerun,
  write, record).
"""
from __future__ import annotations

from harness.regress.baseline import (BASELINES_DIR, baseline_path, check_name, entry_class, freeze,
                                      load_baseline, read_cells, resolve_baseline, save_baseline,
                                      select_entry)
from harness.regress.checks import FAMILY_METHOD, Check, Looks
from harness.regress.comparison import (THRESHOLDS, CellVerdict, Evaluation, Thresholds, Trick,
                                        compare, evaluate, run_night, thresholds_for)
from harness.regress.gate import (EXIT_BAD_INPUT, EXIT_PASS, EXIT_REGRESSION, REPORTS_DIR,
                                  GateOptions, RegressResult, column_tricks, offset_seeds,
                                  parents_of, regress, train_plan, write_reports)
from harness.regress.history import append_history, read_history
from harness.regress.markdown import render_markdown

__all__ = ["Thresholds", "THRESHOLDS", "thresholds_for", "CellVerdict", "Evaluation", "Check",
           "Looks", "FAMILY_METHOD", "compare", "evaluate", "run_night", "offset_seeds", "parents_of",
           "column_tricks", "Trick",
           "BASELINES_DIR", "baseline_path", "check_name", "entry_class", "load_baseline",
           "save_baseline", "select_entry", "freeze", "read_cells", "resolve_baseline", "regress",
           "train_plan", "GateOptions", "RegressResult", "render_markdown", "write_reports",
           "append_history", "read_history", "REPORTS_DIR", "EXIT_PASS", "EXIT_REGRESSION",
           "EXIT_BAD_INPUT"]
