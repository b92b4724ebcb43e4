"""Composed detection/segmentation data (smoke and local scales): Fashion-MNIST items
pasted on blank canvases, with exact boxes and per-pixel masks.

Stands in for Pascal VOC (Table 8) and ADE20K (Table 9) where neither can be had. How a
canvas is made (seeded by ``data_seed``, numpy's PCG64):

1. draw the number of items uniformly from ``min_items..max_items`` (1-3) and the items
   uniformly from the split's images (train canvases from Fashion-MNIST's train split,
   test canvases from its test split, so no item is seen in both);
2. an item is *thresholded*: its pixels <= ``threshold`` (16 of 255) become 0, and it is
   cropped to the tight bounding box of its remaining nonzero pixels;
3. the crop is placed at a uniformly random position where it does not intersect the crops
   placed before it (up to ``tries`` draws; an item that finds no room is dropped, so a
   canvas may hold fewer items than drawn, never fewer than one), and copied in.

Because crops never overlap there is no z-order: every canvas pixel belongs to at most
one item and holds exactly that item's (thresholded) value. Hence, exactly:

* ``boxes[i]`` = ``[x0, y0, x1, y1]`` (xyxy, pixel-edge coordinates, ``x1``/``y1``
  exclusive) = the paste rectangle of the crop = the tight box of the item's nonzero pixels;
* ``masks`` = class id + 1 (1..10) where a pasted item's pixel is nonzero, 0 background;
* ``labels[i]`` = the Fashion-MNIST class (0..9) of the item.

Images are grey uint8 [N, 1, H, W]; a model with RGB input gets the channel repeated
(the smoke scale's backbones are trained on 3-channel synthetic data). The smoke scale
composes from Fashion-MNIST too, not from its synthetic set: boxes and masks need
objects on a background.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from harness.data import fingerprint_arrays, load_in_memory

NUM_CLASSES = 10  # Fashion-MNIST classes; detection adds background as 0, segmentation too
THRESHOLD = 16


@dataclass(eq=False)
class ComposedSet:
    """Canvases with their boxes, labels and masks (see module doc)."""

    images: torch.Tensor  # uint8 [N, 1, H, W]
    masks: torch.Tensor  # uint8 [N, H, W]: 0 background, class + 1 under an item
    boxes: list[torch.Tensor]  # per canvas int64 [k, 4] xyxy, x1/y1 exclusive
    labels: list[torch.Tensor]  # per canvas int64 [k], 0..9
    sources: list[torch.Tensor]  # per canvas int64 [k]: index of the item in its split
    split: str
    fingerprint: str
    num_classes: int = NUM_CLASSES
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def canvas(self) -> int:
        return int(self.images.shape[-1])


def tight_box(item: np.ndarray) -> tuple[int, int, int, int] | None:
    """xyxy (x1/y1 exclusive) of the nonzero pixels of a 2-D array; None if all zero."""
    ys, xs = np.nonzero(item)
    if len(ys) == 0:
        return None
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


def _intersects(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def compose(items: np.ndarray, item_labels: np.ndarray, n: int, canvas: int, *,
            seed: int, min_items: int = 1, max_items: int = 3, threshold: int = THRESHOLD,
            tries: int = 30, split: str = "") -> ComposedSet:
    """``n`` canvases of ``canvas`` x ``canvas`` pixels from ``items`` (uint8 [M, H, W])."""
    if canvas < items.shape[-1]:
        raise ValueError(f"canvas {canvas} is smaller than an item ({items.shape[-1]} px)")
    rng = np.random.default_rng(seed)
    images = np.zeros((n, canvas, canvas), np.uint8)
    masks = np.zeros((n, canvas, canvas), np.uint8)
    boxes, labels, sources = [], [], []
    for i in range(n):
        k = int(rng.integers(min_items, max_items + 1))
        placed: list[tuple[int, int, int, int]] = []
        cls: list[int] = []
        src: list[int] = []
        while len(src) < k:
            j = int(rng.integers(len(items)))
            item = np.where(items[j] > threshold, items[j], 0).astype(np.uint8)
            tb = tight_box(item)
            if tb is None:
                continue  # an empty item (none in Fashion-MNIST): draw another
            crop = item[tb[1]:tb[3], tb[0]:tb[2]]
            h, w = crop.shape
            for _ in range(tries):
                x0 = int(rng.integers(canvas - w + 1))
                y0 = int(rng.integers(canvas - h + 1))
                box = (x0, y0, x0 + w, y0 + h)
                if not any(_intersects(box, b) for b in placed):
                    break
            else:
                if placed:
                    break  # no room left on this canvas
                raise AssertionError("an empty canvas always has room")  # canvas >= item
            images[i, y0:y0 + h, x0:x0 + w] = crop
            masks[i, y0:y0 + h, x0:x0 + w] = np.where(crop > 0, int(item_labels[j]) + 1, 0)
            placed.append(box)
            cls.append(int(item_labels[j]))
            src.append(j)
        boxes.append(torch.tensor(placed, dtype=torch.int64).reshape(-1, 4))
        labels.append(torch.tensor(cls, dtype=torch.int64))
        sources.append(torch.tensor(src, dtype=torch.int64))
    flat_boxes = torch.cat(boxes) if boxes else torch.zeros(0, 4, dtype=torch.int64)
    counts = torch.tensor([len(b) for b in boxes], dtype=torch.int64)
    fp = fingerprint_arrays(images, masks, flat_boxes, torch.cat(labels), counts)
    return ComposedSet(images=torch.from_numpy(images)[:, None], masks=torch.from_numpy(masks),
                       boxes=boxes, labels=labels, sources=sources, split=split, fingerprint=fp,
                       meta={"canvas": canvas, "seed": seed, "min_items": min_items,
                             "max_items": max_items, "threshold": threshold})


_CACHE: dict[tuple, ComposedSet] = {}


def composed_fashion_mnist(split: str, n: int, canvas: int, *, seed: int = 0,
                           root: str | None = None, max_items: int = 3,
                           threshold: int = THRESHOLD) -> ComposedSet:
    """Canvases composed from Fashion-MNIST's ``split`` (train or test); cached per process.

    The seed of the test split is offset so train and test never share a random stream.
    """
    key = (split, n, canvas, seed, root, max_items, threshold)
    if key not in _CACHE:
        src = load_in_memory("fashion_mnist", split, root)
        items = src.images[:, 0].numpy()
        labels = src.labels.numpy()
        split_seed = seed * 2 + (0 if split == "train" else 1)
        _CACHE[key] = compose(items, labels, n, canvas, seed=split_seed, max_items=max_items,
                              threshold=threshold, split=split)
    return _CACHE[key]
