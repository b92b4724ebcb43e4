"""The results store refuses folders and files it may not write, also when the suite runs as
root (CI containers do), where chmod alone stops nothing.

Each check runs in a forked child of this process: as root the child first gives up root
for good (uid and gid 65534, 'nobody', no supplementary groups), so the operating system
really refuses the writes; as any other user the modes refuse them already. The child only
opens stores (every module it needs is imported before the fork) and reports back through a
pipe. tests/test_store.py has the same two checks in-process; they skip as root.
"""
from __future__ import annotations

import json
import os
import select
import shutil
import signal
import stat
import tempfile
import traceback
from pathlib import Path
from typing import Callable, Iterator

import pytest

from harness.store import Store, StoreError

NOBODY = 65534
ROOT = hasattr(os, "geteuid") and os.geteuid() == 0
CHILD_LIMIT_S = 120  # a hang guard for the forked child, not a speed requirement

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork (POSIX)")


def _in_unprivileged_child(fn: Callable[[], dict]) -> dict:
    """Run ``fn`` in a forked child that is not root; returns its dict, or
    ``{"error": "Type: message"}`` for an exception it raised."""
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        os.close(read_fd)
        try:
            if os.geteuid() == 0:
                try:
                    os.setgroups([])
                    os.setgid(NOBODY)
                    os.setuid(NOBODY)
                except OSError as exc:
                    out = {"cannot_drop_root": str(exc)}
                else:
                    out = None
            else:
                out = None
            if out is None:
                try:
                    out = fn()
                except BaseException as exc:  # noqa: BLE001 - reported to the parent
                    out = {"error": f"{type(exc).__name__}: {exc}",
                           "trace": traceback.format_exc(limit=3)}
            os.write(write_fd, json.dumps(out).encode())
        finally:
            os._exit(0)
    os.close(write_fd)
    chunks = []
    try:
        while True:
            ready, _, _ = select.select([read_fd], [], [], CHILD_LIMIT_S)
            if not ready:
                os.kill(pid, signal.SIGKILL)
                pytest.fail(f"the unprivileged child hung for {CHILD_LIMIT_S} s")
            chunk = os.read(read_fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(read_fd)
        os.waitpid(pid, 0)
    out = json.loads(b"".join(chunks) or b"{}")
    if "cannot_drop_root" in out:
        pytest.skip(f"running as root and cannot switch to uid {NOBODY}: {out['cannot_drop_root']}")
    return out


@pytest.fixture
def shared_tmp() -> Iterator[Path]:
    """A folder the unprivileged child can enter (pytest's tmp_path is private to root)."""
    base = Path(tempfile.mkdtemp(prefix="harness-perm-"))
    base.chmod(0o755)
    try:
        yield base
    finally:
        for p in [base, *base.rglob("*")]:
            if p.is_dir() and not p.is_symlink():
                p.chmod(0o700)
        shutil.rmtree(base, ignore_errors=True)


def _give_to_child(*paths: Path) -> None:
    """As root, hand ``paths`` to the child's uid, so only their modes stand in its way."""
    if ROOT:
        for p in paths:
            os.chown(p, NOBODY, NOBODY)


@pytest.fixture(autouse=True)
def _imports_done(tmp_path: Path) -> None:
    """Open, write and read a store once in the parent, so the child needs no new imports."""
    with Store(tmp_path / "warm.sqlite") as st:
        st.trials_df()
    with Store(tmp_path / "warm.sqlite", readonly=True) as ro:
        ro.integrity_ok()


def test_readonly_folder_refused_even_as_root(shared_tmp: Path):
    """A folder without write permission (0o555): Store() raises a StoreError naming the
    folder, for a user the operating system really refuses (the child checks that it cannot
    create a file there), and leaves the folder empty."""
    folder = shared_tmp / "locked"
    folder.mkdir()
    folder.chmod(0o555)
    target = folder / "harness.sqlite"

    def check() -> dict:
        try:
            (folder / "probe").write_bytes(b"")
            denied = False
        except PermissionError:
            denied = True
        try:
            Store(target).close()
            return {"denied": denied, "error": None}
        except StoreError as exc:
            return {"denied": denied, "error": str(exc)}

    out = _in_unprivileged_child(check)
    assert out.get("denied") is True, out  # the child really may not write there
    assert out["error"] is not None and str(folder) in out["error"], out
    assert "\n" not in out["error"]
    assert list(folder.iterdir()) == []


def test_readonly_file_refused_for_writing_even_as_root(shared_tmp: Path):
    """A store file without write permission (0o400) in a folder its user may write: opening it
    for writing fails at open with a StoreError naming the file (not at the first trial);
    opening it read-only still works and the file is unchanged."""
    folder = shared_tmp / "rofile"
    folder.mkdir()
    path = folder / "harness.sqlite"
    Store(path).close()
    folder.chmod(0o700)
    _give_to_child(folder, *folder.iterdir())
    path.chmod(0o400)
    before = path.read_bytes()

    def check() -> dict:
        try:
            open(path, "ab").close()
            denied = False
        except PermissionError:
            denied = True
        out = {"denied": denied, "write_error": None}
        try:
            Store(path).close()
        except StoreError as exc:
            out["write_error"] = str(exc)
        with Store(path, readonly=True) as ro:
            out["readonly_ok"] = ro.integrity_ok()
        return out

    out = _in_unprivileged_child(check)
    assert out.get("denied") is True, out
    assert out["write_error"] is not None and str(path) in out["write_error"], out
    assert out["readonly_ok"] is True, out
    assert path.read_bytes() == before
    assert stat.S_IMODE(path.stat().st_mode) == 0o400
