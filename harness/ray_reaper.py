"""The embedded Ray cluster never outlives its driver, even a SIGKILLed one.

``harness.ray_env`` gives the embedded cluster a temp folder of its own and starts this
file as a small watchdog process (standard library only, in a session of its own) whose
stdin is a pipe from the driver. The pipe's write end is close-on-exec, so only the driver
holds it: when the driver ends, however it ends, the watchdog reads EOF, kills every
process that still uses the cluster's temp folder (by command line, working folder or open
file: Ray's workers and agents rename themselves, but keep their log files open there) and
removes the folder. Ray's own fate-sharing (PR_SET_PDEATHSIG) covers only the driver's
direct children; the raylet's agents survived a SIGKILLed driver with parent 1.

Tests use :func:`session_processes` and :func:`kill_session` to find and stop the
``ray start`` clusters they start in a temp folder of their own (``ray stop`` would stop
every Ray on the machine).
"""
from __future__ import annotations

import os
import shutil
import signal
import sys
import time

GRACE_S = 2.0  # SIGTERM, then SIGKILL after this long
ROUNDS = 20  # re-scan: a dying raylet may still have started a worker


def _uses(pid: int, folder: str) -> bool:
    """Whether process ``pid`` names ``folder`` in its command line, works in it or holds a
    file under it open."""
    folder = folder.rstrip("/")
    prefix = folder + "/"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            args = fh.read().decode(errors="replace").split("\0")
    except OSError:
        return False
    for arg in args:  # a path argument, alone or as --flag=PATH
        value = arg.rpartition("=")[2]
        if value == folder or value.startswith(prefix):
            return True
    for link in [f"/proc/{pid}/cwd"] + _fd_links(pid):
        try:
            target = os.readlink(link)
        except OSError:
            continue
        if target == folder or target.startswith(prefix):
            return True
    return False


def _fd_links(pid: int) -> list[str]:
    try:
        return [f"/proc/{pid}/fd/{fd}" for fd in os.listdir(f"/proc/{pid}/fd")]
    except OSError:
        return []


def session_processes(folder: str, exclude: set[int] | frozenset[int] = frozenset()) -> list[int]:
    """Live processes (zombies aside) that use ``folder``, except ``exclude`` and this one."""
    skip = set(exclude) | {os.getpid()}
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit() or int(name) in skip:
            continue
        pid = int(name)
        try:
            with open(f"/proc/{pid}/stat") as fh:
                if fh.read().rsplit(")", 1)[1].split()[0] == "Z":
                    continue
        except (OSError, IndexError):
            continue
        if _uses(pid, folder):
            found.append(pid)
    return found


def _signal(pids: list[int], sig: int) -> None:
    for pid in pids:
        try:
            os.kill(pid, sig)
        except OSError:
            pass


def kill_session(folder: str, exclude: set[int] | frozenset[int] = frozenset()) -> int:
    """SIGTERM every process that uses ``folder``, SIGKILL what is left after GRACE_S, until
    none is left; returns how many processes were signalled."""
    seen: set[int] = set()
    for _ in range(ROUNDS):
        pids = session_processes(folder, exclude)
        if not pids:
            break
        seen.update(pids)
        _signal(pids, signal.SIGTERM)
        deadline = time.monotonic() + GRACE_S
        while time.monotonic() < deadline and session_processes(folder, exclude):
            time.sleep(0.1)
        _signal(session_processes(folder, exclude), signal.SIGKILL)
        time.sleep(0.2)
    return len(seen)


def main(argv: list[str]) -> int:
    """``ray_reaper.py FOLDER DRIVER_PID``: wait for EOF on stdin, then clean up FOLDER."""
    folder, driver = argv[0], int(argv[1])
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C meant for the driver
    signal.signal(signal.SIGHUP, signal.SIG_IGN)  # the terminal closing
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except OSError:
        pass
    # A clean shutdown closes the pipe with the driver still alive; it is never killed.
    kill_session(folder, exclude={driver})
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
