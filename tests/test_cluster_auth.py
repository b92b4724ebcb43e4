"""Joining a cluster, the parts that need no cluster: the --address forms and where the
driver's authentication token comes from (Ray's order: RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH,
~/.ray/auth_token)."""
from __future__ import annotations

import pytest

from harness.errors import HarnessError
from harness.ray_env import check_address, token_source
from ray_nodes import free_port


@pytest.mark.parametrize("bad", ["localhost", "10.0.0.5:port", ":6379", "ray://10.0.0.5:10001"])
def test_bad_address_forms_are_one_line_errors(bad):
    with pytest.raises(HarnessError) as exc:
        check_address(bad)
    assert repr(bad) in str(exc.value) and "HOST:PORT" in str(exc.value)


def test_nothing_listening_names_the_address():
    address = f"127.0.0.1:{free_port()}"
    with pytest.raises(HarnessError) as exc:
        check_address(address, timeout=1.0)
    assert f"cannot reach Ray cluster at {address!r}" in str(exc.value)


def test_token_source_follows_rays_order(tmp_path, monkeypatch):
    for var in ("RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert token_source() is None
    default = tmp_path / ".ray" / "auth_token"
    default.parent.mkdir()
    default.write_text("t0")
    assert token_source() == str(default)
    monkeypatch.setenv("RAY_AUTH_TOKEN_PATH", str(tmp_path / "missing"))
    assert token_source() is None  # Ray reads only that file then
    (tmp_path / "missing").write_text("t1")
    assert token_source() == str(tmp_path / "missing")
    monkeypatch.setenv("RAY_AUTH_TOKEN", "t2")
    assert token_source() == "RAY_AUTH_TOKEN"
