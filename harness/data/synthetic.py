"""Seeded synthetic 10-class RGB images: fast, offline, and learnable in one epoch.

Each class has a fixed template chosen from ``seed``: a base colour and a sinusoidal stripe
pattern (orientation, frequency). An image is its class's stripes with a random phase (so
crops and flips keep the class evident), plus a random brightness shift and pixel noise.
A tiny CNN beats chance within one epoch; the noise keeps it from being trivial.

Train and test share the templates (same ``seed``) and draw different images. Images are
generated in fixed chunks with their own seeds, so the first N images are the same whatever
``subset`` asks for. Normalisation uses the paper's ImageNet mean/std.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from harness.data.augment import PAPER_MEAN, PAPER_STD
from harness.data.fingerprint import DataError, InMemoryDataset, fingerprint_arrays
from harness.errors import unknown

NUM_CLASSES = 10
CHANNELS = 3
SIZES = {"train": 2048, "test": 512}
_SPLIT_ID = {"train": 1, "test": 2}
_CHUNK = 512
_NOISE_STD = 28.0
_AMPLITUDE = 45.0
_SHIFT_STD = 12.0


def _templates(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng([seed, 0, 0x5EED])
    # class colours: well separated in RGB, mid-range so noise/stripes rarely clip
    colours = rng.uniform(70.0, 185.0, size=(NUM_CLASSES, CHANNELS))
    angles = (np.arange(NUM_CLASSES) * math.pi / NUM_CLASSES + rng.uniform(0, math.pi / NUM_CLASSES))
    angles = rng.permutation(angles)
    freqs = rng.uniform(1.0, 3.0, size=NUM_CLASSES)  # cycles per image side
    return {"colours": colours, "angles": angles, "freqs": freqs}


def _chunk(seed: int, split: str, k: int, n: int, size: int, tpl: dict[str, np.ndarray]):
    rng = np.random.default_rng([seed, _SPLIT_ID[split], k])
    labels = rng.permutation(np.arange(n) % NUM_CLASSES)
    yy, xx = np.meshgrid(np.arange(size) / size, np.arange(size) / size, indexing="ij")
    ang, frq = tpl["angles"][labels], tpl["freqs"][labels]
    phase = rng.uniform(0, 2 * math.pi, size=n)
    proj = np.cos(ang)[:, None, None] * xx + np.sin(ang)[:, None, None] * yy
    stripes = np.sin(2 * math.pi * frq[:, None, None] * proj + phase[:, None, None])  # [n, H, W]
    img = tpl["colours"][labels][:, :, None, None] + _AMPLITUDE * stripes[:, None]
    img = img + rng.normal(0, _SHIFT_STD, size=(n, 1, 1, 1))
    img = img + rng.normal(0, _NOISE_STD, size=(n, CHANNELS, size, size))
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), labels.astype(np.int64)


def load_synthetic(split: str, *, subset: int | None = None, seed: int = 0,
                   image_size: int = 16) -> InMemoryDataset:
    """Synthetic ``split`` ("train": 2048, "test": 512 images by default; ``subset`` sets N,
    larger than the default allowed) as uint8 [N, 3, image_size, image_size], 10 classes."""
    if split not in SIZES:
        raise unknown("split", split, SIZES)
    if image_size < 4:
        raise DataError(f"synthetic image_size={image_size}; expected >= 4 pixels")
    n = SIZES[split] if subset is None else int(subset)
    if n < 1:
        raise DataError(f"subset={subset} for synthetic {split}; expected >= 1")
    tpl = _templates(seed)
    xs, ys = [], []
    for k in range(math.ceil(n / _CHUNK)):
        x, y = _chunk(seed, split, k, _CHUNK, image_size, tpl)
        xs.append(x)
        ys.append(y)
    x = torch.from_numpy(np.concatenate(xs)[:n])
    y = torch.from_numpy(np.concatenate(ys)[:n])
    return InMemoryDataset(images=x, labels=y, num_classes=NUM_CLASSES, mean=PAPER_MEAN, std=PAPER_STD,
                           fingerprint=fingerprint_arrays(x, y), name="synthetic")
