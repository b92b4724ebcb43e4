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


def test_harness_cache_is_used_although_torchvision_set_the_variable(tmp_path):
    """Importing torchvision makes inductor write its default folder into
    TORCHINDUCTOR_CACHE_DIR, so a plain setdefault never took effect; use_compile_cache
    treats inductor's own default as unset, and inductor then reports the harness folder.
    A folder the user named is kept."""
    env = {k: v for k, v in os.environ.items() if k != "TORCHINDUCTOR_CACHE_DIR"}
    named = tmp_path / "named"
    code = ("import os, torchvision\n"
            "assert os.environ.get('TORCHINDUCTOR_CACHE_DIR')  # torchvision's import set it\n"
            "from harness.compile_cache import use_compile_cache\n"
            "from torch._inductor.runtime.cache_dir_utils import cache_dir\n"
            "print(use_compile_cache()); print(cache_dir())\n")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**env, COMPILE_CACHE_ENV: str(named)}).stdout.split()
    assert out == [str(named), str(named)] and named.is_dir()
    user = tmp_path / "user"
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env={**env, COMPILE_CACHE_ENV: str(named), "TORCHINDUCTOR_CACHE_DIR": str(user)}).stdout.split()
    assert out == [str(user), str(user)]
