"""Starting or joining Ray quietly and safely: dashboard off, everything on loopback.

Ray is imported only here and in the orchestrator, so the trainer runs without it.
"""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from typing import Any, Iterator

from harness.errors import HarnessError


def check_address(address: str, timeout: float = 3.0) -> None:
    """Fail fast (one line, exit 2) when a Ray cluster address does not answer."""
    if address == "auto":
        return
    hostport = address.split("://", 1)[-1]
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit():
        raise HarnessError(f"bad --address {address!r}; expected HOST:PORT (the Ray head's GCS port, e.g. 10.0.0.5:6379) or 'auto'")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise HarnessError(f"cannot reach Ray cluster at {address!r}: {exc.strerror or exc}") from None


def init_ray(address: str | None, **kwargs: Any) -> None:
    """Join ``address`` or start an embedded local Ray bound to 127.0.0.1, dashboard off."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_CHDIR_TO_TRIAL_DIR", "0")
    import ray

    if ray.is_initialized():
        return
    common = dict(logging_config=ray.LoggingConfig(log_level="WARNING"), log_to_driver=False,
                  ignore_reinit_error=True)
    if address:
        check_address(address)
        ray.init(address=address, **common, **kwargs)
        return
    with _loopback_node_ip():
        ray.init(include_dashboard=False, dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1",
                 configure_logging=True, **common, **kwargs)


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
    import ray

    if ray.is_initialized():
        ray.shutdown()
