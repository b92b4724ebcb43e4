"""harness.atomic: the one atomic writer behind checkpoints, reports, figures and baselines."""
from __future__ import annotations

import os
import stat

import pytest

from harness.atomic import atomic_write, write_text_atomic


def test_replaces_whole_file_and_leaves_no_temp(tmp_path):
    target = tmp_path / "sub" / "r.md"
    write_text_atomic(target, "old\n")
    write_text_atomic(target, "new\n")
    assert target.read_text() == "new\n"
    assert sorted(p.name for p in target.parent.iterdir()) == ["r.md"]


def test_failure_keeps_old_file_and_removes_temp(tmp_path):
    target = tmp_path / "b.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError):
        with atomic_write(target, "wb") as fh:
            fh.write(b"half")
            raise RuntimeError("disk gone")
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["b.bin"]


def test_permissions_follow_umask_not_mkstemp(tmp_path):
    umask = os.umask(0o022)
    try:
        path = write_text_atomic(tmp_path / "x.txt", "x")
    finally:
        os.umask(umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_bad_mode_rejected(tmp_path):
    with pytest.raises(ValueError, match="mode"):
        with atomic_write(tmp_path / "x", "a"):
            pass
