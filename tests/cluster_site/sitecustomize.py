"""Imported by every Python process of a test cluster's nodes (tests/ray_nodes.py puts this
folder first on their PYTHONPATH); test code only.

With CLUSTER_GUARD_FORBID (folders, os.pathsep-separated) and CLUSTER_GUARD_LOG set, an
audit hook records, as one JSON file each in CLUSTER_GUARD_LOG:
* ``violation-*``: every ``open``, ``mkdir``, rename, ``remove`` or ``rmdir`` of a path
  under a forbidden folder (the driver's results, another node's folder), with the process,
  its node and the path (files that C++ code opens itself are not seen: the harness opens
  its checkpoints and logs from Python). A read-only ``open`` of a path that does not exist
  is not recorded: it fails the same way on a real cluster, where the driver's folder is
  not there (Ray puts the driver's folder on its workers' ``sys.path``, so ``linecache``
  formatting a traceback through ``_raylet.pyx`` probes ``<driver>/_raylet.pyx``);
* ``trial-*``: every process that imports harness.trainer (one that runs trials), with its
  working folder and node.
"""
import json
import os
import sys
import threading
import time

_FORBID = [os.path.realpath(p) for p in os.environ.get("CLUSTER_GUARD_FORBID", "").split(os.pathsep) if p]
_LOG = os.environ.get("CLUSTER_GUARD_LOG")
_NODE = os.environ.get("CLUSTER_NODE")
_busy = threading.local()


def _record(kind, data):
    _busy.on = True
    try:
        name = os.path.join(_LOG, f"{kind}-{os.getpid()}-{time.time_ns()}.json")
        with open(name, "w") as fh:
            json.dump({"pid": os.getpid(), "node": _NODE, "argv": sys.argv[:3], **data}, fh)
    except OSError:
        pass
    finally:
        _busy.on = False


def _under_forbidden(path):
    try:
        full = os.path.realpath(os.path.join(os.getcwd(), os.fsdecode(os.fspath(path))))
    except (TypeError, ValueError, OSError):
        return None
    for folder in _FORBID:
        if full == folder or full.startswith(folder + os.sep):
            return full
    return None


_PATH_EVENTS = {"open": 1, "os.mkdir": 1, "os.rename": 2, "os.remove": 1, "os.rmdir": 1}
_WRITES = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC


def _failed_lookup(event, args, full):
    """A read-only open of a missing path: it behaves alike on one machine and on many."""
    if event != "open" or len(args) < 3 or not isinstance(args[2], int):
        return False
    return not (args[2] & _WRITES) and not os.path.lexists(full)


def _hook(event, args):
    if getattr(_busy, "on", False):
        return
    if event in _PATH_EVENTS and args:
        for path in args[:_PATH_EVENTS[event]]:
            if isinstance(path, int):
                continue
            full = _under_forbidden(path)
            if full and not _failed_lookup(event, args, full):
                _record("violation", {"event": event, "path": full})
    elif event == "import" and args and args[0] == "harness.trainer":
        _record("trial", {"cwd": os.getcwd()})


if _FORBID and _LOG:
    sys.addaudithook(_hook)
