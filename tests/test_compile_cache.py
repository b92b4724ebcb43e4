"""The torch.compile cache folder: named by the CLI, handed to inductor only when compiling."""
from __future__ import annotations

import os
import subprocess
import sys

from harness.compile_cache import COMPILE_CACHE_ENV, use_compile_cache


def test_cli_import_path_creates_no_cache_folder(tmp_path):
    """A fresh process that names the cache and imports torchvision (as every command does)
    leaves the folder uncreated; with TORCHINDUCTOR_CACHE_DIR set, torchvision creates it
    (the behaviour this module works around), so the check can fail."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    named = tmp_path / "named"
    subprocess.run([sys.executable, "-c", "import torchvision"], check=True,
                   env={**env, COMPILE_CACHE_ENV: str(named)})
    assert not named.exists()
    direct = tmp_path / "direct"
    subprocess.run([sys.executable, "-c", "import torchvision"], check=True,
                   env={**env, "TORCHINDUCTOR_CACHE_DIR": str(direct)})
    assert direct.exists()


def test_use_compile_cache_respects_user_setting(monkeypatch):
    monkeypatch.setenv(COMPILE_CACHE_ENV, "/harness/cache")
    monkeypatch.delenv("TORCHINDUCTOR_CACHE_DIR", raising=False)
    use_compile_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/harness/cache"
    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", "/user/choice")
    use_compile_cache()
    assert os.environ["TORCHINDUCTOR_CACHE_DIR"] == "/user/choice"
