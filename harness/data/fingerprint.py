"""Base types of ``harness.data``: the error, the in-memory dataset record, and fingerprints.

A fingerprint is the first 16 hex digits of a sha256 over the data itself (array bytes,
dtype and shape; or a sorted file list with sizes), so a report can say exactly which data
a number was measured on, and two runs on different data never share a trial id.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from harness.errors import HarnessError

FINGERPRINT_CHARS = 16


class DataError(HarnessError):
    """A data set is missing, truncated, malformed, or laid out wrongly (one-line message)."""


@dataclass(eq=False)  # tensors: compare fingerprints, not fields
class InMemoryDataset:
    """A small data set held as one uint8 tensor (Fashion-MNIST, synthetic).

    ``mean``/``std`` are per channel on the 0-255 scale, ready for ``AugConfig(mean=..., std=...)``.
    """

    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    num_classes: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    fingerprint: str
    name: str

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def channels(self) -> int:
        return int(self.images.shape[1])

    @property
    def image_size(self) -> tuple[int, int]:
        return int(self.images.shape[2]), int(self.images.shape[3])


def _as_numpy(a: torch.Tensor | np.ndarray) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().numpy()
    return np.ascontiguousarray(a)


def fingerprint_arrays(*arrays: torch.Tensor | np.ndarray) -> str:
    """sha256 (16 hex chars) over each array's dtype, shape and bytes, in order."""
    h = hashlib.sha256()
    for a in arrays:
        arr = _as_numpy(a)
        h.update(f"{arr.dtype.str}{tuple(arr.shape)};".encode())
        h.update(memoryview(arr).cast("B"))
    return h.hexdigest()[:FINGERPRINT_CHARS]


def fingerprint_files(root: str | os.PathLike, paths: Iterable[str | os.PathLike]) -> str:
    """sha256 (16 hex chars) over the sorted relative paths (POSIX form) and file sizes.

    Cheap for ImageNet-sized trees (one ``stat`` per file, no reads); catches added, removed,
    renamed or re-encoded files.
    """
    root = Path(root)
    entries = []
    for p in paths:
        p = Path(p)
        rel = p.relative_to(root) if p.is_absolute() else p
        entries.append((rel.as_posix(), (root / rel).stat().st_size))
    h = hashlib.sha256()
    for rel, size in sorted(entries):
        h.update(f"{rel}\t{size}\n".encode())
    return h.hexdigest()[:FINGERPRINT_CHARS]


def channel_stats(images: torch.Tensor | np.ndarray) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Exact per-channel mean and (population) std of a uint8 [N, C, H, W] array, 0-255 scale.

    Uses a 256-bin histogram per channel, so it needs no float copy of the data.
    """
    t = images if isinstance(images, torch.Tensor) else torch.from_numpy(np.asarray(images))
    if t.dtype != torch.uint8 or t.ndim != 4:
        raise DataError(f"channel_stats expects uint8 [N, C, H, W], got {t.dtype} {tuple(t.shape)}")
    values = np.arange(256, dtype=np.float64)
    means, stds = [], []
    for c in range(t.shape[1]):
        hist = torch.bincount(t[:, c].reshape(-1), minlength=256).cpu().numpy().astype(np.float64)
        n = hist.sum()
        m = float((hist * values).sum() / n)
        var = float((hist * (values - m) ** 2).sum() / n)
        means.append(round(m, 4))
        stds.append(round(var**0.5, 4))
    return tuple(means), tuple(stds)
