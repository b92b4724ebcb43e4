"""Semantic segmentation for Table 9 (Sec 6.2): FCN on the harness's ResNet backbone.

As in the paper (GluonCV's FCN), stages 3 and 4 are *dilated*: their stride-2 convs
(and ResNet-D's 2x2 average-pool shortcut) get stride 1, and their 3x3 convs dilation 2
(stage 3) and 4 (stage 4), so the last stage has output stride 8 with the pretrained
weights unchanged. ``torchvision.models.segmentation.fcn.FCNHead`` (3x3 conv to C/4,
BN, ReLU, dropout 0.1, 1x1 conv to the classes) runs on ``layer4``, and the logits are
bilinearly upsampled to the input size (``torchvision.models.segmentation.FCN``). No
auxiliary head. Everything is fine-tuned with per-pixel cross-entropy; training flips
horizontally with p = 0.5.

Composed data: 11 classes (background + 10), the backbone's normalisation. Paper scale
(ADE20K): 150 classes with label 0 ("other") ignored, see ``voc_ade.py``.
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from harness.transfer.composed import composed_fashion_mnist
from harness.transfer.detection import stage_channels
from harness.transfer.metrics import SegmentationMeter
from harness.transfer.task import FineTuneTask

NUM_CLASSES = 11  # background + 10
ADE_CLASSES = 150
IGNORE = 255


def dilate_stage(stage: nn.Sequential, dilation: int) -> None:
    """Make a ResNet stage stride 1 with ``dilation`` (torchvision's
    ``replace_stride_with_dilation`` rule: the first block keeps the previous dilation,
    ``dilation // 2``, on its 3x3 conv; the others use ``dilation``)."""
    for i, block in enumerate(stage):
        d = max(1, dilation // 2) if i == 0 else dilation
        for m in block.modules():
            if isinstance(m, nn.Conv2d):
                if m.kernel_size == (3, 3):
                    m.stride, m.dilation, m.padding = (1, 1), (d, d), (d, d)
                elif m.stride != (1, 1):
                    m.stride = (1, 1)  # ResNet-A's strided 1x1, or a strided 1x1 shortcut
        down = getattr(block, "downsample", None)
        if down is not None:
            for j, m in enumerate(down):
                if isinstance(m, nn.AvgPool2d) and m.stride not in (1, (1, 1)):
                    down[j] = nn.Identity()  # ResNet-D: the 2x2 average pool goes with the stride


def dilate_resnet(backbone: nn.Module) -> nn.Module:
    """Output stride 8: dilation 2 on layer3, 4 on layer4 (in place; weights unchanged)."""
    dilate_stage(backbone.layer3, 2)
    dilate_stage(backbone.layer4, 4)
    return backbone


def build_fcn(backbone: nn.Module, num_classes: int) -> nn.Module:
    from torchvision.models._utils import IntermediateLayerGetter
    from torchvision.models.segmentation import FCN
    from torchvision.models.segmentation.fcn import FCNHead

    channels = stage_channels(backbone)[3]
    body = IntermediateLayerGetter(dilate_resnet(backbone), {"layer4": "out"})
    return FCN(body, FCNHead(channels, num_classes))


class ComposedSegmentation:
    """Composed canvases as (normalised images [B, C, H, W], masks [B, H, W]) batches."""

    def __init__(self, settings: dict[str, Any], in_chans: int, mean: list[float],
                 std: list[float], data_root: str | None, device: torch.device) -> None:
        kw = dict(seed=settings["data_seed"], root=data_root, max_items=settings["max_items"])
        self.train = composed_fashion_mnist("train", settings["train"], settings["canvas"], **kw)
        self.test = composed_fashion_mnist("test", settings["test"], settings["canvas"], **kw)
        m = torch.tensor(mean if len(mean) == in_chans else mean * in_chans).view(1, -1, 1, 1)
        s = torch.tensor(std if len(std) == in_chans else std * in_chans).view(1, -1, 1, 1)
        self.in_chans, self.device, self.mean, self.std = in_chans, device, m, s
        self.batch_size = min(settings["batch_size"], len(self.train))
        self.iters_per_epoch = len(self.train) // self.batch_size
        self.fingerprint = f"{self.train.fingerprint}/{self.test.fingerprint}"
        self.x = self._norm(self.train.images)
        self.y = self.train.masks.long().to(device)

    def _norm(self, images: torch.Tensor) -> torch.Tensor:
        x = (images.float().expand(-1, self.in_chans, -1, -1) - self.mean) / self.std
        return x.contiguous().to(self.device)

    def train_batches(self, epoch: int, gen: torch.Generator) -> Iterator[tuple]:
        perm = torch.randperm(len(self.train), generator=gen)
        flips = (torch.rand(len(self.train), generator=gen) < 0.5).to(self.device)
        for b in range(self.iters_per_epoch):
            idx = perm[b * self.batch_size:(b + 1) * self.batch_size].to(self.device)
            x, y, f = self.x[idx], self.y[idx], flips[idx]
            x = torch.where(f.view(-1, 1, 1, 1), x.flip(-1), x)
            y = torch.where(f.view(-1, 1, 1), y.flip(-1), y)
            yield x, y

    def eval_batches(self, batch: int = 128) -> Iterator[tuple]:
        for s in range(0, len(self.test), batch):
            yield (self._norm(self.test.images[s:s + batch]),
                   self.test.masks[s:s + batch].long().to(self.device))


class SegmentationTask(FineTuneTask):
    """FCN fine-tuning: model, batches, per-pixel cross-entropy, pixel accuracy and mIoU."""

    def __init__(self, backbone: nn.Module, in_chans: int, mean: list[float], std: list[float],
                 settings: dict[str, Any], scale: str, data_root: str | None,
                 device: torch.device) -> None:
        if settings["dataset"] == "composed":
            data = ComposedSegmentation(settings, in_chans, mean, std, data_root, device)
            self.num_classes, self.ignore = NUM_CLASSES, None
        else:
            from harness.transfer.voc_ade import ADEData

            data = ADEData(settings, mean, std, data_root, device)
            self.num_classes, self.ignore = ADE_CLASSES, IGNORE
        self._bind(data, build_fcn(backbone, self.num_classes), device)

    def loss(self, batch: tuple) -> torch.Tensor:
        x, y = batch
        logits = self.model(x)["out"]
        return F.cross_entropy(logits, y, ignore_index=IGNORE)

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        meter = SegmentationMeter(self.num_classes, self.ignore, self.device)
        for x, y in self.data.eval_batches():
            meter.update(self.model(x)["out"].argmax(1), y)
        self.model.train()
        pixacc, miou = meter.compute()
        return {"pixacc": pixacc, "miou": miou}
