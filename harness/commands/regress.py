"""``harness regress``."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction, common) -> None:
    return None
