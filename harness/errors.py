"""One error type for every bad input the user can give.

The CLI turns a ``HarnessError`` into a one-line message on stderr and exit code 2,
before anything is trained or written.
"""
from __future__ import annotations

from typing import Iterable


class HarnessError(Exception):
    """Bad input: unknown name, out-of-range value, missing or malformed file."""


def unknown(kind: str, value: object, choices: Iterable[str]) -> HarnessError:
    """Build the standard 'unknown X' error naming the bad value and the valid choices."""
    valid = ", ".join(sorted(str(c) for c in choices))
    return HarnessError(f"unknown {kind} {value!r}; valid choices: {valid}")
