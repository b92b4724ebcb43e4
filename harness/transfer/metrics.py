"""Transfer metrics (Sec 6, Tables 8 and 9), all in percent, all computed by torchmetrics.

* ``map``: mean over classes of the average precision at IoU 0.5 (Pascal VOC's matching
  rule), ``torchmetrics.detection.MeanAveragePrecision(iou_thresholds=[0.5])``. The
  precision-recall curve is integrated COCO-style (101 recall points), not with VOC2007's
  11-point rule; up to 100 detections per image. Objects marked ``iscrowd`` (VOC's
  ``difficult``) neither count as misses nor make a detection of them a false positive.
  Needs ``pycocotools`` (the ``detection`` extra).
* ``pixacc``: correctly labelled pixels / all counted pixels
  (``MulticlassAccuracy(average='micro')``).
* ``miou``: mean over classes of intersection / union
  (``MulticlassJaccardIndex(average='macro')``); a class absent from both the predictions
  and the ground truth of the whole evaluation set is left out of the mean (torchmetrics'
  rule). On composed data background (0) is one of the 11 classes and counts in both;
  on ADE20K its label 0 ("other") is ``ignore_index`` and counts in neither, as in the paper.
"""
from __future__ import annotations

from typing import Sequence

import torch

from harness.errors import HarnessError


class DetectionMeter:
    """Accumulates predictions and ground truth over batches; ``compute()`` -> mAP@0.5 in %."""

    def __init__(self, iou: float = 0.5) -> None:
        try:
            from torchmetrics.detection import MeanAveragePrecision

            self.metric = MeanAveragePrecision(box_format="xyxy", iou_type="bbox",
                                               iou_thresholds=[iou], backend="pycocotools")
        except ModuleNotFoundError as exc:  # torchmetrics raises it when pycocotools is absent
            raise HarnessError("mAP needs pycocotools: pip install pycocotools "
                               "(or the project's 'detection' extra)") from exc

    def update(self, preds: Sequence[dict[str, torch.Tensor]],
               targets: Sequence[dict[str, torch.Tensor]]) -> None:
        """``preds``: boxes [k, 4] xyxy, scores [k], labels [k]; ``targets``: boxes,
        labels and optionally ``iscrowd`` (1 = difficult, ignored)."""
        p = [{"boxes": d["boxes"].detach().float().cpu(), "scores": d["scores"].detach().float().cpu(),
              "labels": d["labels"].detach().long().cpu()} for d in preds]
        t = []
        for d in targets:
            row = {"boxes": d["boxes"].float().cpu(), "labels": d["labels"].long().cpu()}
            if "iscrowd" in d:
                row["iscrowd"] = d["iscrowd"].long().cpu()
            t.append(row)
        self.metric.update(p, t)

    def compute(self) -> float:
        value = float(self.metric.compute()["map"])
        # -1 means "no ground truth at all"; report 0 rather than a negative percentage
        return 100.0 * max(value, 0.0)


def detection_map(preds: Sequence[dict[str, torch.Tensor]],
                  targets: Sequence[dict[str, torch.Tensor]], iou: float = 0.5) -> float:
    """mAP at IoU ``iou`` in percent, for one list of images."""
    meter = DetectionMeter(iou)
    meter.update(preds, targets)
    return meter.compute()


class SegmentationMeter:
    """Accumulates label maps; ``compute()`` -> (pixacc %, mIoU %)."""

    def __init__(self, num_classes: int, ignore_index: int | None = None,
                 device: torch.device | str = "cpu") -> None:
        from torchmetrics.classification import MulticlassAccuracy, MulticlassJaccardIndex

        self.acc = MulticlassAccuracy(num_classes=num_classes, average="micro",
                                      ignore_index=ignore_index, multidim_average="global").to(device)
        self.iou = MulticlassJaccardIndex(num_classes=num_classes, average="macro",
                                          ignore_index=ignore_index).to(device)

    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """``pred``: class ids [N, H, W] (or logits [N, C, H, W]); ``target``: [N, H, W]."""
        if pred.dim() == target.dim() + 1:
            pred = pred.argmax(1)
        pred, target = pred.long().reshape(-1), target.long().reshape(-1)
        self.acc.update(pred, target)
        self.iou.update(pred, target)

    def compute(self) -> tuple[float, float]:
        return 100.0 * float(self.acc.compute()), 100.0 * float(self.iou.compute())


def segmentation_scores(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                        ignore_index: int | None = None) -> tuple[float, float]:
    """(pixel accuracy %, mIoU %) of one set of label maps."""
    meter = SegmentationMeter(num_classes, ignore_index)
    meter.update(pred, target)
    return meter.compute()
