"""The CPU dense-map path for convs on tiny feature maps equals torch's own convolution."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.models import create_model
from harness.models.small_maps import SmallMapConv2d, small_map_conv2d, use_small_map_convs
from harness.scales import LOCAL

# (in, out, h, w, kernel, stride, padding, groups): dense 3x3, strided, 1x1 maps, asymmetric
# kernels (Inception's 1x3/3x1), pointwise with and without stride, depthwise (MobileNet)
CASES = [
    (8, 16, 2, 2, (3, 3), 1, (1, 1), 1), (8, 16, 2, 2, (3, 3), 2, (1, 1), 1),
    (8, 16, 1, 1, (3, 3), 1, (1, 1), 1), (8, 16, 2, 1, (3, 3), 1, (1, 1), 1),
    (6, 4, 2, 2, (1, 3), 1, (0, 1), 1), (6, 4, 2, 2, (3, 1), 1, (1, 0), 1),
    (8, 16, 2, 2, (1, 1), 1, (0, 0), 1), (8, 16, 2, 2, (1, 1), 2, (0, 0), 1),
    (8, 8, 2, 2, (3, 3), 1, (1, 1), 8), (8, 8, 2, 2, (3, 3), 2, (1, 1), 8),
    (8, 8, 1, 1, (3, 3), 1, (1, 1), 8),
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"{c[0]}-{c[1]}-{c[2]}x{c[3]}-k{c[4]}-s{c[5]}-g{c[7]}")
def test_equals_torch_conv2d_and_gradients(case: tuple) -> None:
    """Forward and all three gradients equal F.conv2d's in float64 (an independent kernel)."""
    c, o, h, w, k, s, p, g = case
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(3, c, h, w, dtype=torch.float64, generator=gen)
    weight = torch.randn(o, c // g, *k, dtype=torch.float64, generator=gen)
    bias = torch.randn(o, dtype=torch.float64, generator=gen)
    ours = [t.clone().requires_grad_() for t in (x, weight, bias)]
    ref = [t.clone().requires_grad_() for t in (x, weight, bias)]
    out = small_map_conv2d(*ours, (s, s), p, g)
    expected = F.conv2d(*ref, s, p, 1, g)
    assert out.shape == expected.shape
    torch.testing.assert_close(out, expected)
    grad = torch.randn(expected.shape, dtype=torch.float64, generator=gen)
    out.backward(grad)
    expected.backward(grad)
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a.grad, b.grad)


def test_channels_last_input_gives_channels_last_output() -> None:
    x = torch.randn(4, 16, 2, 2).contiguous(memory_format=torch.channels_last)
    conv = nn.Conv2d(16, 32, 3, padding=1, bias=False)
    use_small_map_convs(conv)
    out = conv(x)
    assert out.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(out, F.conv2d(x, conv.weight, None, 1, 1), rtol=1e-5, atol=1e-5)


def test_switch_keeps_parameters_and_state_dict_and_skips_large_maps() -> None:
    """Same keys and tensors after the switch; larger maps take nn.Conv2d's own path."""
    torch.manual_seed(0)
    model = create_model("mobilenet", num_classes=10, in_chans=1, **LOCAL.model_kwargs_for("mobilenet"))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    n_conv = sum(type(m) is nn.Conv2d for m in model.modules())
    assert use_small_map_convs(model) == n_conv > 0
    assert all(type(m) is not nn.Conv2d for m in model.modules())
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], before[k]) for k in before)
    conv = next(m for m in model.modules() if isinstance(m, SmallMapConv2d))
    assert not conv._fast(torch.zeros(1, conv.in_channels, 3, 3))
    assert conv._fast(torch.zeros(1, conv.in_channels, 2, 2))


@pytest.mark.parametrize("name", ["resnet50_d", "mobilenet", "inception_v3"])
def test_miniature_model_outputs_match_torch_kernels(name: str) -> None:
    """Whole local-scale miniatures (which end on 2x2 and 1x1 maps) give torch's outputs."""
    torch.manual_seed(0)
    ref = create_model(name, num_classes=10, in_chans=1, **LOCAL.model_kwargs_for(name)).double().eval()
    fast = create_model(name, num_classes=10, in_chans=1, **LOCAL.model_kwargs_for(name)).double().eval()
    fast.load_state_dict(ref.state_dict())
    assert use_small_map_convs(fast) > 0
    x = torch.randn(4, 1, 28, 28, dtype=torch.float64)
    torch.testing.assert_close(fast(x), ref(x))
