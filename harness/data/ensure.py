"""Make sure Fashion-MNIST is on disk: find it, else install or download it.

Order: (1) the files are already there (``find_fashion_mnist``); (2) with ``apt=True``, as
root, with ``apt-get`` present: ``apt-get update`` and ``apt-get install -y
dataset-fashion-mnist`` (Debian's package, files in /usr/share/datasets/fashion-mnist);
(3) torchvision's downloader into ``root`` (else ``$HARNESS_DATA_ROOT``, else ``./data``); (4) a ``DataError`` saying
what to do.
"""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from harness.data.fashion_mnist import ALL_FILES, DEBIAN_DIR, ENV_VAR, find_fashion_mnist
from harness.data.fingerprint import DataError

APT_PACKAGE = "dataset-fashion-mnist"
DEFAULT_DOWNLOAD_ROOT = Path("data")


def download_fashion_mnist(root: str | os.PathLike) -> Path:
    """Download Fashion-MNIST with torchvision into ``root/FashionMNIST/raw`` (needs internet).

    Returns that folder. Any failure is a one-line DataError.
    """
    from torchvision.datasets import FashionMNIST

    root = Path(root).expanduser()
    try:
        root.mkdir(parents=True, exist_ok=True)
        FashionMNIST(str(root), train=True, download=True)  # fetches all four files
        FashionMNIST(str(root), train=False, download=True)
    except Exception as e:  # noqa: BLE001 - network, checksum and disk errors alike
        first = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{root}: downloading Fashion-MNIST failed ({type(e).__name__}: {first}); expected "
                        f"internet access to torchvision's mirrors") from None
    return find_fashion_mnist(root)


def _apt_install() -> bool:
    """Install Debian's package; True if apt-get ran successfully."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0 or shutil.which("apt-get") is None:
        return False
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    for cmd in (["apt-get", "update"], ["apt-get", "install", "-y", APT_PACKAGE]):
        if subprocess.run(cmd, env=env, check=False).returncode != 0:
            return False
    return True


def ensure_fashion_mnist(root: str | os.PathLike | None = None, *, apt: bool = False) -> Path:
    """The folder with the 4 Fashion-MNIST files; installs or downloads them when missing."""
    try:
        return find_fashion_mnist(root)
    except DataError as first_error:
        not_found = first_error
    if apt and _apt_install():
        try:
            return find_fashion_mnist(root)
        except DataError:
            if root is None or Path(root).expanduser().resolve() != DEBIAN_DIR.resolve():
                try:
                    return find_fashion_mnist(DEBIAN_DIR)
                except DataError:
                    pass
    explicit = root if root is not None else os.environ.get(ENV_VAR) or None
    target = Path(explicit).expanduser() if explicit is not None else DEFAULT_DOWNLOAD_ROOT
    try:
        return download_fashion_mnist(target)
    except DataError as download_error:
        raise DataError(
            f"Fashion-MNIST missing ({not_found}) and the download failed ({download_error}); expected "
            f"the files {', '.join(ALL_FILES)}: as root run 'apt-get install {APT_PACKAGE}' (or "
            f"'harness data ensure --apt'), or copy them into {target / 'FashionMNIST' / 'raw'}"
        ) from None
