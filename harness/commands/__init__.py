"""One module per CLI command; each exposes ``register(subparsers)``. Flags that several
commands share are defined in ``args.py``."""
from __future__ import annotations

import argparse

from harness.commands import baseline, data, listing, regress, report, run, train


def register_all(sub: argparse._SubParsersAction) -> None:
    for mod in (run, train, listing, report, regress, baseline, data):
        mod.register(sub)
