"""CPU fast path for convolutions on tiny feature maps (at most 2x2 pixels).

The `local` scale's 28 px miniatures end at 2x2 and 1x1 feature maps, where oneDNN's
convolution kernels are far from their best: on one AVX2 core a batch-128 depthwise 3x3
conv on 2x2x128 takes ~7 ms forward+backward, a dense 3x3 conv on 2x2x128 ~8 ms. On so
few pixels a convolution is a small dense linear map from the H*W*C inputs to the
Ho*Wo*O outputs, whose matrix is a gather of the kernel's taps (zero where a tap falls on
padding). We compute it as one matmul (dense convs) or one broadcast multiply-sum
(depthwise convs): 2-20x faster there on CPU, the same function (float rounding aside).

``use_small_map_convs(model)`` switches every plain ``nn.Conv2d`` of a model to
``SmallMapConv2d``: same parameters, same state_dict keys, same init; larger maps, other
devices and other conv kinds (dilation, non-zero padding modes, grouped but not
depthwise) go to ``nn.Conv2d.forward`` unchanged.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn

MAX_PIXELS = 4  # input H*W at or below which the fast path runs (2x2, 2x1, 1x1)


@lru_cache(maxsize=64)
def tap_index(h: int, w: int, kh: int, kw: int, stride: tuple[int, int],
              padding: tuple[int, int]) -> tuple[torch.Tensor, int, int]:
    """(index, Ho, Wo): index[p, q] is the kernel tap (row-major, 0..kh*kw-1) linking input
    pixel p to output pixel q, or kh*kw (a zero tap) where they are not linked."""
    ho = (h + 2 * padding[0] - kh) // stride[0] + 1
    wo = (w + 2 * padding[1] - kw) // stride[1] + 1
    index = torch.full((h * w, ho * wo), kh * kw, dtype=torch.long)
    for a in range(ho):
        for b in range(wo):
            for i in range(kh):
                for j in range(kw):
                    p, q = a * stride[0] + i - padding[0], b * stride[1] + j - padding[1]
                    if 0 <= p < h and 0 <= q < w:
                        index[p * w + q, a * wo + b] = i * kw + j
    return index, ho, wo


def _pointwise(x: torch.Tensor, weight: torch.Tensor, stride: tuple[int, int]) -> torch.Tensor:
    """1x1 conv, no padding: a matmul over the (strided) pixels."""
    x = x[:, :, ::stride[0], ::stride[1]]
    n, c, ho, wo = x.shape
    out = x.permute(0, 2, 3, 1).reshape(n * ho * wo, c) @ weight.view(weight.shape[0], c).t()
    return out.view(n, ho, wo, -1)


def _dense(x: torch.Tensor, weight: torch.Tensor, index: torch.Tensor, ho: int, wo: int) -> torch.Tensor:
    """groups=1: out[n, (q, o)] = x[n, (c, p)] @ map[(c, p), (q, o)], the map gathered from
    the taps along a middle dim so it comes out contiguous in that order (no copy)."""
    o, c, kh, kw = weight.shape
    flat = weight.reshape(o, c, kh * kw).permute(1, 2, 0)  # (C, K, O)
    flat = torch.cat([flat, flat.new_zeros(c, 1, o)], 1)  # tap K = zero
    mat = flat.index_select(1, index.view(-1)).view(c * index.shape[0], ho * wo * o)
    return (x.reshape(x.shape[0], -1) @ mat).view(x.shape[0], ho, wo, o)


def _depthwise(x: torch.Tensor, weight: torch.Tensor, index: torch.Tensor, ho: int, wo: int) -> torch.Tensor:
    """groups=C=O: out[n, q, c] = sum_p x[n, p, c] * taps[p, q, c]."""
    n, c, h, w = x.shape
    flat = torch.cat([weight.view(c, -1).t(), weight.new_zeros(1, c)], 0)  # (K+1, C)
    taps = flat.index_select(0, index.view(-1)).view(h * w, ho * wo, c)
    out = (x.permute(0, 2, 3, 1).reshape(n, h * w, 1, c) * taps).sum(1)
    return out.view(n, ho, wo, c)


def small_map_conv2d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                     stride: tuple[int, int], padding: tuple[int, int], groups: int) -> torch.Tensor:
    """F.conv2d (dilation 1, zero padding) as a dense map; for groups 1 or depthwise."""
    o, _, kh, kw = weight.shape
    if (kh, kw) == (1, 1) and tuple(padding) == (0, 0) and groups == 1:
        out = _pointwise(x, weight, tuple(stride))
    else:
        index, ho, wo = tap_index(x.shape[2], x.shape[3], kh, kw, tuple(stride), tuple(padding))
        fn = _dense if groups == 1 else _depthwise
        out = fn(x, weight, index, ho, wo)
    out = out.permute(0, 3, 1, 2)  # (N, O, Ho, Wo) with channels_last strides
    return out if bias is None else out + bias.view(1, o, 1, 1)


class SmallMapConv2d(nn.Conv2d):
    """``nn.Conv2d`` that takes the dense-map path on CPU feature maps of <= MAX_PIXELS."""

    def _fast(self, x: torch.Tensor) -> bool:
        depthwise = self.groups == self.in_channels == self.out_channels
        return (x.device.type == "cpu" and x.dim() == 4 and x.shape[-2] * x.shape[-1] <= MAX_PIXELS
                and self.padding_mode == "zeros" and not isinstance(self.padding, str)
                and tuple(self.dilation) == (1, 1) and (self.groups == 1 or depthwise))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self._fast(x):
            return small_map_conv2d(x, self.weight, self.bias, self.stride, self.padding, self.groups)
        return super().forward(x)


def use_small_map_convs(model: nn.Module) -> int:
    """Switch every plain ``nn.Conv2d`` in ``model`` to ``SmallMapConv2d`` in place (no new
    parameters or buffers); returns how many were switched."""
    count = 0
    for module in model.modules():
        if type(module) is nn.Conv2d:
            module.__class__ = SmallMapConv2d
            count += 1
    return count

