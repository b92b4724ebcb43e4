"""ImageNet-style image folders: ``root/train/<class>/*.JPEG`` and ``root/val/<class>/*``.

``open_imagefolder(root, split)`` checks the layout up front and answers with a one-line
``DataError`` naming the path and the expected layout (including the common case of the
ImageNet validation images lying flat in ``val/``, not yet sorted into class folders).
``split``: "train", or "val" (alias "test").

``ImageFolderData.loader(...)`` applies the Sec 2.1 per-image v2 pipelines of
``harness.data.transforms``. Randomness: the DataLoader's generator is seeded with ``seed``
(shuffle order and per-worker seeds); with ``workers=0`` the transforms draw from torch's
global RNG in the calling process (seed it with ``torch.manual_seed`` for repeatable runs).

``GlobalBatches`` is the batch sampler of every ImageFolder loader: batches of the global
batch size in one order shared by all data-parallel workers (same seed), each worker taking
rows ``rank::world``, so a worker reads and decodes only its own images. ``default_workers``
sizes the worker pool from the cores this process may use.
"""
from __future__ import annotations

import copy
import os
from functools import cached_property
from pathlib import Path

import torch
from torch.utils.data import DataLoader, Sampler
from torchvision.datasets import ImageFolder
from torchvision.datasets.folder import IMG_EXTENSIONS

from harness.data.augment import AugConfig
from harness.data.fingerprint import DataError, fingerprint_files
from harness.data.transforms import eval_crop_transform, eval_transform, train_crop_transform, train_transform
from harness.errors import unknown

SPLIT_DIRS = {"train": "train", "val": "val", "test": "val"}
LAYOUT = "<root>/train/<class>/*.JPEG and <root>/val/<class>/*.JPEG"


def _is_image(name: str) -> bool:
    return name.lower().endswith(IMG_EXTENSIONS)


def _class_dirs(folder: Path) -> list[str]:
    return sorted(e.name for e in os.scandir(folder) if e.is_dir() and not e.name.startswith("."))


class ImageFolderData:
    """One split of an image-folder data set: ``.dataset`` (torchvision ImageFolder, no
    transform), ``.num_classes``, ``.classes``, ``.fingerprint`` (lazy), ``.loader(...)``."""

    def __init__(self, root: Path, split: str, dataset: ImageFolder) -> None:
        self.root = root
        self.split = split
        self.dataset = dataset

    @property
    def num_classes(self) -> int:
        return len(self.dataset.classes)

    @property
    def classes(self) -> list[str]:
        return list(self.dataset.classes)

    def __len__(self) -> int:
        return len(self.dataset)

    @cached_property
    def fingerprint(self) -> str:
        """Hash of the sorted relative file list with file sizes (one stat per file)."""
        folder = Path(self.dataset.root)
        return fingerprint_files(folder, (Path(p).relative_to(folder) for p, _ in self.dataset.samples))

    def loader(self, batch_size: int, train: bool, cfg: AugConfig, workers: int = 0, seed: int = 0,
               *, drop_last: bool | None = None, pin_memory: bool | None = None,
               shard: tuple[int, int] = (0, 1), crops_only: bool = False) -> DataLoader:
        """DataLoader yielding (float32 normalised [B, 3, out, out] images, int64 labels).

        train=True: Sec 2.1 augmentation, shuffled, last partial batch dropped by default.
        train=False: resize ``cfg.eval_resize`` + center crop ``cfg.out_size``, in order.
        ``crops_only``: only the per-image geometry (uint8 out; the trainer finishes the
        pipeline batched on its device). ``shard=(rank, world)``: this worker's rows of each
        global batch of ``batch_size`` (:class:`GlobalBatches`).
        """
        if batch_size < 1 or workers < 0:
            raise DataError(f"loader: batch_size={batch_size}, workers={workers}; expected batch_size >= 1, "
                            f"workers >= 0")
        ds = copy.copy(self.dataset)  # shares the sample list; own transform
        if crops_only:
            ds.transform = train_crop_transform(cfg) if train else eval_crop_transform(cfg)
        else:
            ds.transform = train_transform(cfg) if train else eval_transform(cfg)
        rank, world = shard
        sampler = GlobalBatches(len(ds), batch_size, shuffle=train,
                                drop_last=train if drop_last is None else drop_last, seed=int(seed),
                                rank=rank, world=world)
        # the workers' own seeds differ per rank (they augment different images)
        gen = torch.Generator().manual_seed(int(seed) * 1009 + rank)
        return DataLoader(
            ds, batch_sampler=sampler, num_workers=workers, generator=gen,
            pin_memory=torch.cuda.is_available() if pin_memory is None else pin_memory,
            persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
        )


class GlobalBatches(Sampler[list[int]]):
    """Index batches of ``batch_size`` over ``n`` samples, in an order drawn from ``seed``
    (when ``shuffle``), each cut to rows ``rank::world``: every data-parallel worker reads
    only its share of the global batch, and the workers together read the whole of it."""

    def __init__(self, n: int, batch_size: int, shuffle: bool, drop_last: bool, seed: int = 0,
                 rank: int = 0, world: int = 1) -> None:
        if not 0 <= rank < world:
            raise DataError(f"GlobalBatches: rank {rank} of world {world}; expected 0 <= rank < world")
        self.n, self.batch_size, self.shuffle, self.drop_last = n, batch_size, shuffle, drop_last
        self.seed, self.rank, self.world = seed, rank, world
        self.epoch_draws = 0

    def __len__(self) -> int:
        return self.n // self.batch_size if self.drop_last else -(-self.n // self.batch_size)

    def __iter__(self):
        if self.shuffle:
            g = torch.Generator().manual_seed(self.seed + self.epoch_draws)
            self.epoch_draws += 1  # a persistent loader's next pass: a new order
            order = torch.randperm(self.n, generator=g).tolist()
        else:
            order = list(range(self.n))
        for b in range(len(self)):
            rows = order[b * self.batch_size:(b + 1) * self.batch_size][self.rank::self.world]
            if rows:  # a worker's share of a short last batch may be empty
                yield rows


def default_workers() -> int:
    """DataLoader workers per training process: the cores this process may run on (its CPU
    affinity), shared by the processes of this node (``LOCAL_WORLD_SIZE``), less one for
    the training loop itself; at least 1."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE", "1") or 1))
    return max(1, cores // local - 1)


def open_imagefolder(root: str | os.PathLike, split: str) -> ImageFolderData:
    """Open ``split`` of an ImageNet-layout folder (see module doc); DataError on a bad layout."""
    if split not in SPLIT_DIRS:
        raise unknown("split", split, SPLIT_DIRS)
    base = Path(root).expanduser()
    folder = base / SPLIT_DIRS[split]
    if not base.is_dir():
        raise DataError(f"{base}: no such folder; expected an ImageNet layout {LAYOUT}")
    if not folder.is_dir():
        raise DataError(f"{folder}: no such folder; expected an ImageNet layout {LAYOUT}")
    classes = _class_dirs(folder)
    if not classes:
        flat = sum(1 for e in os.scandir(folder) if e.is_file() and _is_image(e.name))
        hint = (f" ({flat} images lie directly in it: sort them into one folder per class, "
                f"e.g. with ImageNet's valprep.sh)") if flat else ""
        raise DataError(f"{folder}: no class folders{hint}; expected an ImageNet layout {LAYOUT}")
    empty = [c for c in classes if not any(_is_image(n) for _, _, fs in os.walk(folder / c) for n in fs)]
    if empty:
        raise DataError(f"{folder / empty[0]}: no image files ({len(empty)} of {len(classes)} class folders "
                        f"are empty); expected an ImageNet layout {LAYOUT}")
    if SPLIT_DIRS[split] == "val" and (base / "train").is_dir():
        train_classes = _class_dirs(base / "train")
        if train_classes and train_classes != classes:
            only_val = sorted(set(classes) - set(train_classes))[:3]
            only_train = sorted(set(train_classes) - set(classes))[:3]
            raise DataError(f"{folder}: {len(classes)} class folders differ from {base / 'train'}'s "
                            f"{len(train_classes)} (only in val: {only_val}, only in train: {only_train}); "
                            f"expected the same class folders in both")
    try:
        dataset = ImageFolder(str(folder))
    except (FileNotFoundError, OSError) as e:
        raise DataError(f"{folder}: {str(e).splitlines()[0]}; expected an ImageNet layout {LAYOUT}") from None
    return ImageFolderData(base, SPLIT_DIRS[split], dataset)
