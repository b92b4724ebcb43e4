"""Where torch.compile keeps its compiled kernels (a folder shared by every trial of a run).

The CLI names the folder in `HARNESS_COMPILE_CACHE` (torch-free, nothing created); the trainer
hands it to inductor only when it compiles. Setting `TORCHINDUCTOR_CACHE_DIR` up front would
create the folder as soon as torchvision is imported, even for a command that then rejects
its input, and bad input must leave nothing written.
"""
from __future__ import annotations

import os

COMPILE_CACHE_ENV = "HARNESS_COMPILE_CACHE"


def default_cache_dir() -> str:
    """`results/cache/inductor` under the working directory, as an absolute path."""
    return os.path.abspath(os.path.join("results", "cache", "inductor"))


def use_compile_cache() -> None:
    """Point inductor at the harness cache unless the user set `TORCHINDUCTOR_CACHE_DIR`."""
    folder = os.environ.get(COMPILE_CACHE_ENV)
    if folder:
        os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", folder)
