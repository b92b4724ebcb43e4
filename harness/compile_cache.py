"""Where torch.compile keeps its compiled kernels (a folder shared by every trial of a run).

The CLI names the folder in `HARNESS_COMPILE_CACHE` (torch-free, nothing created); the trainer
hands it to inductor only when it compiles. Setting `TORCHINDUCTOR_CACHE_DIR` up front would
create the folder as soon as torchvision is imported, even for a command that then rejects
its input, and bad input must leave nothing written.

Importing torchvision asks inductor for its cache folder, and inductor then *writes* its
default (`<tmp>/torchinductor_<user>`) into `TORCHINDUCTOR_CACHE_DIR`: by the time the trainer
compiles, the variable is always set, and `os.environ.setdefault` would never use the harness
folder. So a value equal to inductor's own default counts as unset (a user who names that
very folder gets the harness one instead: the only case this cannot tell apart).
"""
from __future__ import annotations

import os

COMPILE_CACHE_ENV = "HARNESS_COMPILE_CACHE"
INDUCTOR_ENV = "TORCHINDUCTOR_CACHE_DIR"


def default_cache_dir() -> str:
    """`results/cache/inductor` under the working directory, as an absolute path."""
    return os.path.abspath(os.path.join("results", "cache", "inductor"))


def _inductor_default() -> str | None:
    """The folder inductor falls back to when the variable is unset (what torchvision's
    import wrote into it), or None if torch is not importable here."""
    try:
        from torch._inductor.runtime.cache_dir_utils import default_cache_dir as inductor_default
    except ImportError:
        return None
    return os.path.abspath(inductor_default())


def user_set_cache_dir() -> str | None:
    """The `TORCHINDUCTOR_CACHE_DIR` the user chose, or None when only torch set it."""
    current = os.environ.get(INDUCTOR_ENV)
    if not current or os.path.abspath(current) == _inductor_default():
        return None
    return current


def use_compile_cache() -> str | None:
    """Point inductor at the harness cache unless the user set `TORCHINDUCTOR_CACHE_DIR`;
    returns the folder inductor will use (None when neither names one)."""
    folder = os.environ.get(COMPILE_CACHE_ENV)
    if folder and user_set_cache_dir() is None:
        os.environ[INDUCTOR_ENV] = folder
    return os.environ.get(INDUCTOR_ENV)
