"""ResNet-A/B/C/D (paper Sec 4 "Model Tweaks", Figure 2) at depths 18-152.

* ``resnet{d}``   ResNet-A, the original layout (Sec 2.2 / Fig. 1): the downsampling
  bottleneck has stride 2 on its first 1x1 conv.
* ``resnet{d}_b`` ResNet-B (Fig. 2a): stride 2 moved to the 3x3 conv. For depth 50 this
  is exactly ``torchvision.models.resnet50`` (same parameter names and shapes).
* ``resnet{d}_c`` ResNet-C (Fig. 2b): B + the 7x7 stem conv replaced by three 3x3 convs
  (32, 32, 64 channels; stride 2 only on the first; BN+ReLU between them).
* ``resnet{d}_d`` ResNet-D (Fig. 2c): C + the downsampling shortcut becomes
  ``AvgPool2d(2, 2)`` followed by a stride-1 1x1 conv (only where stride > 1).

Basic blocks (depths 18, 34) already carry their stride on a 3x3 conv, so A == B for
them; the C stem and D shortcut apply unchanged.

Module names follow torchvision (``conv1 bn1 relu maxpool layer1..layer4 avgpool fc``;
for C/D ``conv1`` is an ``nn.Sequential`` deep stem whose last conv is followed by the
usual ``bn1``/``relu``), so ``IntermediateLayerGetter``/``BackboneWithFPN`` work.
``small_input=True``: every stem conv has stride 1 and ``maxpool`` is ``nn.Identity``,
for 28-32 px images. Each block exposes ``residual_bn`` (the BN ending its residual
branch) for the zero-gamma trick (Sec 3.1); it is a property, so it adds no
state_dict keys.
"""
from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from harness.models.registry import check_blocks, register_model, scale_channels

VARIANTS: tuple[str, ...] = ("a", "b", "c", "d")
STAGE_PLANES: tuple[int, ...] = (64, 128, 256, 512)


def conv3x3(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """3x3 conv, padding 1, no bias."""
    return nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)


def conv1x1(in_ch: int, out_ch: int, stride: int = 1) -> nn.Conv2d:
    """1x1 conv, no bias."""
    return nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False)


def make_shortcut(in_ch: int, out_ch: int, stride: int, avg_down: bool) -> nn.Sequential | None:
    """Projection shortcut (path B of Fig. 1); ResNet-D (Fig. 2c) when ``avg_down``."""
    if stride == 1 and in_ch == out_ch:
        return None
    if avg_down and stride > 1:
        pool = nn.AvgPool2d(2, stride=stride, ceil_mode=True, count_include_pad=False)
        return nn.Sequential(pool, conv1x1(in_ch, out_ch), nn.BatchNorm2d(out_ch))
    return nn.Sequential(conv1x1(in_ch, out_ch, stride), nn.BatchNorm2d(out_ch))


class BasicBlock(nn.Module):
    """Two 3x3 convs (ResNet-18/34); stride on the first 3x3 for every variant."""

    expansion = 1

    def __init__(self, in_ch: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, stride_on_1x1: bool = False) -> None:
        super().__init__()
        del stride_on_1x1  # no 1x1 conv: variant A equals variant B
        self.conv1 = conv3x3(in_ch, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample
        self.stride = stride

    @property
    def residual_bn(self) -> nn.BatchNorm2d:
        """BN that ends the residual branch (zero-gamma target, Sec 3.1)."""
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1x1 -> 3x3 -> 1x1 bottleneck; stride on the first 1x1 (A) or the 3x3 (B/C/D)."""

    expansion = 4

    def __init__(self, in_ch: int, planes: int, stride: int = 1,
                 downsample: nn.Module | None = None, stride_on_1x1: bool = False) -> None:
        super().__init__()
        stride1, stride3 = (stride, 1) if stride_on_1x1 else (1, stride)
        self.conv1 = conv1x1(in_ch, planes, stride1)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = conv3x3(planes, planes, stride3)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = conv1x1(planes, planes * self.expansion)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample
        self.stride = stride

    @property
    def residual_bn(self) -> nn.BatchNorm2d:
        """BN that ends the residual branch (zero-gamma target, Sec 3.1)."""
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


Block = type[BasicBlock] | type[Bottleneck]

DEPTHS: dict[int, tuple[Block, tuple[int, ...]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def make_stem_conv(in_chans: int, out_ch: int, deep: bool, stride: int,
                   width_mult: float) -> nn.Module:
    """Input stem conv: 7x7 (A/B) or three 3x3 convs 32-32-64 (C/D, Fig. 2b)."""
    if not deep:
        return nn.Conv2d(in_chans, out_ch, 7, stride=stride, padding=3, bias=False)
    mid = scale_channels(32, width_mult)
    return nn.Sequential(
        conv3x3(in_chans, mid, stride), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        conv3x3(mid, mid), nn.BatchNorm2d(mid), nn.ReLU(inplace=True),
        conv3x3(mid, out_ch),
    )


def make_layer(block: Block, in_ch: int, planes: int, num_blocks: int, stride: int,
               variant: str) -> tuple[nn.Sequential, int]:
    """One stage: the first block downsamples, the rest keep the shape."""
    out_ch = planes * block.expansion
    shortcut = make_shortcut(in_ch, out_ch, stride, avg_down=variant == "d")
    layers = [block(in_ch, planes, stride, shortcut, stride_on_1x1=variant == "a")]
    layers += [block(out_ch, planes) for _ in range(num_blocks - 1)]
    return nn.Sequential(*layers), out_ch


class ResNet(nn.Module):
    """ResNet with the Sec 4 tweaks selected by ``variant`` in ``"abcd"``."""

    def __init__(self, block: Block, layers: tuple[int, ...], *, variant: str = "a",
                 num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0,
                 small_input: bool = False) -> None:
        super().__init__()
        if variant not in VARIANTS:
            raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
        self.variant = variant
        stem_ch = scale_channels(64, width_mult)
        stem_stride = 1 if small_input else 2
        self.conv1 = make_stem_conv(in_chans, stem_ch, variant in "cd", stem_stride, width_mult)
        self.bn1 = nn.BatchNorm2d(stem_ch)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_input else nn.MaxPool2d(3, stride=2, padding=1)
        in_ch, self.out_channels_per_stage = stem_ch, []
        for i, (planes, num_blocks) in enumerate(zip(STAGE_PLANES, layers)):
            stage, in_ch = make_layer(block, in_ch, scale_channels(planes, width_mult),
                                      num_blocks, 1 if i == 0 else 2, variant)
            self.add_module(f"layer{i + 1}", stage)
            self.out_channels_per_stage.append(in_ch)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(in_ch, num_classes)
        self.num_features = in_ch

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and the four stages (feature map before pooling)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        return self.layer4(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.avgpool(self.forward_features(x))
        return self.fc(torch.flatten(x, 1))


def _make_builder(depth: int, variant: str) -> Callable[..., ResNet]:
    name = f"resnet{depth}" + ("" if variant == "a" else f"_{variant}")

    def builder(*, num_classes: int, in_chans: int, width_mult: float,
                small_input: bool, blocks: tuple[int, ...] | None) -> ResNet:
        block, default_layers = DEPTHS[depth]
        layers = check_blocks(blocks, 4, name) or default_layers
        return ResNet(block, layers, variant=variant, num_classes=num_classes,
                      in_chans=in_chans, width_mult=width_mult, small_input=small_input)

    builder.__name__ = builder.__qualname__ = name
    builder.__doc__ = f"ResNet-{depth}-{variant.upper()} (paper Sec 4, Figure 2)."
    return builder


for _depth in DEPTHS:
    for _variant in VARIANTS:
        register_model(_make_builder(_depth, _variant))
