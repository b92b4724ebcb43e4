"""Tests for harness.models: the paper's ResNet-A/B/C/D (Sec 4, Fig. 2), MobileNet and
Inception-V3 baselines, their init (Sec 2.1) and measured params/MACs (Table 5)."""
from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models._utils import IntermediateLayerGetter

from harness.errors import HarnessError
from harness.models import (
    MODEL_NAMES,
    create_model,
    default_input_size,
    init_weights,
    model_stats,
    scale_channels,
)
from harness.models.resnet import BasicBlock, Bottleneck

RESNET_NAMES = [n for n in MODEL_NAMES if n.startswith("resnet")]
# Paper Table 5: ResNet-50 A/B/C/D FLOPs (multiply-adds) in G.
TABLE5_MACS = {"resnet50": 3.8e9, "resnet50_b": 4.1e9, "resnet50_c": 4.3e9, "resnet50_d": 4.3e9}


def _shapes(module: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def _mini_blocks(name: str) -> tuple[int, ...]:
    if name.startswith("resnet"):
        return (1, 1, 1, 1)
    return {"mobilenet": (1, 1, 1, 1, 1), "inception_v3": (1, 1, 1)}[name]


def _mini(name: str, **kwargs) -> nn.Module:
    args = dict(num_classes=10, in_chans=1, width_mult=0.25, small_input=True,
                blocks=_mini_blocks(name))
    return create_model(name, **{**args, **kwargs})


def test_model_names_sorted_and_complete() -> None:
    """MODEL_NAMES is sorted and holds ResNet A-D at 5 depths plus MobileNet and Inception-V3."""
    assert MODEL_NAMES == sorted(MODEL_NAMES)
    expected = {f"resnet{d}{s}" for d in (18, 34, 50, 101, 152) for s in ("", "_b", "_c", "_d")}
    assert set(MODEL_NAMES) == expected | {"mobilenet", "inception_v3"}
    assert default_input_size("inception_v3") == 299
    assert default_input_size("resnet50_d") == default_input_size("mobilenet") == 224


@pytest.mark.parametrize("name", sorted(TABLE5_MACS))
def test_resnet50_params_and_macs_match_table5(name: str) -> None:
    """Full-size ResNet-50 A/B/C/D: ~25.6M params, measured MACs within 3% of Table 5."""
    stats = model_stats(name)
    assert stats["name"] == name and stats["input_size"] == 224
    assert abs(stats["params"] - 25.6e6) / 25.6e6 < 0.03
    assert abs(stats["macs"] - TABLE5_MACS[name]) / TABLE5_MACS[name] < 0.03


def test_resnet50_b_is_torchvision_resnet50() -> None:
    """ResNet-B (Fig. 2a) has exactly torchvision resnet50's parameter names and shapes."""
    assert _shapes(create_model("resnet50_b")) == _shapes(torchvision.models.resnet50())


def test_inception_v3_matches_torchvision_without_aux() -> None:
    """Inception-V3 params within 3% of torchvision's (aux_logits=False); same names/shapes."""
    reference = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False)
    model = create_model("inception_v3")
    ref_params = sum(p.numel() for p in reference.parameters())
    params = sum(p.numel() for p in model.parameters())
    assert abs(params - ref_params) / ref_params < 0.03
    assert abs(params - 23.8e6) / 23.8e6 < 0.03
    assert _shapes(model) == _shapes(reference)


def test_mobilenet_params() -> None:
    """MobileNet v1 at width 1.0 has ~4.2M params (within 3%), and width 0.5 fewer."""
    params = model_stats("mobilenet")["params"]
    assert abs(params - 4.2e6) / 4.2e6 < 0.03
    half = sum(p.numel() for p in create_model("mobilenet", width_mult=0.5).parameters())
    assert half < params / 2.5


def test_resnet_a_and_b_stride_placement() -> None:
    """A: stride 2 on the first 1x1 of layer2.0; B: stride 2 on its 3x3 (Fig. 2a)."""
    a = create_model("resnet50", width_mult=0.25, blocks=(1, 1, 1, 1))
    b = create_model("resnet50_b", width_mult=0.25, blocks=(1, 1, 1, 1))
    assert a.layer2[0].conv1.stride == (2, 2) and a.layer2[0].conv2.stride == (1, 1)
    assert b.layer2[0].conv1.stride == (1, 1) and b.layer2[0].conv2.stride == (2, 2)
    assert b.layer2[0].conv2.kernel_size == (3, 3)


def test_resnet_c_stem_is_three_3x3_convs() -> None:
    """C: stem is three 3x3 convs with 32, 32, 64 outputs, stride 2 only on the first (Fig. 2b)."""
    model = create_model("resnet50_c")
    convs = [m for m in model.conv1 if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(3, 3)] * 3
    assert [c.out_channels for c in convs] == [32, 32, 64]
    assert [c.stride for c in convs] == [(2, 2), (1, 1), (1, 1)]
    assert sum(isinstance(m, nn.BatchNorm2d) for m in model.conv1) == 2  # third BN is bn1
    assert model.bn1.num_features == 64 and isinstance(model.maxpool, nn.MaxPool2d)


def test_resnet_d_shortcut_avgpool_then_1x1() -> None:
    """D: layer2.0 shortcut = AvgPool2d(2, 2) then stride-1 1x1 conv; layer1.0 plain 1x1 (Fig. 2c)."""
    model = create_model("resnet50_d", width_mult=0.25, blocks=(1, 1, 1, 1))
    pool, conv, bn = model.layer2[0].downsample
    assert isinstance(pool, nn.AvgPool2d) and pool.kernel_size == 2 and pool.stride == 2
    assert pool.ceil_mode and not pool.count_include_pad
    assert conv.kernel_size == (1, 1) and conv.stride == (1, 1) and isinstance(bn, nn.BatchNorm2d)
    first = model.layer1[0].downsample
    assert len(first) == 2 and isinstance(first[0], nn.Conv2d) and first[0].stride == (1, 1)
    c_model = create_model("resnet50_c", width_mult=0.25, blocks=(1, 1, 1, 1))
    assert c_model.layer2[0].downsample[0].stride == (2, 2)


def test_basic_block_variants() -> None:
    """ResNet-18: A == B (stride on 3x3), C adds the deep stem, D the avg-pool shortcut."""
    a, b = create_model("resnet18"), create_model("resnet18_b")
    assert _shapes(a) == _shapes(b) == _shapes(torchvision.models.resnet18())
    assert a.layer2[0].conv1.stride == (2, 2)
    d = create_model("resnet18_d", width_mult=0.25, blocks=(1, 1, 1, 1))
    assert isinstance(d.conv1, nn.Sequential)
    assert isinstance(d.layer2[0].downsample[0], nn.AvgPool2d)


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_miniature_forward_28px(name: str) -> None:
    """Every model, miniature + small_input, maps a (2, 1, 28, 28) batch to (2, 10) logits."""
    model = _mini(name)
    out = model(torch.randn(2, 1, 28, 28))
    assert out.shape == (2, 10) and torch.isfinite(out).all()


def test_small_input_stems() -> None:
    """small_input: stride-1 stem convs and no max-pool, each tweak's structure kept."""
    b = _mini("resnet50_b")
    assert b.conv1.stride == (1, 1) and b.conv1.kernel_size == (7, 7)
    assert isinstance(b.maxpool, nn.Identity)
    d = _mini("resnet50_d")
    assert all(m.stride == (1, 1) for m in d.conv1 if isinstance(m, nn.Conv2d))
    assert isinstance(d.layer3[0].downsample[0], nn.AvgPool2d)
    assert _mini("mobilenet").stem[0].stride == (1, 1)
    assert _mini("inception_v3").Conv2d_1a_3x3.conv.stride == (1, 1)


def test_every_resnet_block_has_residual_bn() -> None:
    """Each residual block's residual_bn is the BN ending its branch; no extra state_dict keys."""
    for name in RESNET_NAMES:
        model = create_model(name, width_mult=0.25, blocks=(2, 1, 1, 2))
        blocks = [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]
        assert len(blocks) == 6
        for block in blocks:
            expected = block.bn3 if isinstance(block, Bottleneck) else block.bn2
            assert block.residual_bn is expected
        assert not any("residual_bn" in k for k in model.state_dict())


def test_blocks_width_and_out_channels() -> None:
    """blocks sets the per-stage block counts; width_mult scales channels (multiples of 8)."""
    model = create_model("resnet50_d", width_mult=0.5, blocks=(1, 2, 3, 1))
    assert [len(getattr(model, f"layer{i}")) for i in range(1, 5)] == [1, 2, 3, 1]
    assert model.out_channels_per_stage == [128, 256, 512, 1024]
    assert create_model("resnet50").out_channels_per_stage == [256, 512, 1024, 2048]
    assert [scale_channels(c, 0.25) for c in (32, 64, 48, 80, 1024)] == [8, 16, 16, 24, 256]
    assert scale_channels(64, 1.0) == 64 and scale_channels(8, 0.1) == 8


def test_resnet_works_with_intermediate_layer_getter() -> None:
    """torchvision's IntermediateLayerGetter extracts layer1..layer4 (detection/segmentation)."""
    model = create_model("resnet50_d", width_mult=0.25, blocks=(1, 1, 1, 1))
    getter = IntermediateLayerGetter(model, {f"layer{i}": str(i) for i in range(1, 5)})
    feats = getter(torch.randn(1, 3, 64, 64))
    assert [f.shape[1] for f in feats.values()] == model.out_channels_per_stage
    assert [f.shape[-1] for f in feats.values()] == [16, 8, 4, 2]


def test_xavier_init_and_bn() -> None:
    """Sec 2.1: conv weights Xavier-uniform (std = bound / sqrt 3), biases 0, BN gamma 1 beta 0."""
    model = create_model("resnet50_b", num_classes=10, width_mult=0.5, blocks=(1, 1, 1, 1))
    conv = model.layer4[0].conv2  # 256 x 256 x 3 x 3
    fan_in = conv.in_channels * 9
    fan_out = conv.out_channels * 9
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    assert conv.weight.abs().max() <= bound
    assert conv.weight.std().item() == pytest.approx(bound / math.sqrt(3), rel=0.1)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    assert torch.all(model.fc.bias == 0)


def test_kaiming_option_and_unknown_scheme() -> None:
    """init='kaiming_normal' gives std ~ sqrt(2 / fan_out) on convs; unknown scheme -> HarnessError."""
    model = create_model("resnet50_b", width_mult=0.5, blocks=(1, 1, 1, 1), init="kaiming_normal")
    conv = model.layer4[0].conv2
    expected = math.sqrt(2.0 / (conv.out_channels * 9))
    assert conv.weight.std().item() == pytest.approx(expected, rel=0.1)
    with pytest.raises(HarnessError, match="xavier_uniform"):
        init_weights(model, "orthogonal")


def test_unknown_model_name_lists_choices() -> None:
    """Unknown name -> HarnessError naming the bad value and every valid model."""
    with pytest.raises(HarnessError) as err:
        create_model("resnet51")
    message = str(err.value)
    assert "resnet51" in message and all(name in message for name in MODEL_NAMES)
    with pytest.raises(HarnessError):
        model_stats("vgg16")


@pytest.mark.parametrize("kwargs", [
    {"blocks": (1, 1, 1)}, {"blocks": (1, 0, 1, 1)}, {"width_mult": 0.0}, {"num_classes": 0},
])
def test_bad_arguments_raise_harness_error(kwargs: dict) -> None:
    """Bad blocks/width/num_classes are user errors (HarnessError), not crashes."""
    with pytest.raises(HarnessError):
        create_model("resnet18_d", **kwargs)


def test_model_stats_small_input() -> None:
    """model_stats honours an explicit input_size and create kwargs (counts MACs, not guesses)."""
    stats = model_stats("resnet50_d", input_size=28, num_classes=10, in_chans=1,
                        width_mult=0.25, small_input=True, blocks=(1, 1, 1, 1))
    assert stats["input_size"] == 28 and 0 < stats["macs"] < 1e8
    assert stats["params"] == sum(p.numel() for p in _mini("resnet50_d").parameters())
