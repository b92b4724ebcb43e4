"""Moved to :mod:`harness.regress.baseline`; these names stay importable from here until
``harness/commands/baseline.py`` imports them from :mod:`harness.regress` (issue 17)."""
from __future__ import annotations

from harness.regress.baseline import BASELINES_DIR, baseline_path, freeze, save_baseline

__all__ = ["BASELINES_DIR", "baseline_path", "freeze", "save_baseline"]
