"""The run's progress line: its ETA covers every stage of the plan (issue 22)."""
from __future__ import annotations

import re
import time

import pytest

pytest.importorskip("ray")

from harness.orchestrator import RunSummary, StoreCallback  # noqa: E402
from harness.store import TrialRecord  # noqa: E402


class _Store:
    def __init__(self) -> None:
        self.put = []

    def put_trial(self, rec) -> None:
        self.put.append(rec)


def test_eta_counts_the_trials_of_later_stages():
    """A 12-trial plan, 2 stored, 3 ended in 90 s: after a 4th ends at 120 s, 6 trials are
    left in the whole plan (not just this stage's), so the ETA is 6 x 30 s = 3m00s."""
    lines = []
    s = RunSummary(run_id="r", table="t", scale="smoke", trials=12, skipped=2, done=3)
    s.started = time.time() - 120
    cb = StoreCallback(_Store(), {}, s, "git", {}, lines.append)
    cb._put(TrialRecord(spec_hash="h", status="done", row_label="r", column_label="c", seed=0), [])
    m = re.search(r"left (\d+) \| ETA (\d+)m(\d+)s", lines[-1])
    assert int(m.group(1)) == 6
    assert abs(int(m.group(2)) * 60 + int(m.group(3)) - 180) <= 2
