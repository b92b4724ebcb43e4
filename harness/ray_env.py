"""Starting or joining Ray quietly and safely.

Embedded (no ``--address``): always a cluster of this driver's own (``ray.init(address=
"local")``, whatever ``RAY_ADDRESS`` or a live or stale ``ray start`` cluster on the
machine says), bound to 127.0.0.1, dashboard off, in a temp folder of its own that a
watchdog (``harness/ray_reaper.py``) empties, killing every process still in it, when the
driver ends, a SIGKILLed driver included.

Joining (``--address HOST:PORT``, or ``auto`` for Ray's own lookup: ``RAY_ADDRESS``, then
the latest ``ray start`` cluster on this machine): the address is checked before anything
is written, in a child process that cannot hang the driver: a TCP connect, then one GCS
request without a token and, where the cluster asks for one, with the token Ray would use
(``RAY_AUTH_TOKEN``, ``RAY_AUTH_TOKEN_PATH`` or ``~/.ray/auth_token``), turning on
``RAY_AUTH_MODE=token`` for this driver when that works. Every failure is one line (exit 2)
saying what to set.

SIGINT and SIGTERM end a run at any point as ``KeyboardInterrupt`` (Tune's own SIGINT
handler is off), so the store and the cluster are closed by the usual ``finally`` blocks.
Ray is imported only here and in the orchestrator, so the trainer runs without it.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from harness.errors import HarnessError

REAPER = str(Path(__file__).with_name("ray_reaper.py"))
TEMP_PREFIX = "ray-harness-"
PROBE_TIMEOUT_S = 10.0
TOKEN_HINT = ("set RAY_AUTH_TOKEN to the cluster's token (`ray get-auth-token` on its head node "
              "prints it), or write it to ~/.ray/auth_token")
_ROOT = str(Path(__file__).resolve().parents[1])  # the folder that holds the harness package


@dataclass
class _Session:
    address: str | None  # joined cluster, None = embedded
    folder: str | None = None  # embedded: the cluster's temp folder
    reaper: subprocess.Popen | None = None
    sigterm: Any = None  # the SIGTERM handler before init_ray


_session: _Session | None = None
_checked: dict[str, str] = {}  # --address as given -> the GCS address it resolved to


# ---- checking an address ---------------------------------------------------------------
def check_address(address: str, timeout: float = 3.0) -> str:
    """The GCS address to join for ``--address``, checked (TCP, then authentication) before
    anything is written; any failure is a one-line HarnessError saying what to set."""
    if address in _checked:
        return _checked[address]
    resolved = _resolve(address)
    host, _, port = resolved.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        found = "" if resolved == address else f" (found by --address {address})"
        raise HarnessError(f"cannot reach Ray cluster at {resolved!r}{found}: {exc.strerror or exc}") from None
    mode = _authenticate(resolved)
    if mode:
        _use_auth_mode(mode)
    _checked[address] = resolved
    return resolved


def _resolve(address: str) -> str:
    """HOST:PORT as given, or for ``auto`` the cluster Ray's own lookup finds."""
    if address == "auto":
        from ray._private import services  # Ray: heavy optional dependency

        try:
            return services.canonicalize_bootstrap_address_or_die("auto")
        except Exception as exc:  # noqa: BLE001 - ConnectionError, ValueError: no or many clusters
            raise HarnessError(f"--address auto found no Ray cluster: {_one_line(exc)}; start one with "
                               "`ray start --head` or pass --address HOST:PORT") from None
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or "://" in address:
        raise HarnessError(f"bad --address {address!r}; expected HOST:PORT (the Ray head's GCS port, "
                           "e.g. 10.0.0.5:6379) or 'auto'")
    return hostport


def _authenticate(address: str) -> str | None:
    """The RAY_AUTH_MODE this driver needs to join ``address`` (None: leave it as it is)."""
    mode = os.environ.get("RAY_AUTH_MODE")
    if mode is None:
        first = _probe(address, {"RAY_AUTH_MODE": "disabled"})
        if first.get("ok"):
            return None
        if not first.get("auth"):
            raise _connect_error(address, first)
        source = token_source()
        if source is None:
            raise HarnessError(f"Ray cluster at {address!r} requires token authentication and no "
                               f"token was found: {TOKEN_HINT}")
        second = _probe(address, {"RAY_AUTH_MODE": "token"})
        if second.get("ok"):
            return "token"
        if second.get("auth"):
            raise HarnessError(f"Ray cluster at {address!r} rejected the authentication token from "
                               f"{source}: {TOKEN_HINT}")
        raise _connect_error(address, second)
    result = _probe(address, {})
    if result.get("ok"):
        return None
    if not result.get("auth"):
        raise _connect_error(address, result)
    if mode.lower() != "token":
        raise HarnessError(f"Ray cluster at {address!r} requires token authentication but RAY_AUTH_MODE "
                           f"is {mode!r}: unset RAY_AUTH_MODE, or set it to 'token' and {TOKEN_HINT}")
    source = token_source()
    if source is None:
        raise HarnessError(f"Ray cluster at {address!r} requires token authentication and no token "
                           f"was found: {TOKEN_HINT}")
    raise HarnessError(f"Ray cluster at {address!r} rejected the authentication token from {source}: "
                       f"{TOKEN_HINT}")


def token_source() -> str | None:
    """Where Ray would read this driver's authentication token from, if anywhere."""
    if os.environ.get("RAY_AUTH_TOKEN", "").strip():
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return path if Path(path).expanduser().is_file() else None
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def _probe(address: str, env: dict[str, str]) -> dict[str, Any]:
    """One GCS request to ``address`` from a child process (its C++ retries and log lines
    stay there; a GCS that never answers costs PROBE_TIMEOUT_S)."""
    code = (f"import sys; sys.path.insert(0, {_ROOT!r}); "
            "from harness.ray_env import probe_main; probe_main(sys.argv[1])")
    try:
        proc = subprocess.run([sys.executable, "-c", code, address], env={**os.environ, **env},
                              capture_output=True, text=True, timeout=PROBE_TIMEOUT_S,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": f"no Ray GCS answered within {PROBE_TIMEOUT_S:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if not lines:
        tail = proc.stderr.strip().splitlines()
        return {"ok": False, "error": tail[-1] if tail else f"probe exited {proc.returncode}"}
    return json.loads(lines[-1])


def probe_main(address: str) -> None:
    """The probe's child process: one JSON line, then exit without Ray's C++ teardown. An
    alarm ends it even when the driver that waits for it is gone."""
    signal.alarm(int(PROBE_TIMEOUT_S) + 5)
    try:
        from ray._raylet import GcsClient

        client = GcsClient(address=address)
        client.cluster_id  # noqa: B018 - the first request; raises AuthenticationError
        client.internal_kv_get(b"harness-probe", None, timeout=5)
        out: dict[str, Any] = {"ok": True}
    except Exception as exc:  # noqa: BLE001 - reported to the driver as one line
        text = _one_line(exc)
        auth = "Authentication" in type(exc).__name__ or "InvalidAuthToken" in text \
            or "Unauthenticated" in text
        out = {"ok": False, "auth": auth, "error": f"{type(exc).__name__}: {text}"}
    print(json.dumps(out), flush=True)
    os._exit(0)


def _connect_error(address: str, result: dict[str, Any]) -> HarnessError:
    return HarnessError(f"cannot connect to Ray cluster at {address!r}: {result.get('error', 'no answer')}")


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())[:300] or type(exc).__name__


def _use_auth_mode(mode: str) -> None:
    """Turn on ``RAY_AUTH_MODE`` for this process (and its children), as Ray itself does."""
    os.environ["RAY_AUTH_MODE"] = mode
    try:
        from ray._raylet import AuthenticationTokenLoader, Config

        Config.initialize("")  # Ray caches its config; re-read the mode from the environment
        AuthenticationTokenLoader.instance().reset_cache()
    except Exception:  # noqa: BLE001 - an older or newer Ray reads the variable at init anyway
        pass


# ---- starting and stopping -------------------------------------------------------------
def init_ray(address: str | None, **kwargs: Any) -> None:
    """Join ``address`` or start an embedded local Ray of this driver's own (see the module)."""
    global _session
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    os.environ.setdefault("TUNE_DISABLE_SIGINT_HANDLER", "1")  # Ctrl-C: KeyboardInterrupt
    import ray

    if ray.is_initialized():
        return
    common = dict(logging_config=ray.LoggingConfig(log_level="WARNING"), log_to_driver=False,
                  ignore_reinit_error=True)
    previous = signal.getsignal(signal.SIGTERM)
    if address:
        resolved = check_address(address)
        try:
            ray.init(address=resolved, **common, **kwargs)
        except Exception as exc:  # noqa: BLE001 - ConnectionError, RuntimeError, AuthenticationError
            raise HarnessError(f"cannot connect to Ray cluster at {resolved!r}: {_one_line(exc)}") from None
        _session = _Session(address=resolved, sigterm=previous)
    else:
        _session = _start_embedded(common, kwargs, previous)
    _interrupt_on_sigterm()


def _start_embedded(common: dict[str, Any], kwargs: dict[str, Any], previous: Any) -> _Session:
    import ray

    # Ray 2.60 turns token authentication on for a cluster ray.init starts (and writes
    # ~/.ray/auth_token if missing), with a warning line; saying so up front keeps it quiet.
    if "RAY_AUTH_MODE" not in os.environ:
        _use_auth_mode("token")
    folder = tempfile.mkdtemp(prefix=TEMP_PREFIX, dir=_temp_base())
    # The watchdog first, so that even a driver killed while Ray starts leaves nothing.
    reaper = subprocess.Popen([sys.executable, "-I", REAPER, folder, str(os.getpid())],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, start_new_session=True)
    session = _Session(address=None, folder=folder, reaper=reaper, sigterm=previous)
    try:
        with _loopback_node_ip(), _without_env("RAY_ADDRESS"):
            ray.init(address="local", _temp_dir=folder, include_dashboard=False,
                     dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1",
                     configure_logging=True, **common, **kwargs)
    except BaseException:
        _stop_reaper(session)
        raise
    return session


def _temp_base() -> str:
    """Where Ray would put its temp folder; /tmp when that path is too long for the unix
    sockets Ray creates under it (108 bytes, session folder included)."""
    base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
    return base if len(base) <= 40 and os.path.isdir(base) else "/tmp"


def _stop_reaper(session: _Session) -> None:
    """Close the watchdog's pipe and wait until it has emptied the cluster's folder."""
    if session.reaper is None:
        return
    try:
        session.reaper.stdin.close()  # type: ignore[union-attr]
        session.reaper.wait(timeout=120)
    except (OSError, subprocess.TimeoutExpired):
        pass


@contextmanager
def _without_env(name: str) -> Iterator[None]:
    """``name`` unset while the embedded cluster starts (its processes inherit the rest)."""
    old = os.environ.pop(name, None)
    try:
        yield
    finally:
        if old is not None:
            os.environ[name] = old


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _interrupt_on_sigterm() -> None:
    """ray.init installs a SIGTERM handler of its own; a run ends on SIGTERM like on Ctrl-C."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _interrupt)


@contextmanager
def _loopback_node_ip() -> Iterator[None]:
    """Make the embedded node's IP 127.0.0.1, so Ray's servers bind to loopback only.

    Ray turns ``_node_ip_address="127.0.0.1"`` into the machine's routable IP unless its
    "cluster" mode is off (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``, read once at import);
    with the routable IP, GCS, raylet and worker gRPC servers listen on every interface.
    Both are switched off only while the local node starts (its processes inherit the
    variable), so joining or building a real multi-node cluster later is unaffected.
    tests/test_security.py::test_ray_listens_only_on_loopback checks the sockets.
    """
    from ray._private import ray_constants

    var = ray_constants.ENABLE_RAY_CLUSTERS_ENV_VAR
    old_env, old_flag = os.environ.get(var), ray_constants.ENABLE_RAY_CLUSTER
    os.environ[var] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    try:
        yield
    finally:
        ray_constants.ENABLE_RAY_CLUSTER = old_flag
        if old_env is None:
            os.environ.pop(var, None)
        else:
            os.environ[var] = old_env


def shutdown_ray() -> None:
    """Leave the cluster; an embedded one is stopped, and its folder emptied, before this returns."""
    global _session
    import ray

    session, _session = _session, None
    try:
        if ray.is_initialized():
            ray.shutdown()
    finally:
        if session is not None:
            _stop_reaper(session)
            if session.sigterm is not None and threading.current_thread() is threading.main_thread():
                signal.signal(signal.SIGTERM, session.sigterm)
