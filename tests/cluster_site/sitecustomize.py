"""Imported by every Python process of a test cluster's nodes (tests/ray_nodes.py puts this
folder first on their PYTHONPATH); test code only.

With CLUSTER_GUARD_FORBID (folders, os.pathsep-separated) and CLUSTER_GUARD_LOG set, an
audit hook records, as one JSON file each in CLUSTER_GUARD_LOG:
* ``violation-*``: every ``open``, ``mkdir``, rename, ``remove`` or ``rmdir`` of a path
  under a forbidden folder (the driver's results, another node's folder), with the process,
  its node and the path (files that C++ code opens itself are not seen: the harness opens
  its checkpoints and logs from Python);
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


def _hook(event, args):
    if getattr(_busy, "on", False):
        return
    if event in _PATH_EVENTS and args:
        for path in args[:_PATH_EVENTS[event]]:
            if isinstance(path, int):
                continue
            full = _under_forbidden(path)
            if full:
                _record("violation", {"event": event, "path": full})
    elif event == "import" and args and args[0] == "harness.trainer":
        _record("trial", {"cwd": os.getcwd()})


if _FORBID and _LOG:
    sys.addaudithook(_hook)
