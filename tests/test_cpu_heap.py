"""keep_freed_memory: glibc stops handing large blocks back to the OS, so reallocating
them costs no page faults (counted by the kernel, not timed)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import REPO

SCRIPT = """
import resource, sys, torch
from harness.cpu_heap import keep_freed_memory

def faults_per_alloc(n=20):
    f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(n):
        torch.ones(1 << 20)  # 4 MiB, above glibc's default mmap threshold
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0) / n

before = faults_per_alloc()
ok = keep_freed_memory()
faults_per_alloc()  # the first allocations after the switch grow the heap once
print(before, ok, faults_per_alloc())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc mallopt")
def test_reallocating_a_freed_block_no_longer_page_faults():
    out = subprocess.run([sys.executable, "-c", SCRIPT], cwd=REPO, capture_output=True,
                         text=True, check=True).stdout.split()
    before, ok, after = float(out[0]), out[1] == "True", float(out[2])
    assert ok
    assert before >= 200  # 4 MiB = 1,024 pages, faulted in again on every allocation
    assert after <= 20
