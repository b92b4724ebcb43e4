"""Object detection for Table 8 (Sec 6.2): Faster R-CNN on the harness's ResNet backbone.

``torchvision.models.detection.FasterRCNN`` over a feature pyramid
(``BackboneWithFPN``) on the classifier's ``layer2..layer4`` (plus FPN's max-pooled extra
level); the classifier's stem and all four stages are fine-tuned, BatchNorm included
(batch statistics, not frozen). The paper used GluonCV's Faster R-CNN; the FPN is our
choice (it keeps 11-28 px objects visible at a stride of 8).

Composed data (smoke/local): the detector's transform keeps the canvas size
(``min_size = max_size = canvas``: no upscaling to 800 px), normalises with the backbone's
own mean/std (grey: one channel; RGB backbones get the grey channel repeated), anchors of
16/24/32/48 px (one size per pyramid level, aspect ratios 0.5/1/2) suited to the 11-28 px
items, and smaller RPN/RoI sample counts and box head (256-d) than torchvision's
defaults. Training flips canvases horizontally with p = 0.5. Paper scale (Pascal VOC):
torchvision's default sizes (600-1000 px, anchors 32-256, 1024-d head).
"""
from __future__ import annotations

from typing import Any, Iterator

import torch
from torch import nn

from harness.transfer.composed import composed_fashion_mnist
from harness.transfer.metrics import DetectionMeter
from harness.transfer.task import FineTuneTask

NUM_CLASSES = 11  # background + 10 Fashion-MNIST classes
VOC_CLASSES = 21  # background + 20


def stage_channels(backbone: nn.Module) -> list[int]:
    """Output channels of layer1..layer4."""
    if hasattr(backbone, "out_channels_per_stage"):
        return list(backbone.out_channels_per_stage)
    out = []
    for i in range(1, 5):
        convs = [m for m in getattr(backbone, f"layer{i}").modules() if isinstance(m, nn.Conv2d)]
        out.append(convs[-1].out_channels)
    return out


def build_faster_rcnn(backbone: nn.Module, *, num_classes: int, mean: list[float],
                      std: list[float], fpn_channels: int, min_size: int, max_size: int,
                      small: bool) -> nn.Module:
    """Faster R-CNN with an FPN on ``backbone``'s layer2..layer4. ``mean``/``std`` on the
    0-1 scale, one per input channel. ``small``: settings for 48-64 px canvases."""
    from torchvision.models.detection import FasterRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
    from torchvision.ops import MultiScaleRoIAlign

    chans = stage_channels(backbone)
    body = BackboneWithFPN(backbone, {"layer2": "0", "layer3": "1", "layer4": "2"}, chans[1:],
                           fpn_channels)
    sizes = ((16,), (24,), (32,), (48,)) if small else ((32,), (64,), (128,), (256,))
    anchors = AnchorGenerator(sizes, ((0.5, 1.0, 2.0),) * len(sizes))
    roi = MultiScaleRoIAlign(["0", "1", "2"], 7, 1 if small else 2)
    rep = 256 if small else 1024
    kw: dict[str, Any] = {}
    if small:
        kw = dict(rpn_pre_nms_top_n_train=300, rpn_post_nms_top_n_train=150,
                  rpn_pre_nms_top_n_test=150, rpn_post_nms_top_n_test=50,
                  rpn_batch_size_per_image=64, box_batch_size_per_image=32,
                  box_detections_per_img=20)
    return FasterRCNN(body, min_size=min_size, max_size=max_size, image_mean=mean,
                      image_std=std, rpn_anchor_generator=anchors, box_roi_pool=roi,
                      box_head=TwoMLPHead(fpn_channels * 49, rep),
                      box_predictor=FastRCNNPredictor(rep, num_classes), **kw)


def _per_channel(values: list[float], in_chans: int) -> list[float]:
    v = [x / 255.0 for x in values]
    return v * in_chans if len(v) == 1 else v[:in_chans]


class ComposedDetection:
    """Composed canvases as detection batches: (images 0-1 [B, C, H, W], targets)."""

    def __init__(self, settings: dict[str, Any], in_chans: int, data_root: str | None,
                 device: torch.device) -> None:
        kw = dict(seed=settings["data_seed"], root=data_root, max_items=settings["max_items"])
        self.train = composed_fashion_mnist("train", settings["train"], settings["canvas"], **kw)
        self.test = composed_fashion_mnist("test", settings["test"], settings["canvas"], **kw)
        self.in_chans, self.device = in_chans, device
        self.batch_size = min(settings["batch_size"], len(self.train))
        self.iters_per_epoch = len(self.train) // self.batch_size
        self.fingerprint = f"{self.train.fingerprint}/{self.test.fingerprint}"
        self.x = self._float(self.train.images)

    def _float(self, images: torch.Tensor) -> torch.Tensor:
        return (images.float() / 255.0).expand(-1, self.in_chans, -1, -1).contiguous().to(self.device)

    def _targets(self, ds, idx: list[int]) -> list[dict[str, torch.Tensor]]:
        return [{"boxes": ds.boxes[i].float().to(self.device),
                 "labels": (ds.labels[i] + 1).to(self.device)} for i in idx]

    def train_batches(self, epoch: int, gen: torch.Generator) -> Iterator[tuple]:
        perm = torch.randperm(len(self.train), generator=gen)
        flips = torch.rand(len(self.train), generator=gen) < 0.5
        w = self.train.canvas
        for b in range(self.iters_per_epoch):
            idx = perm[b * self.batch_size:(b + 1) * self.batch_size].tolist()
            x = self.x[idx]
            targets = self._targets(self.train, idx)
            for j, i in enumerate(idx):
                if flips[i]:
                    x[j] = x[j].flip(-1)
                    bx = targets[j]["boxes"]
                    targets[j]["boxes"] = torch.stack([w - bx[:, 2], bx[:, 1], w - bx[:, 0], bx[:, 3]], 1)
            yield list(x), targets

    def eval_batches(self, batch: int = 64) -> Iterator[tuple]:
        for s in range(0, len(self.test), batch):
            idx = list(range(s, min(s + batch, len(self.test))))
            yield list(self._float(self.test.images[idx])), self._targets(self.test, idx)


class DetectionTask(FineTuneTask):
    """Faster R-CNN fine-tuning: model, batches, loss (sum of the 4 R-CNN losses), mAP."""

    def __init__(self, backbone: nn.Module, in_chans: int, mean: list[float], std: list[float],
                 settings: dict[str, Any], scale: str, data_root: str | None,
                 device: torch.device) -> None:
        norm = dict(mean=_per_channel(mean, in_chans), std=_per_channel(std, in_chans),
                    fpn_channels=settings["fpn_channels"])
        if settings["dataset"] == "composed":
            data = ComposedDetection(settings, in_chans, data_root, device)
            canvas = settings["canvas"]
            model = build_faster_rcnn(backbone, num_classes=NUM_CLASSES, **norm,
                                      min_size=canvas, max_size=canvas, small=True)
        else:
            from harness.transfer.voc_ade import VOCData

            data = VOCData(settings, data_root, device)
            model = build_faster_rcnn(backbone, num_classes=VOC_CLASSES, **norm,
                                      min_size=settings["min_size"], max_size=settings["max_size"],
                                      small=False)
        self._bind(data, model, device)

    def loss(self, batch: tuple) -> torch.Tensor:
        images, targets = batch
        losses = self.model(images, targets)
        return sum(losses.values())

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        self.model.eval()
        meter = DetectionMeter(0.5)
        for images, targets in self.data.eval_batches():
            meter.update(self.model(images), targets)
        self.model.train()
        return {"map": meter.compute()}
