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
3. Sec 2.1's random-resized crop is sampled per image (images differ in size) and resized
   with ``roi_align`` on the device; flip, colour jitter, PCA lighting and normalisation run
   batched (``augment.photometric``), the same code as the in-memory path;
4. evaluation: shorter side to ``eval_resize`` (antialiased bilinear), center crop, normalise.

Random numbers come from the trial's generator, so on one device a seed gives one sequence.
On a CPU it works too (decode on the host): tests and the data-path benchmark use that.
"""
from __future__ import annotations


import torch
from torch.utils.data import DataLoader, Dataset
from torchvision.io import ImageReadMode, decode_image, decode_jpeg
from torchvision.transforms.v2 import functional as TF

from harness.data.augment import AugConfig, normalize, resized_crops, sample_crop_boxes
from harness.data.imagefolder import ImageFolderData


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


def decode_batch(data: list[torch.Tensor], device: torch.device) -> list[torch.Tensor]:
    """Decode encoded images to uint8 RGB [3, H, W] tensors on ``device``.

    One batched ``decode_jpeg`` call; if it fails (a non-JPEG or CMYK file in the batch),
    each image is decoded alone, with ``decode_image`` on the CPU as the last resort.
    """
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


def train_crops(images: list[torch.Tensor], cfg: AugConfig, generator: torch.Generator) -> torch.Tensor:
    """Sec 2.1 step 1 per image (sizes differ): float32 0-255 [B, 3, out, out]."""
    crops = []
    for img in images:
        boxes = sample_crop_boxes(1, img.shape[-2], img.shape[-1], cfg, generator)
        crops.append(resized_crops(img.unsqueeze(0), boxes, cfg.out_size))
    return torch.cat(crops)


def eval_images(images: list[torch.Tensor], cfg: AugConfig) -> torch.Tensor:
    """Sec 2.1 evaluation per image: resize shorter side, center crop, then normalise the batch."""
    size = [cfg.out_size, cfg.out_size]
    out = [TF.center_crop(TF.resize(img, [cfg.eval_resize], antialias=True), size) for img in images]
    return normalize(torch.stack(out), cfg)


def bytes_loader(split: ImageFolderData, batch_size: int, train: bool, workers: int,
                 seed: int) -> DataLoader:
    """Batches of ``(bytes, label)`` pairs read by ``workers`` processes (shuffled when ``train``,
    last partial batch dropped); :func:`collate_bytes` turns one into tensors."""
    return DataLoader(FileBytes(split.dataset.samples), batch_size=batch_size, shuffle=train,
                      drop_last=train, num_workers=workers, collate_fn=_keep,
                      generator=torch.Generator().manual_seed(seed),
                      prefetch_factor=4 if workers else None)
