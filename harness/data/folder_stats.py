"""What a user's ImageFolder is, measured once and cached by its fingerprint.

Sec 2.1 normalises with ImageNet's per-channel mean and std and trains on 224 px crops of
ImageNet's 1000 classes; on someone else's folder those numbers are the folder's own:

    folder_stats(root) -> FolderStats: class count, train/val image counts, the training
        images' median shorter side (their native size), per-channel mean/std (0-255) of the
        decoded training images (RGB, as ImageFolder's loader gives them)

Measuring decodes the training images (at most ``MAX_STATS_IMAGES``, evenly spaced), so the
answer is kept in ``<cache_dir>/<fingerprint>.json`` (written atomically; default
``results/cache/folder_stats`` under the working folder) and a second call with the same
files (same fingerprint: relative paths and sizes) reads only that file.
"""
from __future__ import annotations

import json
import os
import statistics
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from harness.atomic import write_text_atomic
from harness.data.fingerprint import DataError
from harness.data.imagefolder import open_imagefolder

MAX_STATS_IMAGES = 20_000  # training images decoded for the mean/std and the native size
STATS_VERSION = 1  # bump when the measurement changes: old cache files are then measured again


def default_cache_dir() -> str:
    """`results/cache/folder_stats` under the working folder, as an absolute path."""
    return os.path.abspath(os.path.join("results", "cache", "folder_stats"))


@dataclass(frozen=True)
class FolderStats:
    """One ImageFolder, measured (``mean``/``std`` per RGB channel on the 0-255 scale)."""

    root: str
    fingerprint: str  # train/val file fingerprints
    num_classes: int
    train_images: int
    val_images: int
    native_size: int  # median shorter side of the measured training images, pixels
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    measured_images: int  # training images the size and the mean/std were measured on

    @staticmethod
    def from_json(d: dict) -> "FolderStats":
        return FolderStats(**{**d, "mean": tuple(d["mean"]), "std": tuple(d["std"])})


def decode_rgb(path: str | os.PathLike) -> np.ndarray:
    """uint8 [H, W, 3]: the image as torchvision's ImageFolder loader gives it (PIL, RGB)."""
    with open(path, "rb") as fh:
        img = Image.open(fh)
        return np.array(img.convert("RGB"))  # a writable copy


def _sample(n: int, limit: int) -> list[int]:
    """``limit`` evenly spaced indices of ``n`` (all of them when n <= limit)."""
    if n <= limit:
        return list(range(n))
    return sorted({int(i) for i in np.linspace(0, n - 1, limit)})


def measure(paths: list[str]) -> tuple[int, tuple[float, ...], tuple[float, ...]]:
    """(median shorter side, per-channel mean, population std) of the decoded images, exactly
    (256-bin histograms per channel, no float copy of the images)."""
    hist = torch.zeros(3, 256, dtype=torch.float64)
    sides = []
    for p in paths:
        try:
            a = torch.from_numpy(decode_rgb(p))
        except (OSError, ValueError) as e:
            raise DataError(f"{p}: cannot decode ({str(e).splitlines()[0] if str(e) else type(e).__name__}); "
                            "expected an image file PIL can read") from None
        sides.append(min(a.shape[0], a.shape[1]))
        for c in range(3):
            hist[c] += torch.bincount(a[..., c].reshape(-1), minlength=256).to(torch.float64)
    values = torch.arange(256, dtype=torch.float64)
    n = hist.sum(dim=1)
    mean = (hist * values).sum(dim=1) / n
    var = (hist * (values[None] - mean[:, None]) ** 2).sum(dim=1) / n
    return (int(statistics.median_low(sides)), tuple(round(float(m), 4) for m in mean),
            tuple(round(float(v) ** 0.5, 4) for v in var))


def folder_stats(root: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> FolderStats:
    """The folder's measured statistics: from the cache when its fingerprint is there, else
    measured and cached. DataError (one line) for a bad layout or an unreadable image."""
    train, val = open_imagefolder(root, "train"), open_imagefolder(root, "val")
    fp = f"{train.fingerprint}{val.fingerprint}"
    cache = Path(cache_dir or default_cache_dir()) / f"{fp}.json"
    if cache.is_file():
        try:
            d = json.loads(cache.read_text())
            if d.pop("version", None) == STATS_VERSION:
                return replace(FolderStats.from_json(d), root=str(Path(root).expanduser().resolve()))
        except (OSError, ValueError, TypeError, KeyError):
            pass  # a damaged cache file is measured again and replaced
    paths = [p for p, _ in train.dataset.samples]
    picked = [paths[i] for i in _sample(len(paths), MAX_STATS_IMAGES)]
    size, mean, std = measure(picked)
    stats = FolderStats(root=str(Path(root).expanduser().resolve()), fingerprint=fp,
                        num_classes=train.num_classes, train_images=len(train), val_images=len(val),
                        native_size=size, mean=mean, std=std, measured_images=len(picked))
    write_text_atomic(cache, json.dumps({"version": STATS_VERSION, **asdict(stats)}, indent=1) + "\n")
    return stats
