"""Batch sources for the trainer: one interface over in-memory tensors and ImageFolder.

Small datasets live as one uint8 tensor on the training device and are augmented a
whole batch at a time (docs/design.md, performance habits); ImageFolder goes through DataLoader
workers (per-image crops, uint8) with the rest of Sec 2.1 batched on the device, or is
decoded on the device (``harness.data.decode``). Every random draw comes from the generator
the trainer passes in, so a checkpointed generator state resumes the exact same batches.

Data-parallel trials call ``shard(rank, world)``: each worker then loads and augments only
its rows ``rank::world`` of every global batch (the random parameters are still drawn for
the whole batch, so together the workers see the single-process batch) and evaluates only
its rows of every evaluation batch (``harness.distributed`` sums the counts).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Protocol

import torch

from harness.data import AugConfig, DataError, InMemoryDataset, load_in_memory, open_imagefolder
from harness.data.augment import Shard, batch_augment, eval_batch, normalize, photometric
from harness.data.folder_memory import fits_in_memory, load_folder_split
from harness.data.decode import bytes_loader, collate_bytes, decode_batch, eval_images, train_crops
from harness.data.imagefolder import default_workers
from harness.errors import HarnessError, unknown
from harness.models import default_input_size
from harness.scales import Scale

Batch = tuple[torch.Tensor, torch.Tensor]


class BatchSource(Protocol):
    num_classes: int
    in_chans: int
    fingerprint: str
    iters_per_epoch: int

    def train_epoch(self, epoch: int, generator: torch.Generator) -> Iterator[Batch]: ...

    def eval_batches(self) -> Iterator[Batch]: ...

    def shard(self, rank: int, world: int) -> None: ...  # data-parallel: this worker's rows


class _Sharded:
    """This worker's rows of each global batch (``rank::world``); (0, 1) = everything."""

    rank: int = 0
    world: int = 1

    def shard(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world

    def _aug_shard(self) -> Shard | None:
        return (self.rank, self.world, self.batch_size) if self.world > 1 else None

    def _rows(self, t: torch.Tensor) -> torch.Tensor:
        return t[self.rank::self.world] if self.world > 1 else t


TRAIN_EVAL_IMAGES = 10_000  # training images scored for a trial's training accuracy


@dataclass
class InMemoryBatches(_Sharded):
    """uint8 tensors on the device; batched augmentation (Sec 2.1) with no per-image loop."""

    train: InMemoryDataset
    test: InMemoryDataset
    aug: AugConfig
    batch_size: int
    device: torch.device
    eval_batch_size: int = 1024

    def __post_init__(self) -> None:
        if len(self.train.labels) < self.batch_size:
            raise ValueError(f"batch size {self.batch_size} exceeds the "
                             f"{len(self.train.labels)} training images")
        self.x = self.train.images.to(self.device)
        self.y = self.train.labels.to(self.device)
        self.xt = self.test.images.to(self.device)
        self.yt = self.test.labels.to(self.device)
        self.num_classes = self.train.num_classes
        self.in_chans = int(self.x.shape[1])
        self.fingerprint = f"{self.train.fingerprint}/{self.test.fingerprint}"
        self.iters_per_epoch = len(self.y) // self.batch_size  # drop the last partial batch

    def train_epoch(self, epoch: int, generator: torch.Generator) -> Iterator[Batch]:
        perm = torch.randperm(len(self.y), generator=generator, device=generator.device)
        perm = perm.to(self.device)
        shard = self._aug_shard()
        for b in range(self.iters_per_epoch):
            idx = self._rows(perm[b * self.batch_size:(b + 1) * self.batch_size])
            yield batch_augment(self.x[idx], self.aug, generator, shard), self.y[idx]

    def eval_batches(self) -> Iterator[Batch]:
        for s in range(0, len(self.yt), self.eval_batch_size):
            y = self._rows(self.yt[s:s + self.eval_batch_size])
            if len(y):  # a worker's share of a short last batch may be empty
                yield eval_batch(self._rows(self.xt[s:s + self.eval_batch_size]), self.aug), y

    def train_eval_batches(self, limit: int = TRAIN_EVAL_IMAGES) -> Iterator[Batch]:
        """The first ``limit`` training images under the evaluation transform: the training
        accuracy that tells an underfit run (train ~ test) from a fitted one."""
        n = min(limit, len(self.y))
        for s in range(0, n, self.eval_batch_size):
            e = min(s + self.eval_batch_size, n)
            y = self._rows(self.y[s:e])
            if len(y):
                yield eval_batch(self._rows(self.x[s:e]), self.aug), y


@dataclass
class FolderBatches(_Sharded):
    """ImageFolder (ImageNet layout): DataLoader workers decode and crop each image (uint8,
    transforms.v2); flip, colour jitter, PCA lighting and normalisation run batched on the
    device (``augment.photometric``), drawn from the trainer's generator."""

    root: str
    aug: AugConfig
    batch_size: int
    device: torch.device
    workers: int | None = None  # None: default_workers()

    def __post_init__(self) -> None:
        self.train = open_imagefolder(self.root, "train")
        self.val = open_imagefolder(self.root, "val")
        self.num_classes = self.train.num_classes
        self.in_chans = 3
        self.fingerprint = f"{self.train.fingerprint}/{self.val.fingerprint}"
        self.iters_per_epoch = len(self.train.dataset) // self.batch_size
        if self.workers is None:
            self.workers = default_workers()

    def _to(self, batch: Batch) -> Batch:
        x, y = batch
        return x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def _epoch_seed(self, generator: torch.Generator) -> int:
        """One draw per epoch (the loader's order and worker seeds); the only host read of
        an epoch, before its first batch."""
        return int(torch.randint(0, 2**31 - 1, (1,), generator=generator, device=generator.device))

    def train_epoch(self, epoch: int, generator: torch.Generator) -> Iterator[Batch]:
        loader = self.train.loader(self.batch_size, True, self.aug, self.workers, self._epoch_seed(generator),
                                   shard=(self.rank, self.world), crops_only=True)
        shard = self._aug_shard()
        for i, batch in enumerate(loader):
            if i >= self.iters_per_epoch:
                break
            x, y = self._to(batch)
            yield photometric(x.to(torch.float32), self.aug, generator, shard), y

    def eval_batches(self) -> Iterator[Batch]:
        for batch in self.val.loader(self.batch_size, False, self.aug, self.workers, 0,
                                     shard=(self.rank, self.world), crops_only=True):
            x, y = self._to(batch)
            yield normalize(x, self.aug), y


class DeviceDecodeBatches(FolderBatches):
    """ImageFolder decoded and augmented on ``device`` (``harness.data.decode``): workers
    only read file bytes; one batched ``decode_jpeg`` per batch; Sec 2.1 augmentation there."""

    def train_epoch(self, epoch: int, generator: torch.Generator) -> Iterator[Batch]:
        loader = bytes_loader(self.train, self.batch_size, True, self.workers, self._epoch_seed(generator),
                              shard=(self.rank, self.world))
        shard = self._aug_shard()
        for i, items in enumerate(loader):
            if i >= self.iters_per_epoch:
                break
            data, y = collate_bytes(items)
            crops = train_crops(decode_batch(data, self.device), self.aug, generator, shard)
            yield photometric(crops, self.aug, generator, shard), y.to(self.device, non_blocking=True)

    def eval_batches(self) -> Iterator[Batch]:
        for items in bytes_loader(self.val, self.batch_size, False, self.workers, 0,
                                  shard=(self.rank, self.world)):
            data, y = collate_bytes(items)
            yield eval_images(decode_batch(data, self.device), self.aug), y.to(self.device, non_blocking=True)


PAPER_INPUT = 224  # the paper's training crop (Sec 2.1); Inception-V3's is 299 (Sec 4)


def input_size(scale: Scale, model: str | None) -> tuple[int, int]:
    """(training crop, evaluation resize) of ``model`` at ``scale``: the scale's, except at
    the paper scale's 224 px, where a model whose paper input differs (Inception-V3: 299)
    trains at its own size, its evaluation resize scaled alike (299 x 256/224 -> 342;
    docs/ledger.md). The miniature scales (a user's folder at its native size included) keep
    their own sizes for every model, and so does an explicit ``--image-size`` (the caller
    passes ``model=None``)."""
    if model is None or scale.name != "paper" or scale.image_size != PAPER_INPUT:
        return scale.image_size, scale.eval_resize
    native = default_input_size(model)
    if native == PAPER_INPUT:
        return scale.image_size, scale.eval_resize
    return native, int(round(native * scale.eval_resize / scale.image_size))


def aug_config(scale: Scale, data: InMemoryDataset | None, model: str | None = None) -> AugConfig:
    """The scale's augmentation: the paper's Sec 2.1 pipeline with the scale's deviations, at
    ``model``'s input size (:func:`input_size`)."""
    out_size, eval_resize = input_size(scale, model)
    kwargs = dict(out_size=out_size, area=(scale.min_crop_area, 1.0),
                  color_jitter=0.4 if scale.color_jitter else 0.0,
                  pca_std=0.1 if scale.pca_lighting else 0.0, eval_resize=eval_resize)
    if data is not None:
        kwargs.update(mean=tuple(data.mean), std=tuple(data.std))
    if scale.mean is not None and scale.std is not None:  # measured on the folder (data_scale.py)
        kwargs.update(mean=tuple(scale.mean), std=tuple(scale.std))
    return AugConfig(**kwargs)


DECODE_MODES = ("workers", "device")


def _folder_in_memory(root: str, scale: Scale, batch_size: int, device: torch.device,
                      model: str | None) -> InMemoryBatches:
    """A user's small ImageFolder at a miniature scale, decoded once into memory at the
    scale's image size (``harness.data.folder_memory``) and normalised with the scale's
    measured mean/std: the in-memory path, no DataLoader workers."""
    if (scale.train_images or 0) < batch_size:
        raise DataError(f"{root}: {scale.train_images} training images, fewer than one batch of {batch_size}; "
                        "valid: a folder with at least one batch of training images, or a smaller "
                        "--set batch_size (the paper's; the scale divides it)")
    train = load_folder_split(root, "train", scale.image_size, scale.mean, scale.std)
    test = load_folder_split(root, "val", scale.image_size, scale.mean, scale.std)
    eval_batch = 256 if device.type == "cpu" else 1024
    return InMemoryBatches(train, test, aug_config(scale, train, model), batch_size, device, eval_batch)


def make_batches(dataset: str, scale: Scale, batch_size: int, device: torch.device,
                 seed: int, data_root: str | None = None, decode: str = "workers",
                 loader_workers: int | None = None, model: str | None = None) -> BatchSource:
    """Open the trial's dataset: a registered in-memory name, or an ImageFolder path.

    ImageFolder images are decoded and cropped either on the host by ``loader_workers``
    DataLoader workers (``decode="workers"``; None: one per available core, less one) or on
    the training device (``"device"``: GPU JPEG decode, ``harness.data.decode``); the rest
    of Sec 2.1 runs batched on the device either way. ``model`` sets the input size
    (:func:`input_size`: Inception-V3 at 299 px at the paper scale).
    """
    if decode not in DECODE_MODES:
        raise unknown("decode mode", decode, DECODE_MODES)
    if dataset in ("fashion_mnist", "synthetic"):
        kw = dict(image_size=scale.image_size, seed=0)
        train = load_in_memory(dataset, "train", data_root, subset=scale.train_subset, **kw)
        test = load_in_memory(dataset, "test", data_root, subset=scale.test_subset, **kw)
        # on a CPU, eval batches of 256 stay in cache: 25-35% faster than 1024 for the local
        # miniatures on one core; GPUs want large batches
        eval_batch = 256 if device.type == "cpu" else 1024
        return InMemoryBatches(train, test, aug_config(scale, train, model), batch_size, device, eval_batch)
    root = data_root if dataset == "imagefolder" else dataset
    if root and scale.from_data and scale.name != "paper" and scale.train_images is not None \
            and fits_in_memory(scale.train_images + (scale.val_images or 0), scale.image_size):
        return _folder_in_memory(root, scale, batch_size, device, model)
    if not root:
        raise HarnessError(f"scale {scale.name!r} trains on an ImageFolder: pass --data-root "
                           "PATH (a folder with train/<class>/* and val/<class>/*)")
    source = DeviceDecodeBatches if decode == "device" else FolderBatches
    batches = source(root, aug_config(scale, None, model), batch_size, device, loader_workers)
    if batches.iters_per_epoch == 0:  # drop_last would train 0 steps and still report 'done'
        raise DataError(f"{root}: {len(batches.train.dataset)} training images, fewer than one batch of "
                        f"{batch_size}; valid: a folder with at least one batch of training images, or a "
                        "smaller --set batch_size (the paper's; the scale divides it)")
    return batches
