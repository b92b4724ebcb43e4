"""Decoding and augmenting ImageFolder batches on the training device (GPU JPEG decode).

``DeviceDecodeBatches`` (``harness.batches``) is the batch source built from these pieces.

The default folder path (``FolderBatches`` in ``harness.batches``) decodes and augments each
image on the CPU in DataLoader workers (torchvision transforms.v2). That caps a GPU at what
the host's cores decode (about 660 JPEG images/s per core at ImageNet size). This path
moves the work to the device:

1. DataLoader workers only read the files' bytes (plain ``bytes``: a batch of tensors would
   cost one shared-memory file descriptor each);
2. one ``torchvision.io.decode_jpeg(list, device=...)`` call decodes the whole batch (nvJPEG
   on CUDA); files it cannot decode (PNG, CMYK JPEG) fall back to ``decode_image`` on the
   CPU, one by one, and are moved over;
   On CUDA the decode runs on a side stream that first waits for the caller's stream, and
   each output is ``record_stream``-ed onto the caller's stream (see :func:`decode_batch`);
3. Sec 2.1's random-resized crop: the boxes of the whole batch are sampled in one
   vectorised draw from the images' sizes (no host read, no per-image Python work beyond a
   few copy kernels), and resized with one ``roi_align`` per size group
   (``augment.crops_of_images``); flip, colour jitter, PCA lighting and normalisation run
   batched (``augment.photometric``), the same code as the in-memory path;
4. evaluation: shorter side to ``eval_resize`` (antialiased bilinear), center crop, normalise.

Random numbers come from the trial's generator, so on one device a seed gives one sequence.
On a CPU it works too (decode on the host): tests and the data-path benchmark use that.
"""
from __future__ import annotations

import functools
from typing import Callable

import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms.v2 import functional as TF

from harness.data.augment import AugConfig, Shard, crops_of_images, normalize, sample_crop_boxes, to_device
from harness.data.imagefolder import GlobalBatches, ImageFolderData


class FileBytes(Dataset):
    """(a file's bytes, label) for each sample of an ImageFolder."""

    def __init__(self, samples: list[tuple[str, int]]) -> None:
        self.samples = samples

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> tuple[bytes, int]:
        path, label = self.samples[i]
        with open(path, "rb") as fh:
            return fh.read(), label


def collate_bytes(items: list[tuple[bytes, int]]) -> tuple[list[torch.Tensor], torch.Tensor]:
    """Encoded files as uint8 1-D tensors (in the main process) and int64 labels."""
    data = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b, _ in items]
    return data, torch.tensor([y for _, y in items], dtype=torch.int64)


def _keep(items: list) -> list:
    """Collate in workers: leave the (bytes, label) pairs as they are (pickled, no fds)."""
    return items


def _decode_here(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Decode on the current stream: one batched ``decode_jpeg``; if it fails (a non-JPEG or
    CMYK file in the batch), each image alone, with ``decode_image`` on the CPU last."""
    dev = "cuda" if device.type == "cuda" else "cpu"
    try:
        return [t.to(device) for t in decode_jpeg(data, mode=ImageReadMode.RGB, device=dev)]
    except RuntimeError:
        out = []
        for d in data:
            try:
                out.append(decode_jpeg(d, mode=ImageReadMode.RGB, device=dev).to(device))
            except RuntimeError:
                out.append(decode_image(d, mode=ImageReadMode.RGB).to(device))
        return out


@functools.lru_cache(maxsize=None)
def _side_stream(device: torch.device) -> torch.cuda.Stream:
    return torch.cuda.Stream(device=device)


def on_side_stream(fn: Callable[[], list[torch.Tensor]], device: torch.device) -> list[torch.Tensor]:
    """Run ``fn`` (which allocates and writes device tensors) on a side stream, safely for
    the caller's stream.

    nvJPEG writes its outputs from its own stream, not ordered after the caller's queued
    kernels (pytorch/vision PR 9606, meta-pytorch/torchcodec PR 1634). Outputs allocated
    while the caller's stream is current may be blocks the caching allocator just got back
    from tensors that queued kernels still read, and the decoder overwrites them. Here the
    outputs come from the side stream's own pool (never handed blocks the caller's queued
    kernels still use), the side stream starts after the caller's queued work, the caller's
    stream waits for the side stream before it reads them, and ``record_stream`` keeps each
    output's block from being reused until the caller's stream is done with it.
    """
    side, main = _side_stream(device), torch.cuda.current_stream(device)
    side.wait_stream(main)
    with torch.cuda.stream(side):
        out = fn()
    main.wait_stream(side)
    for t in out:
        if t.device.type == "cuda":
            t.record_stream(main)
    return out


def decode_batch(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Decode encoded images to uint8 RGB [3, H, W] tensors on ``device`` (CUDA: nvJPEG on a
    side stream, :func:`on_side_stream`)."""
    if device.type != "cuda":
        return _decode_here(data, device)
    return on_side_stream(lambda: _decode_here(data, device), device)


def train_crops(images: list[torch.Tensor], cfg: AugConfig, generator: torch.Generator,
                shard: Shard | None = None) -> torch.Tensor:
    """Sec 2.1 step 1 for images of different sizes: float32 0-255 [B, 3, out, out]. The
    boxes are drawn for the whole batch at once (the same draws, in the same order, as one
    image at a time on a CPU generator); ``shard`` as in ``augment.batch_augment``."""
    sizes = torch.tensor([[int(im.shape[-2]), int(im.shape[-1])] for im in images], dtype=torch.int64)
    sizes = to_device(sizes, generator.device)
    boxes = sample_crop_boxes(len(images), sizes[:, 0], sizes[:, 1], cfg, generator, shard)
    return crops_of_images(images, boxes, cfg.out_size)


def eval_images(images: list[torch.Tensor], cfg: AugConfig) -> torch.Tensor:
    """Sec 2.1 evaluation per image: resize shorter side, center crop, then normalise the batch."""
    size = [cfg.out_size, cfg.out_size]
    out = [TF.center_crop(TF.resize(img, [cfg.eval_resize], antialias=True), size) for img in images]
    return normalize(torch.stack(out), cfg)


def bytes_loader(split: ImageFolderData, batch_size: int, train: bool, workers: int,
                 seed: int, shard: tuple[int, int] = (0, 1)) -> DataLoader:
    """Batches of ``(bytes, label)`` pairs read by ``workers`` processes (shuffled when ``train``,
    last partial batch dropped); :func:`collate_bytes` turns one into tensors. ``shard``:
    this data-parallel worker's rows of each global batch (``imagefolder.GlobalBatches``)."""
    rank, world = shard
    sampler = GlobalBatches(len(split.dataset.samples), batch_size, shuffle=train, drop_last=train,
                            seed=seed, rank=rank, world=world)
    return DataLoader(FileBytes(split.dataset.samples), batch_sampler=sampler, num_workers=workers,
                      collate_fn=_keep, generator=torch.Generator().manual_seed(seed),
                      prefetch_factor=4 if workers else None)
