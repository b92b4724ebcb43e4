"""Command line: the parser, ``main`` and the mapping of errors to exit codes.

One module per command in ``harness/commands/`` (their shared flags: ``commands/args.py``).
Bad input exits with code 2 and one line on stderr naming the bad value and the valid
choices. Heavy imports (Ray, pandas, matplotlib, tabulate, PyYAML) happen inside the
commands that need them, so ``python -m harness train`` works where only torch and
torchvision are installed.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Sequence

from harness.commands import register_all
from harness.compile_cache import COMPILE_CACHE_ENV, default_cache_dir
from harness.errors import HarnessError

DESCRIPTION = """Reproduce 'Bag of Tricks for Image Classification with CNNs' (He et al., 2019).

  python -m harness run paper_table6            # plan, train (Ray Tune), store, report
  python -m harness train --model resnet50_d    # one trial, no Ray needed
  python -m harness list tables|models|scales|recipes|runs|trials
  python -m harness report paper_table6         # reports/<scale>/paper_table6.md
  python -m harness regress paper_table6        # nightly gate: exit 0 pass, 1 regression, 2 bad input
"""


class OneLineParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line and exit code 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"error: {self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="harness", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=OneLineParser)
    register_all(sub)
    return ap


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("MPLBACKEND", "Agg")
    # torch.compile's caches outlive /tmp cleaning and are shared by every trial of a run; the
    # trainer hands this to inductor only when it compiles (importing torchvision with
    # TORCHINDUCTOR_CACHE_DIR set creates the folder, and bad input must write nothing)
    os.environ.setdefault(COMPILE_CACHE_ENV, default_cache_dir())
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except HarnessError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130

