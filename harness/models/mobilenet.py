"""MobileNet v1 (Howard et al. 2017), the paper's MobileNet baseline (Sec 2, Table 1).

Layout (Howard et al. Table 1): a 3x3 stride-2 conv with 32 channels, then 13
depthwise-separable layers (3x3 depthwise + BN + ReLU, 1x1 pointwise + BN + ReLU)
grouped here into five stages (``stages.0`` .. ``stages.4``):

====== ======== ======== ==============
stage  channels stride   default blocks
====== ======== ======== ==============
0      64       1        1
1      128      2        2
2      256      2        2
3      512      2        6
4      1024     2        2
====== ======== ======== ==============

``blocks`` overrides the five per-stage counts; ``width_mult`` is the paper's width
multiplier alpha (channels rounded by ``scale_channels``). At width 1.0 and 224 px the
model has ~4.23M parameters (4.2M in Howard et al.).

``small_input=True`` (for 28-32 px images): the stem conv has stride 1 *and* stage 1
(128 channels) has stride 1, so the total stride is 8 instead of 32 (28 px -> 4x4
before the global pool).
"""
from __future__ import annotations

import torch
from torch import nn

from harness.models.registry import check_blocks, register_model, scale_channels

STAGE_CHANNELS: tuple[int, ...] = (64, 128, 256, 512, 1024)
STAGE_STRIDES: tuple[int, ...] = (1, 2, 2, 2, 2)
DEFAULT_BLOCKS: tuple[int, ...] = (1, 2, 2, 6, 2)


def conv_bn_relu(in_ch: int, out_ch: int, kernel: int, stride: int = 1,
                 groups: int = 1) -> nn.Sequential:
    """Conv (no bias) + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2,
                  groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
        nn.ReLU(inplace=True),
    )


class DepthwiseSeparable(nn.Module):
    """3x3 depthwise conv + 1x1 pointwise conv, each followed by BN + ReLU."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = conv_bn_relu(in_ch, in_ch, 3, stride, groups=in_ch)
        self.pw = conv_bn_relu(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(x))


def make_stage(in_ch: int, out_ch: int, num_blocks: int, stride: int) -> nn.Sequential:
    """First layer changes channels/stride, the rest keep the shape."""
    layers = [DepthwiseSeparable(in_ch, out_ch, stride)]
    layers += [DepthwiseSeparable(out_ch, out_ch) for _ in range(num_blocks - 1)]
    return nn.Sequential(*layers)


class MobileNetV1(nn.Module):
    """MobileNet v1 with width multiplier (Howard et al. 2017)."""

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0,
                 small_input: bool = False, blocks: tuple[int, ...] = DEFAULT_BLOCKS) -> None:
        super().__init__()
        stem_ch = scale_channels(32, width_mult)
        self.stem = conv_bn_relu(in_chans, stem_ch, 3, stride=1 if small_input else 2)
        strides = (1, 1, 2, 2, 2) if small_input else STAGE_STRIDES
        stages, in_ch = [], stem_ch
        for channels, stride, num_blocks in zip(STAGE_CHANNELS, strides, blocks):
            out_ch = scale_channels(channels, width_mult)
            stages.append(make_stage(in_ch, out_ch, num_blocks, stride))
            in_ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self.num_features = in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.stages(self.stem(x)))
        return self.fc(torch.flatten(x, 1))


@register_model
def mobilenet(*, num_classes: int, in_chans: int, width_mult: float, small_input: bool,
              blocks: tuple[int, ...] | None) -> MobileNetV1:
    """MobileNet v1 (paper Sec 2 baseline; Howard et al. 2017)."""
    blocks = check_blocks(blocks, len(DEFAULT_BLOCKS), "mobilenet") or DEFAULT_BLOCKS
    return MobileNetV1(num_classes=num_classes, in_chans=in_chans, width_mult=width_mult,
                       small_input=small_input, blocks=blocks)
