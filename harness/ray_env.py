"""Starting or joining Ray quietly and safely: dashboard off, everything on loopback.

Ray is imported only here and in the orchestrator, so the trainer runs without it.
"""
from __future__ import annotations

import os
import socket
from typing import Any

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
    ray.init(include_dashboard=False, dashboard_host="127.0.0.1", _node_ip_address="127.0.0.1",
             configure_logging=True, **common, **kwargs)


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()
