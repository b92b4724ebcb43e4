"""Inception-V3 (Szegedy et al. 2016), the paper's third baseline (Sec 2, Table 1).

A re-implementation of the torchvision ``Inception3`` layout *without* the auxiliary
head and without ``transform_input``: with the default arguments its parameter names
and shapes equal ``torchvision.models.inception_v3(aux_logits=False)`` (~23.8M
parameters). Default input size 299 (Sec 2.1).

* ``blocks=(a, b, c)``: number of InceptionA (35x35), InceptionC (17x17) and InceptionE
  (8x8) modules, default ``(3, 4, 2)``, at most 25 each. The reductions InceptionB
  (``Mixed_6a``) and InceptionD (``Mixed_7a``) are always present. Modules keep the
  torchvision names ``Mixed_5b, Mixed_5c, ...``, ``Mixed_6b, ...``, ``Mixed_7b, ...``.
  The first InceptionA has 32 pool features, the rest 64; InceptionC 7x7 widths are
  128, 160, ..., 160, 192 (just 128 when b == 1).
* ``width_mult`` scales every conv's output channels (``scale_channels``).
* ``small_input=True`` (28-32 px): the stem keeps its five convs but every stem conv has
  stride 1 and padding ``k // 2``; the first max-pool keeps stride 2 (padded) and the
  second is ``nn.Identity``. With reductions B and D (unpadded 3x3 stride 2), 28x28 gives
  28 -> 14 -> 6 -> 2 spatially, 32x32 gives 32 -> 16 -> 7 -> 3.
"""
from __future__ import annotations

import string
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from harness.errors import HarnessError
from harness.models.registry import check_blocks, register_model, scale_channels

DEFAULT_BLOCKS: tuple[int, int, int] = (3, 4, 2)
MAX_BLOCKS = 25


class BasicConv2d(nn.Module):
    """Conv (no bias) + BN (eps 1e-3) + ReLU, as in torchvision."""

    def __init__(self, in_ch: int, out_ch: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_ch, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)), inplace=True)


def _chain(x: torch.Tensor, *modules: nn.Module) -> torch.Tensor:
    """Apply ``modules`` one after the other."""
    for module in modules:
        x = module(x)
    return x


class InceptionA(nn.Module):
    """35x35 module: 1x1, 5x5, double 3x3 and pool branches."""

    def __init__(self, in_ch: int, pool_features: int, width_mult: float = 1.0) -> None:
        super().__init__()
        s = partial(scale_channels, width_mult=width_mult)
        self.branch1x1 = BasicConv2d(in_ch, s(64), kernel_size=1)
        self.branch5x5_1 = BasicConv2d(in_ch, s(48), kernel_size=1)
        self.branch5x5_2 = BasicConv2d(s(48), s(64), kernel_size=5, padding=2)
        self.branch3x3dbl_1 = BasicConv2d(in_ch, s(64), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(s(64), s(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(s(96), s(96), kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_ch, s(pool_features), kernel_size=1)
        self.out_channels = s(64) + s(64) + s(96) + s(pool_features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        b5 = _chain(x, self.branch5x5_1, self.branch5x5_2)
        bd = _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3)
        return torch.cat([self.branch1x1(x), b5, bd, pool], 1)


class InceptionB(nn.Module):
    """35 -> 17 grid reduction: strided 3x3, strided double 3x3, max-pool."""

    def __init__(self, in_ch: int, width_mult: float = 1.0) -> None:
        super().__init__()
        s = partial(scale_channels, width_mult=width_mult)
        self.branch3x3 = BasicConv2d(in_ch, s(384), kernel_size=3, stride=2)
        self.branch3x3dbl_1 = BasicConv2d(in_ch, s(64), kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(s(64), s(96), kernel_size=3, padding=1)
        self.branch3x3dbl_3 = BasicConv2d(s(96), s(96), kernel_size=3, stride=2)
        self.out_channels = s(384) + s(96) + in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bd = _chain(x, self.branch3x3dbl_1, self.branch3x3dbl_2, self.branch3x3dbl_3)
        pool = F.max_pool2d(x, kernel_size=3, stride=2)
        return torch.cat([self.branch3x3(x), bd, pool], 1)


class InceptionC(nn.Module):
    """17x17 module with factorised 7x7 convs (1x7 and 7x1)."""

    def __init__(self, in_ch: int, channels_7x7: int, width_mult: float = 1.0) -> None:
        super().__init__()
        s = partial(scale_channels, width_mult=width_mult)
        c7, out = s(channels_7x7), s(192)
        row, col = dict(kernel_size=(1, 7), padding=(0, 3)), dict(kernel_size=(7, 1), padding=(3, 0))
        self.branch1x1 = BasicConv2d(in_ch, out, kernel_size=1)
        self.branch7x7_1 = BasicConv2d(in_ch, c7, kernel_size=1)
        self.branch7x7_2 = BasicConv2d(c7, c7, **row)
        self.branch7x7_3 = BasicConv2d(c7, out, **col)
        self.branch7x7dbl_1 = BasicConv2d(in_ch, c7, kernel_size=1)
        self.branch7x7dbl_2 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_3 = BasicConv2d(c7, c7, **row)
        self.branch7x7dbl_4 = BasicConv2d(c7, c7, **col)
        self.branch7x7dbl_5 = BasicConv2d(c7, out, **row)
        self.branch_pool = BasicConv2d(in_ch, out, kernel_size=1)
        self.out_channels = 4 * out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        b7 = _chain(x, self.branch7x7_1, self.branch7x7_2, self.branch7x7_3)
        bd = _chain(x, *(getattr(self, f"branch7x7dbl_{i}") for i in range(1, 6)))
        return torch.cat([self.branch1x1(x), b7, bd, pool], 1)


class InceptionD(nn.Module):
    """17 -> 8 grid reduction: strided 3x3, strided 7x7-then-3x3, max-pool."""

    def __init__(self, in_ch: int, width_mult: float = 1.0) -> None:
        super().__init__()
        s = partial(scale_channels, width_mult=width_mult)
        c = s(192)
        self.branch3x3_1 = BasicConv2d(in_ch, c, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(c, s(320), kernel_size=3, stride=2)
        self.branch7x7x3_1 = BasicConv2d(in_ch, c, kernel_size=1)
        self.branch7x7x3_2 = BasicConv2d(c, c, kernel_size=(1, 7), padding=(0, 3))
        self.branch7x7x3_3 = BasicConv2d(c, c, kernel_size=(7, 1), padding=(3, 0))
        self.branch7x7x3_4 = BasicConv2d(c, c, kernel_size=3, stride=2)
        self.out_channels = s(320) + c + in_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = _chain(x, self.branch3x3_1, self.branch3x3_2)
        b7 = _chain(x, *(getattr(self, f"branch7x7x3_{i}") for i in range(1, 5)))
        return torch.cat([b3, b7, F.max_pool2d(x, kernel_size=3, stride=2)], 1)


class InceptionE(nn.Module):
    """8x8 module with expanded (split 1x3 / 3x1) filter banks."""

    def __init__(self, in_ch: int, width_mult: float = 1.0) -> None:
        super().__init__()
        s = partial(scale_channels, width_mult=width_mult)
        c3, cd = s(384), s(448)
        row, col = dict(kernel_size=(1, 3), padding=(0, 1)), dict(kernel_size=(3, 1), padding=(1, 0))
        self.branch1x1 = BasicConv2d(in_ch, s(320), kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_ch, c3, kernel_size=1)
        self.branch3x3_2a = BasicConv2d(c3, c3, **row)
        self.branch3x3_2b = BasicConv2d(c3, c3, **col)
        self.branch3x3dbl_1 = BasicConv2d(in_ch, cd, kernel_size=1)
        self.branch3x3dbl_2 = BasicConv2d(cd, c3, kernel_size=3, padding=1)
        self.branch3x3dbl_3a = BasicConv2d(c3, c3, **row)
        self.branch3x3dbl_3b = BasicConv2d(c3, c3, **col)
        self.branch_pool = BasicConv2d(in_ch, s(192), kernel_size=1)
        self.out_channels = s(320) + 4 * c3 + s(192)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b3 = self.branch3x3_1(x)
        b3 = torch.cat([self.branch3x3_2a(b3), self.branch3x3_2b(b3)], 1)
        bd = self.branch3x3dbl_2(self.branch3x3dbl_1(x))
        bd = torch.cat([self.branch3x3dbl_3a(bd), self.branch3x3dbl_3b(bd)], 1)
        pool = self.branch_pool(F.avg_pool2d(x, kernel_size=3, stride=1, padding=1))
        return torch.cat([self.branch1x1(x), b3, bd, pool], 1)


def _c7_schedule(n: int) -> list[int]:
    """7x7 widths of the InceptionC modules: 128, 160, ..., 160, 192 (torchvision for n=4)."""
    return [128] if n == 1 else [128] + [160] * (n - 2) + [192]


class InceptionV3(nn.Module):
    """Inception-V3 without the auxiliary classifier (see module docstring)."""

    def __init__(self, *, num_classes: int = 1000, in_chans: int = 3, width_mult: float = 1.0,
                 small_input: bool = False, blocks: tuple[int, int, int] = DEFAULT_BLOCKS,
                 dropout: float = 0.5) -> None:
        super().__init__()
        self._features: list[str] = []
        ch = self._build_stem(in_chans, width_mult, small_input)
        num_a, num_c, num_e = blocks
        for i in range(num_a):
            ch = self._add(f"Mixed_5{_letter(i)}", InceptionA(ch, 32 if i == 0 else 64, width_mult))
        ch = self._add("Mixed_6a", InceptionB(ch, width_mult))
        for i, c7 in enumerate(_c7_schedule(num_c)):
            ch = self._add(f"Mixed_6{_letter(i)}", InceptionC(ch, c7, width_mult))
        ch = self._add("Mixed_7a", InceptionD(ch, width_mult))
        for i in range(num_e):
            ch = self._add(f"Mixed_7{_letter(i)}", InceptionE(ch, width_mult))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(p=dropout)
        self.fc = nn.Linear(ch, num_classes)
        self.num_features = ch

    def _add(self, name: str, module: nn.Module) -> int:
        """Register a feature module in forward order; return its output channels."""
        self.add_module(name, module)
        self._features.append(name)
        return getattr(module, "out_channels", 0)

    def _build_stem(self, in_chans: int, width_mult: float, small_input: bool) -> int:
        """Five stem convs and two max-pools (all stride 1 / padded when ``small_input``)."""
        s = partial(scale_channels, width_mult=width_mult)
        pad = 1 if small_input else 0
        self._add("Conv2d_1a_3x3", BasicConv2d(in_chans, s(32), kernel_size=3,
                                               stride=1 if small_input else 2, padding=pad))
        self._add("Conv2d_2a_3x3", BasicConv2d(s(32), s(32), kernel_size=3, padding=pad))
        self._add("Conv2d_2b_3x3", BasicConv2d(s(32), s(64), kernel_size=3, padding=1))
        # small_input keeps one stride-2 pool (28 -> 14) so the miniature stays cheap.
        self._add("maxpool1", nn.MaxPool2d(3, stride=2, padding=1 if small_input else 0))
        self._add("Conv2d_3b_1x1", BasicConv2d(s(64), s(80), kernel_size=1))
        self._add("Conv2d_4a_3x3", BasicConv2d(s(80), s(192), kernel_size=3, padding=pad))
        self._add("maxpool2", nn.Identity() if small_input else nn.MaxPool2d(3, stride=2))
        return s(192)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Stem and all Inception modules (feature map before pooling)."""
        for name in self._features:
            x = getattr(self, name)(x)
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.dropout(self.avgpool(self.forward_features(x)))
        return self.fc(torch.flatten(x, 1))


def _letter(i: int) -> str:
    """Module suffix after the reduction letter 'a': b, c, d, ..."""
    return string.ascii_lowercase[i + 1]


@register_model(input_size=299)
def inception_v3(*, num_classes: int, in_chans: int, width_mult: float, small_input: bool,
                 blocks: tuple[int, ...] | None) -> InceptionV3:
    """Inception-V3 without aux head (paper Sec 2 baseline; Szegedy et al. 2016)."""
    blocks = check_blocks(blocks, 3, "inception_v3") or DEFAULT_BLOCKS
    if max(blocks) > MAX_BLOCKS:
        raise HarnessError(f"inception_v3 blocks must be <= {MAX_BLOCKS}, got {blocks!r}")
    return InceptionV3(num_classes=num_classes, in_chans=in_chans, width_mult=width_mult,
                       small_input=small_input, blocks=blocks)
