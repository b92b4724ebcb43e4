"""Command line: run, train, list, report, regress, baseline, data.

Bad input exits with code 2 and one line on stderr naming the bad value and the valid
choices. Heavy imports (Ray, matplotlib) happen inside the commands that need them, so
``python -m harness train`` works where only torch and torchvision are installed.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Sequence

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


def _common_run_args(p: argparse.ArgumentParser) -> None:
    from harness.scales import SCALES

    p.add_argument("--scale", default="local", help=f"one of {', '.join(SCALES)} (default local)")
    p.add_argument("--store", default="results/harness.sqlite", help="results store (SQLite)")
    p.add_argument("--data-root", default=None,
                   help="dataset folder: Fashion-MNIST files, or an ImageFolder (train/ + val/)")


def data_loading_args(p: argparse.ArgumentParser) -> None:
    """How ImageFolder data is decoded (train and run): speed only, never the trial's hash."""
    p.add_argument("--decode", choices=("workers", "device"), default="workers",
                   help="ImageFolder decoding: 'workers' = host DataLoader workers with transforms.v2 "
                   "(default); 'device' = batched JPEG decode and augmentation on the GPU")
    p.add_argument("--loader-workers", type=int, default=8, metavar="N",
                   help="DataLoader worker processes per trial for ImageFolder data (default 8)")


def build_parser() -> argparse.ArgumentParser:
    ap = OneLineParser(prog="harness", description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True, parser_class=OneLineParser)
    from harness.commands import register_all

    register_all(sub, _common_run_args)
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


def emit_json(obj: object) -> None:
    """The LAST line of stdout: one JSON object (scripts rely on it)."""
    sys.stdout.flush()
    print(json.dumps(obj, default=str), flush=True)
