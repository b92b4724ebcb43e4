"""A small ImageFolder held in memory like Fashion-MNIST: one uint8 tensor per split.

At the miniature scales a user's folder of a few thousand small images fits in memory many
times over; decoding it once (instead of in DataLoader workers every epoch) lets it take the
in-memory path of ``harness.batches`` (batched Sec 2.1 augmentation on the device, no worker
processes). Each image is decoded as ImageFolder's loader does (PIL, RGB), its shorter side
resized to ``size`` (antialiased) and center-cropped to ``size`` x ``size``: Sec 2.1's
evaluation geometry, done once, for both splits.
"""
from __future__ import annotations

import os

import torch
from torchvision.transforms.v2 import functional as TF

from harness.data.fingerprint import InMemoryDataset
from harness.data.folder_stats import decode_rgb
from harness.data.imagefolder import open_imagefolder

IN_MEMORY_BYTES = 2**30  # a folder whose decoded splits fit in this stays in memory


def fits_in_memory(images: int, size: int) -> bool:
    """Whether ``images`` RGB images of ``size`` x ``size`` take at most ``IN_MEMORY_BYTES``."""
    return images * 3 * size * size <= IN_MEMORY_BYTES


def square(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 [3, H, W] -> [3, size, size]: shorter side to ``size``, center crop."""
    if min(image.shape[-2:]) != size:
        image = TF.resize(image, size, antialias=True)
    return TF.center_crop(image, [size, size])


def load_folder_split(root: str | os.PathLike, split: str, size: int, mean: tuple[float, ...],
                      std: tuple[float, ...]) -> InMemoryDataset:
    """``split`` ("train" or "val") of the folder as uint8 [N, 3, size, size], to be
    normalised with ``mean``/``std`` (the training split's, measured: ``folder_stats``)."""
    data = open_imagefolder(root, split)
    images = torch.empty(len(data), 3, size, size, dtype=torch.uint8)
    for i, (path, _) in enumerate(data.dataset.samples):
        images[i] = square(torch.from_numpy(decode_rgb(path)).permute(2, 0, 1), size)
    labels = torch.tensor(data.dataset.targets, dtype=torch.int64)
    return InMemoryDataset(images=images, labels=labels, num_classes=data.num_classes,
                           mean=tuple(mean), std=tuple(std), fingerprint=data.fingerprint,
                           name=f"imagefolder:{split}")
