"""``harness data``: make sure Fashion-MNIST is on disk (Debian package or torchvision)."""
from __future__ import annotations

import argparse

from harness.data.ensure import download_fashion_mnist, ensure_fashion_mnist


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("data", help="check or fetch the datasets")
    p.add_argument("action", choices=("ensure", "download"))
    p.add_argument("--data-root", default=None)
    p.add_argument("--apt", action="store_true",
                   help="with 'ensure': install Debian's dataset-fashion-mnist when missing (needs root)")
    p.set_defaults(func=cmd_data)


def cmd_data(args: argparse.Namespace) -> int:
    if args.action == "download":
        path = download_fashion_mnist(args.data_root or "data")
    else:
        path = ensure_fashion_mnist(args.data_root, apt=args.apt)
    print(f"Fashion-MNIST: {path}")
    return 0
