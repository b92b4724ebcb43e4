"""Data for the harness: in-memory sets (Fashion-MNIST, synthetic), ImageNet-style folders,
and the paper's Sec 2.1 augmentation (batched in ``augment``, per image in ``transforms``).

    load_in_memory(name, split, root=None, *, subset=None, seed=0, image_size=16) -> InMemoryDataset
    open_imagefolder(root, split) -> ImageFolderData
    AugConfig, batch_augment, eval_batch, sample_crop_boxes, train_transform, eval_transform
    ensure_fashion_mnist, download_fashion_mnist, DataError
"""
from __future__ import annotations

import os

from harness.data.augment import (
    PAPER_MEAN,
    PAPER_STD,
    PCA_EIGVAL,
    PCA_EIGVEC,
    AugConfig,
    batch_augment,
    eval_batch,
    sample_crop_boxes,
)
from harness.data.ensure import download_fashion_mnist, ensure_fashion_mnist
from harness.data.fashion_mnist import find_fashion_mnist, load_fashion_mnist
from harness.data.fingerprint import DataError, InMemoryDataset, fingerprint_arrays, fingerprint_files
from harness.data.imagefolder import ImageFolderData, open_imagefolder
from harness.data.synthetic import load_synthetic
from harness.data.transforms import eval_transform, train_transform
from harness.errors import unknown

IN_MEMORY = ("fashion_mnist", "synthetic")
SPLITS = ("train", "test")


def load_in_memory(name: str, split: str, root: str | os.PathLike | None = None, *,
                   subset: int | None = None, seed: int = 0, image_size: int = 16) -> InMemoryDataset:
    """Load a small data set as one uint8 tensor.

    ``fashion_mnist``: 60000/10000 images 1x28x28 from ``root`` (or ``$HARNESS_DATA_ROOT``, or
    Debian's /usr/share/datasets/fashion-mnist, or ./data/FashionMNIST/raw); ``subset`` takes
    the first N; ``seed`` and ``image_size`` are ignored (native 28x28). mean/std: its own.
    ``synthetic``: seeded 10-class 3 x image_size x image_size, 2048/512 images (``subset``
    sets N); ``root`` ignored; the paper's mean/std.
    """
    if name not in IN_MEMORY:
        raise unknown("dataset", name, IN_MEMORY)
    if split not in SPLITS:
        raise unknown("split", split, SPLITS)
    if name == "fashion_mnist":
        return load_fashion_mnist(split, root, subset=subset)
    return load_synthetic(split, subset=subset, seed=seed, image_size=image_size)


__all__ = [
    "AugConfig", "DataError", "ImageFolderData", "InMemoryDataset", "PAPER_MEAN", "PAPER_STD", "PCA_EIGVAL",
    "PCA_EIGVEC", "batch_augment", "download_fashion_mnist", "ensure_fashion_mnist", "eval_batch",
    "eval_transform", "fingerprint_arrays", "fingerprint_files", "find_fashion_mnist", "load_fashion_mnist",
    "load_in_memory", "load_synthetic", "open_imagefolder", "sample_crop_boxes", "train_transform",
]
