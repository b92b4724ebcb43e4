"""One module per CLI command; each exposes ``register(subparsers, common)``."""
from __future__ import annotations

import argparse
from typing import Callable

from harness.commands import baseline, data, listing, regress, report, run, train


def register_all(sub: argparse._SubParsersAction,
                 common: Callable[[argparse.ArgumentParser], None]) -> None:
    for mod in (run, train, listing, report, regress, baseline, data):
        mod.register(sub, common)
