"""Paper-scale transfer data (Sec 6.2): Pascal VOC for Table 8, ADE20K for Table 9.

Both are looked for under the transfer setting ``root`` if set, else ``--data-root``
(the same folder may hold ImageNet's ``train/`` and ``val/``, ``VOCdevkit/`` and
``ADEChallengeData2016/`` side by side). Nothing is downloaded.

Pascal VOC (torchvision's ``VOCDetection`` layout)::

    ROOT/VOCdevkit/VOC2007/{Annotations/*.xml, JPEGImages/*.jpg, ImageSets/Main/{trainval,test}.txt}
    ROOT/VOCdevkit/VOC2012/...   (optional: its trainval is added to training, as in the paper)

Training: VOC2007 trainval (+ VOC2012 trainval), objects marked ``difficult`` left out;
evaluation: VOC2007 test, ``difficult`` objects ignored (``iscrowd``). Boxes: VOC's 1-based
inclusive pixel corners become 0-based xyxy with exclusive x1/y1 (``xmin - 1, ymin - 1,
xmax, ymax``). Labels 1..20 (0 = background).

ADE20K (the SceneParsing challenge release)::

    ROOT/ADEChallengeData2016/images/{training,validation}/*.jpg
    ROOT/ADEChallengeData2016/annotations/{training,validation}/*.png

Annotation value 0 ("other objects") is ignored (255), 1..150 become classes 0..149.
Training: random rescale of the shorter side to 0.5-2.0 x ``base_size``, random
``crop`` x ``crop`` crop (padding: image 0 after normalisation, label ignored),
horizontal flip; evaluation: each validation image at its own size, one at a time.

Every missing file or folder is a one-line ``HarnessError`` naming the expected layout.
"""
from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any, Iterator

import torch

from harness.data import fingerprint_files
from harness.errors import HarnessError

VOC_NAMES = ("aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair",
             "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
             "sheep", "sofa", "train", "tvmonitor")
VOC_LAYOUT = ("ROOT/VOCdevkit/VOC2007/{Annotations/*.xml, JPEGImages/*.jpg, "
              "ImageSets/Main/trainval.txt, ImageSets/Main/test.txt}")
ADE_LAYOUT = ("ROOT/ADEChallengeData2016/images/{training,validation}/*.jpg and "
              "ROOT/ADEChallengeData2016/annotations/{training,validation}/*.png")
IGNORE = 255


def _root(settings: dict[str, Any], data_root: str | None, what: str, layout: str) -> Path:
    root = settings.get("root") or data_root
    if not root:
        raise HarnessError(f"{what} needs --data-root ROOT (or transfer.root) with {layout}")
    return Path(root).expanduser().resolve()


# ---- Pascal VOC ---------------------------------------------------------------------
def voc_ids(year_dir: Path, image_set: str) -> list[str]:
    """Image ids of ``ImageSets/Main/<image_set>.txt``, with every file checked."""
    listing = year_dir / "ImageSets" / "Main" / f"{image_set}.txt"
    for need in (year_dir / "Annotations", year_dir / "JPEGImages", listing):
        if not need.exists():
            raise HarnessError(f"Pascal VOC: {need} not found; expected {VOC_LAYOUT}")
    ids = [line.split()[0] for line in listing.read_text().splitlines() if line.strip()]
    if not ids:
        raise HarnessError(f"Pascal VOC: {listing} lists no images")
    return ids


def parse_voc_xml(path: Path) -> dict[str, torch.Tensor]:
    """Boxes (0-based xyxy, exclusive x1/y1), labels 1..20 and ``iscrowd`` (= difficult)."""
    try:
        root = ET.parse(path).getroot()
    except (ET.ParseError, OSError) as exc:
        raise HarnessError(f"Pascal VOC: cannot read {path}: {exc}") from None
    boxes, labels, difficult = [], [], []
    for obj in root.iter("object"):
        name = (obj.findtext("name") or "").strip()
        if name not in VOC_NAMES:
            raise HarnessError(f"Pascal VOC: {path}: unknown class {name!r}")
        bb = obj.find("bndbox")
        if bb is None:
            raise HarnessError(f"Pascal VOC: {path}: object {name!r} has no bndbox")
        x0, y0, x1, y1 = (float(bb.findtext(k) or "nan") for k in ("xmin", "ymin", "xmax", "ymax"))
        boxes.append([x0 - 1, y0 - 1, x1, y1])
        labels.append(VOC_NAMES.index(name) + 1)
        difficult.append(int((obj.findtext("difficult") or "0").strip() or 0))
    return {"boxes": torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
            "labels": torch.tensor(labels, dtype=torch.int64),
            "iscrowd": torch.tensor(difficult, dtype=torch.int64)}


def _read_rgb(path: Path) -> torch.Tensor:
    from torchvision.io import ImageReadMode, decode_image

    try:
        return decode_image(str(path), mode=ImageReadMode.RGB)
    except (RuntimeError, OSError) as exc:
        raise HarnessError(f"cannot read image {path}: {type(exc).__name__}") from None


class VOCDataset(torch.utils.data.Dataset):
    """(uint8 image [3, H, W], target) for the given (year folder, id) pairs."""

    def __init__(self, items: list[tuple[Path, str]], drop_difficult: bool) -> None:
        self.items, self.drop_difficult = items, drop_difficult

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        year_dir, iid = self.items[i]
        target = parse_voc_xml(year_dir / "Annotations" / f"{iid}.xml")
        if self.drop_difficult:
            keep = target["iscrowd"] == 0
            target = {k: v[keep] for k, v in target.items()}
        return _read_rgb(year_dir / "JPEGImages" / f"{iid}.jpg"), target

    def files(self) -> list[Path]:
        return [p for d, iid in self.items
                for p in (d / "Annotations" / f"{iid}.xml", d / "JPEGImages" / f"{iid}.jpg")]


def open_voc(root: Path) -> tuple[VOCDataset, VOCDataset]:
    """(train: 07 trainval + 12 trainval if present, test: 07 test)."""
    devkit = root / "VOCdevkit"
    y07 = devkit / "VOC2007"
    if not y07.is_dir():
        raise HarnessError(f"Pascal VOC: {y07} not found; expected {VOC_LAYOUT}")
    train = [(y07, i) for i in voc_ids(y07, "trainval")]
    y12 = devkit / "VOC2012"
    if y12.is_dir():
        train += [(y12, i) for i in voc_ids(y12, "trainval")]
    test = [(y07, i) for i in voc_ids(y07, "test")]
    for d, iid in train[:1] + test[:1]:
        for p in (d / "Annotations" / f"{iid}.xml", d / "JPEGImages" / f"{iid}.jpg"):
            if not p.is_file():
                raise HarnessError(f"Pascal VOC: {p} (listed in ImageSets) not found; expected {VOC_LAYOUT}")
    return VOCDataset(train, drop_difficult=True), VOCDataset(test, drop_difficult=False)


def _collate(batch: list) -> tuple[list, list]:
    return [b[0] for b in batch], [b[1] for b in batch]


class VOCData:
    """Pascal VOC batches for ``DetectionTask``: (images 0-1 list, targets)."""

    def __init__(self, settings: dict[str, Any], data_root: str | None, device: torch.device) -> None:
        root = _root(settings, data_root, "Pascal VOC (Table 8)", VOC_LAYOUT)
        self.train, self.test = open_voc(root)
        self.device, self.workers = device, int(settings.get("workers", 8))
        self.batch_size = min(int(settings["batch_size"]), len(self.train))
        self.iters_per_epoch = len(self.train) // self.batch_size
        self.fingerprint = (f"{fingerprint_files(root, self.train.files())}/"
                            f"{fingerprint_files(root, self.test.files())}")

    def _to(self, images: list, targets: list) -> tuple[list, list]:
        return ([im.to(self.device).float() / 255.0 for im in images],
                [{k: v.to(self.device) for k, v in t.items()} for t in targets])

    def train_batches(self, epoch: int, gen: torch.Generator) -> Iterator[tuple]:
        order = torch.randperm(len(self.train), generator=gen).tolist()
        flips = (torch.rand(len(self.train), generator=gen) < 0.5).tolist()
        sampler = order[:self.iters_per_epoch * self.batch_size]
        loader = torch.utils.data.DataLoader(torch.utils.data.Subset(self.train, sampler),
                                             batch_size=self.batch_size, num_workers=self.workers,
                                             collate_fn=_collate)
        for b, (images, targets) in enumerate(loader):
            images, targets = self._to(images, targets)
            for j in range(len(images)):
                if flips[order[b * self.batch_size + j]]:
                    w = images[j].shape[-1]
                    images[j] = images[j].flip(-1)
                    bx = targets[j]["boxes"]
                    targets[j]["boxes"] = torch.stack([w - bx[:, 2], bx[:, 1], w - bx[:, 0], bx[:, 3]], 1)
            yield images, targets

    def eval_batches(self) -> Iterator[tuple]:
        loader = torch.utils.data.DataLoader(self.test, batch_size=self.batch_size,
                                             num_workers=self.workers, collate_fn=_collate)
        for images, targets in loader:
            yield self._to(images, targets)


# ---- ADE20K -------------------------------------------------------------------------
def ade_pairs(root: Path, split: str) -> list[tuple[Path, Path]]:
    """(image, annotation) pairs of ``training`` or ``validation``."""
    base = root / "ADEChallengeData2016"
    img_dir, ann_dir = base / "images" / split, base / "annotations" / split
    for need in (img_dir, ann_dir):
        if not need.is_dir():
            raise HarnessError(f"ADE20K: {need} not found; expected {ADE_LAYOUT}")
    images = sorted(img_dir.glob("*.jpg"))
    if not images:
        raise HarnessError(f"ADE20K: no .jpg images in {img_dir}; expected {ADE_LAYOUT}")
    pairs = []
    for im in images:
        ann = ann_dir / f"{im.stem}.png"
        if not ann.is_file():
            raise HarnessError(f"ADE20K: annotation {ann} for {im.name} not found; expected {ADE_LAYOUT}")
        pairs.append((im, ann))
    return pairs


def ade_label(ann: torch.Tensor) -> torch.Tensor:
    """ADE20K annotation values -> class ids: 0 ('other') -> 255 (ignored), k -> k - 1."""
    ann = ann.long()
    return torch.where(ann == 0, torch.full_like(ann, IGNORE), ann - 1)


class ADEDataset(torch.utils.data.Dataset):
    """(normalised float image [3, H, W], label [H, W]); training crops are ``crop`` square."""

    def __init__(self, pairs: list[tuple[Path, Path]], mean: list[float], std: list[float],
                 train: bool, crop: int = 480, base_size: int = 520, seed: int = 0) -> None:
        self.pairs, self.train, self.crop, self.base, self.seed = pairs, train, crop, base_size, seed
        self.mean = torch.tensor(mean).view(-1, 1, 1)
        self.std = torch.tensor(std).view(-1, 1, 1)
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        import torch.nn.functional as F
        from torchvision.io import ImageReadMode, decode_image

        im_path, ann_path = self.pairs[i]
        img = _read_rgb(im_path).float()
        label = ade_label(decode_image(str(ann_path), mode=ImageReadMode.GRAY)[0])
        if self.train:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch * 100_003 + i)
            short = int(self.base * (0.5 + 1.5 * float(torch.rand((), generator=g))))
            h, w = img.shape[-2:]
            size = (max(1, round(h * short / min(h, w))), max(1, round(w * short / min(h, w))))
            img = F.interpolate(img[None], size=size, mode="bilinear", align_corners=False)[0]
            label = F.interpolate(label[None, None].float(), size=size, mode="nearest")[0, 0].long()
            img = (img - self.mean) / self.std
            ph, pw = max(0, self.crop - size[0]), max(0, self.crop - size[1])
            img = F.pad(img, (0, pw, 0, ph), value=0.0)
            label = F.pad(label, (0, pw, 0, ph), value=IGNORE)
            y0 = int(torch.randint(img.shape[-2] - self.crop + 1, (), generator=g))
            x0 = int(torch.randint(img.shape[-1] - self.crop + 1, (), generator=g))
            img = img[:, y0:y0 + self.crop, x0:x0 + self.crop]
            label = label[y0:y0 + self.crop, x0:x0 + self.crop]
            if float(torch.rand((), generator=g)) < 0.5:
                img, label = img.flip(-1), label.flip(-1)
            return img.contiguous(), label.contiguous()
        return (img - self.mean) / self.std, label


class ADEData:
    """ADE20K batches for ``SegmentationTask``."""

    def __init__(self, settings: dict[str, Any], mean: list[float], std: list[float],
                 data_root: str | None, device: torch.device) -> None:
        root = _root(settings, data_root, "ADE20K (Table 9)", ADE_LAYOUT)
        train, val = ade_pairs(root, "training"), ade_pairs(root, "validation")
        crop, base = int(settings.get("crop", 480)), int(settings.get("base_size", 520))
        self.train = ADEDataset(train, mean, std, True, crop, base, int(settings["data_seed"]))
        self.test = ADEDataset(val, mean, std, False)
        self.device, self.workers = device, int(settings.get("workers", 8))
        self.batch_size = min(int(settings["batch_size"]), len(train))
        self.iters_per_epoch = len(train) // self.batch_size
        files = lambda pairs: [p for pair in pairs for p in pair]  # noqa: E731
        self.fingerprint = f"{fingerprint_files(root, files(train))}/{fingerprint_files(root, files(val))}"

    def train_batches(self, epoch: int, gen: torch.Generator) -> Iterator[tuple]:
        self.train.epoch = epoch
        order = torch.randperm(len(self.train), generator=gen).tolist()
        loader = torch.utils.data.DataLoader(
            torch.utils.data.Subset(self.train, order[:self.iters_per_epoch * self.batch_size]),
            batch_size=self.batch_size, num_workers=self.workers, drop_last=True)
        for x, y in loader:
            yield x.to(self.device, non_blocking=True), y.to(self.device, non_blocking=True)

    def eval_batches(self) -> Iterator[tuple]:
        loader = torch.utils.data.DataLoader(self.test, batch_size=1, num_workers=self.workers)
        for x, y in loader:
            yield x.to(self.device), y.to(self.device)
