"""Any model by name (issue 22 item 6): ``timm:NAME`` and ``torchvision:NAME``.

Zero-gamma found by structure is checked against references the libraries give
independently (torchvision's ``zero_init_residual``, timm's ``zero_init_last``, the
harness's ``residual_bn``); no bias decay against hand-made lists of 1-D parameters;
params/MACs against published torchvision numbers and the harness's counter.
"""
from __future__ import annotations

import contextlib
import io
import json

import pytest
import torch
import torchvision
from torch import nn

from harness.cli import main
from harness.errors import HarnessError
from harness.experiments import make_plan, parse_experiment
from harness.experiments.grid import grid_experiment
from harness.models import MODEL_NAMES, check_model, count_macs, count_params, create_model, model_stats
from harness.recipe import Recipe, named_recipe
from harness.scales import get_scale
from harness.spec import TrialSpec
from harness.tasks.model_tricks import apply_model_tricks
from harness.trainer import run_trial
from harness.trial import TrainOptions
from tricks.no_bias_decay import param_groups
from tricks.zero_gamma import find_residual_bns

timm = pytest.importorskip("timm")


def _zero_bns(model: nn.Module) -> set[str]:
    """Names of the BNs whose gamma is all zeros."""
    return {n for n, m in model.named_modules()
            if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.weight is not None
            and torch.count_nonzero(m.weight) == 0}


# ---- zero-gamma by structure (Sec 3.1) ------------------------------------------------------
def test_zero_gamma_torchvision_resnet18_is_each_blocks_bn2():
    """torchvision resnet18: exactly {layerX.Y.bn2}, written out by hand."""
    found = find_residual_bns(torchvision.models.resnet18(num_classes=10))
    assert set(found.names) == {f"layer{i}.{j}.bn2" for i in range(1, 5) for j in range(2)}
    assert found.skip == ""


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_zero_gamma_matches_torchvision_zero_init_residual(name):
    """The BNs found by structure are the ones torchvision's own zero_init_residual zeroes."""
    reference = _zero_bns(torchvision.models.get_model(name, num_classes=10, zero_init_residual=True))
    assert reference and set(find_residual_bns(torchvision.models.get_model(name, num_classes=10)).names) == reference


@pytest.mark.parametrize("name", ["resnet18", "seresnet18", "resnet50d"])
def test_zero_gamma_matches_timm_zero_init_last(name):
    """timm ResNets (SE gates and ResNet-D shortcuts included): the BNs timm's own
    zero_init_last (its default) zeroes."""
    reference = _zero_bns(timm.create_model(name, pretrained=False, num_classes=10, zero_init_last=True))
    found = find_residual_bns(timm.create_model(name, pretrained=False, num_classes=10, zero_init_last=False))
    assert reference and set(found.names) == reference


def test_zero_gamma_timm_mobilenetv3_blocks_with_a_skip():
    """timm MobileNetV3: the last BN (bn3) of every inverted-residual block that has a skip."""
    model = timm.create_model("mobilenetv3_small_050", pretrained=False, num_classes=10)
    expected = {f"{n}.bn3" for n, m in model.named_modules()
                if getattr(m, "has_skip", False) and hasattr(m, "bn3")}
    assert expected and set(find_residual_bns(model).names) == expected


@pytest.mark.parametrize("name", [n for n in MODEL_NAMES if n.startswith("resnet")] + ["mobilenet", "inception_v3"])
def test_zero_gamma_structure_agrees_with_harness_residual_bn(name):
    """On the harness's own models, structure finds exactly each block's residual_bn (none
    in MobileNet and Inception-V3)."""
    kwargs = {"inception_v3": {"width_mult": 0.0625, "blocks": (1, 1, 1), "small_input": True}}.get(
        name, {"width_mult": 0.125, "small_input": True})
    with torch.device("meta"):
        model = create_model(name, num_classes=10, **kwargs)
    modules = dict(model.named_modules())
    reference = {id(m.residual_bn) for m in model.modules() if hasattr(m, "residual_bn")}
    assert {id(modules[n]) for n in find_residual_bns(model).names} == reference


@pytest.mark.parametrize("lib,name,why", [
    ("torchvision", "vgg11", "no residual additions"),
    ("timm", "vit_tiny_patch16_224", "none with a BatchNorm"),
])
def test_zero_gamma_skip_is_stated(lib, name, why):
    """A model without a residual BN: nothing is zeroed and the note says why."""
    with torch.device("meta"):
        model = create_model(f"{lib}:{name}", num_classes=10)
    notes = apply_model_tricks(model, f"{lib}:{name}", named_recipe("efficient"))
    assert notes["zero_gamma"].startswith("skipped:") and why in notes["zero_gamma"]
    assert notes["resnet_tweaks"].startswith("skipped:")


def test_zero_gamma_applied_to_external_model_in_place():
    """apply_model_tricks zeroes exactly the found BNs and names them in its note."""
    model = create_model("timm:resnet18", num_classes=10, in_chans=1)
    assert not _zero_bns(model)  # the recipe's init (Sec 2.1) replaced timm's zero_init_last
    notes = apply_model_tricks(model, "timm:resnet18", Recipe(zero_gamma=True))
    assert _zero_bns(model) == {f"layer{i}.{j}.bn2" for i in range(1, 5) for j in range(2)}
    assert notes["zero_gamma"].startswith("applied: gamma = 0 in 8 BN layers")
    assert "zero_gamma" not in apply_model_tricks(model, "timm:resnet18", Recipe())


# ---- no bias decay (Sec 3.1) ----------------------------------------------------------------
def _module_rule_decayed(model: nn.Module) -> set[int]:
    """The paper's words as a hand-made list: the weights of conv and FC layers."""
    return {id(m.weight) for m in model.modules()
            if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and m.weight is not None}


@pytest.mark.parametrize("name", ["timm:resnet18", "torchvision:mobilenet_v3_small", "timm:convnext_atto"])
def test_no_bias_decay_on_external_models(name):
    """Undecayed = every bias and every norm layer's gamma/beta, listed module by module."""
    with torch.device("meta"):
        model = create_model(name, num_classes=10)
    undecayed = set()
    for m in model.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)) and m.bias is not None:
            undecayed.add(id(m.bias))
        if isinstance(m, (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)) and m.weight is not None:
            undecayed |= {id(m.weight), id(m.bias)}
    extra_1d = {id(p) for n, p in model.named_parameters() if p.dim() == 1 and id(p) not in undecayed}
    decayed, rest = param_groups(model, 1e-4, no_bias_decay=True)
    assert {id(p) for p in rest["params"]} == undecayed | extra_1d
    assert all(n.endswith("gamma") for n, p in model.named_parameters() if id(p) in extra_1d)  # layer scales
    assert {id(p) for p in decayed["params"]} == {id(p) for p in model.parameters()} - undecayed - extra_1d
    assert rest["weight_decay"] == 0.0 and decayed["weight_decay"] == 1e-4


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_no_bias_decay_shape_rule_is_the_papers_rule_on_harness_models(name):
    """For every harness model the 1-D rule decays exactly the conv/FC weights."""
    with torch.device("meta"):
        model = create_model(name, num_classes=10)
    decayed, _ = param_groups(model, 1e-4, no_bias_decay=True)
    assert {id(p) for p in decayed["params"]} == _module_rule_decayed(model)


# ---- building, data shape, params and MACs ---------------------------------------------------
@pytest.mark.parametrize("name", ["torchvision:resnet18", "torchvision:mobilenet_v3_small",
                                  "timm:resnet18", "timm:mobilenetv3_small_050"])
def test_models_follow_the_datas_channels_and_classes(name):
    """1-channel 28x28 input (Fashion-MNIST at `local`) and 10 classes give (N, 10) logits."""
    model = create_model(name, num_classes=10, in_chans=1).eval()
    with torch.no_grad():
        assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)


def test_torchvision_stem_is_swapped_for_one_channel():
    """The 3-channel stem conv becomes the same conv with 1 input channel; nothing else."""
    rgb = torchvision.models.resnet18(num_classes=10)
    grey = create_model("torchvision:resnet18", num_classes=10, in_chans=1)
    assert grey.conv1.in_channels == 1 and grey.conv1.kernel_size == rgb.conv1.kernel_size
    assert count_params(rgb) - count_params(grey) == 2 * 64 * 7 * 7


def test_params_and_macs_match_published_torchvision_numbers():
    """torchvision's resnet18 card: 11,689,512 params and 1.81 GFLOPS (multiply-adds) at 224."""
    stats = model_stats("torchvision:resnet18")
    assert stats["params"] == 11_689_512 and stats["input_size"] == 224
    assert stats["macs"] == pytest.approx(1.81e9, rel=0.01)


@pytest.mark.parametrize("name", ["timm:resnet18", "resnet18"])
def test_model_stats_is_the_counter_on_the_built_model(name):
    """model_stats of an external model is count_params/count_macs of the model itself, as
    for a built-in one."""
    stats = model_stats(name, input_size=32, num_classes=10, in_chans=1)
    model = create_model(name, num_classes=10, in_chans=1)
    assert stats["params"] == count_params(model) == sum(p.numel() for p in model.parameters())
    assert stats["macs"] == count_macs(model, 32, in_chans=1) > 0


def test_no_pretrained_weights():
    """Weights come from the recipe's init, never a download: two builds differ only by seed."""
    torch.manual_seed(0)
    a = create_model("timm:resnet18", num_classes=10)
    torch.manual_seed(0)
    b = create_model("timm:resnet18", num_classes=10)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    assert torch.all(a.bn1.weight == 1) and torch.all(a.fc.bias == 0)  # Sec 2.1 init


# ---- names, files, grids, hashes ---------------------------------------------------------------
def _cli(argv: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(argv)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("name,closest", [("timm:resnet_18", "timm:resnet18"),
                                          ("torchvision:resnet_18", "torchvision:resnet18"),
                                          ("timm:no_such_net", "timm:")])
def test_unknown_name_exits_2_with_closest_matches(name, closest):
    """One line naming the bad name and the closest library names, exit 2."""
    code, _, err = _cli(["train", "--model", name, "--scale", "smoke"])
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2 and len(lines) == 1
    assert repr(name.partition(":")[2]) in lines[0] and "closest:" in lines[0] and closest in lines[0]


def test_tweak_on_external_model_is_bad_input():
    """timm:resnet50_d asks for the harness's Sec 4 tweak on a timm model: refused with the hint."""
    with pytest.raises(HarnessError, match=r"apply only to the harness's own ResNets.*timm:resnet50d"):
        check_model("timm:resnet50_d")
    with pytest.raises(HarnessError, match="valid choices: timm:NAME, torchvision:NAME"):
        check_model("keras:resnet50")


def test_experiment_file_and_grid_take_external_models():
    """An experiment column and a grid --model can be timm:NAME; a bad one names its key."""
    exp = parse_experiment({"name": "t", "title": "t", "rows": [{"label": "base"}, {"label": "+zg", "recipe": {"zero_gamma": True}}],
                            "columns": [{"label": "R18", "model": "timm:resnet18"}]}, src="t.yaml")
    plan = make_plan(exp, get_scale("smoke"), 1)
    assert {t.model for t in plan.all_trials()} == {"timm:resnet18"}
    with pytest.raises(HarnessError, match=r"t.yaml: columns\[0\].model: unknown timm model 'resnt18'"):
        parse_experiment({"name": "t", "title": "t", "rows": [{"label": "base"}],
                          "columns": [{"label": "x", "model": "timm:resnt18"}]}, src="t.yaml")
    grid = grid_experiment("torchvision:resnet18", "zero_gamma,no_bias_decay", "factorial")
    assert grid.name == "grid-factorial-torchvision_resnet18-zero_gamma-no_bias_decay"
    assert {c.model for c in grid.columns} == {"torchvision:resnet18"}


def test_builtin_hashes_unchanged_and_external_hashes_carry_the_library_version():
    """Stored results are keyed by hash: built-in models keep theirs (values from before this
    change); an external model's hash covers the library's version."""
    spec = TrialSpec(model="resnet50_d", recipe=named_recipe("efficient"), scale="smoke", seed=1)
    assert spec.hash == "4041e0e2c3c34d2f" and "model_library" not in spec.hash_payload()
    ext = TrialSpec(model="timm:resnet18", recipe=Recipe(), scale="smoke", seed=0)
    assert ext.hash_payload()["model_library"] == f"timm {timm.__version__}"


# ---- one trial end to end ------------------------------------------------------------------------
def test_smoke_trial_stores_what_each_trick_did():
    """A smoke trial of timm:resnet18 with the efficient recipe finishes and its metrics say
    which model-level tricks were applied and which skipped."""
    spec = TrialSpec(model="timm:resnet18", recipe=named_recipe("efficient"), scale="smoke", seed=0)
    result = run_trial(spec, TrainOptions(device="cpu"))
    assert result.status == "done" and result.params == count_params(create_model("timm:resnet18", num_classes=10))
    notes = result.metrics["model_tricks"]
    assert notes["library"] == f"timm {timm.__version__}"
    assert notes["zero_gamma"].startswith("applied") and notes["no_bias_decay"].startswith("applied")
    assert notes["resnet_tweaks"].startswith("skipped")
    json.dumps(result.to_json())  # plain data, as the store keeps it


def test_torchvision_models_with_auxiliary_heads_train_on_plain_logits():
    """torchvision's googlenet and inception_v3 return named tuples in train mode with their
    auxiliary heads; built without them the training forward is a plain logits tensor."""
    from harness.models import create_model
    model = create_model("torchvision:googlenet", num_classes=10, in_chans=3)
    model.train()
    out = model(torch.zeros(2, 3, 64, 64))
    assert isinstance(out, torch.Tensor) and out.shape == (2, 10)


def test_a_timm_vit_is_built_for_the_training_crop():
    """timm:vit_tiny_patch16_224 at a 32-px crop: img_size=32 gives a 2x2 patch grid, so the
    position embedding holds 1 + 4 tokens of width 192 (by hand: (32 / 16)^2 patches + the
    class token), it takes 32-px inputs, and model_stats counts that model (192 x 5 fewer
    embedding values than at 224: 1 + 196 tokens)."""
    vit = create_model("timm:vit_tiny_patch16_224", num_classes=10, in_chans=1, img_size=32).eval()
    assert tuple(vit.pos_embed.shape) == (1, 1 + 4, 192)
    with torch.no_grad():
        assert vit(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    at224 = model_stats("timm:vit_tiny_patch16_224", input_size=224, num_classes=10, in_chans=1)
    at32 = model_stats("timm:vit_tiny_patch16_224", input_size=32, num_classes=10, in_chans=1)
    assert at32["params"] == count_params(vit) == at224["params"] - 192 * (197 - 5)


def test_a_cnn_without_img_size_is_built_as_before():
    """A timm CNN has no img_size: asked for a 32-px crop it is built exactly as without one,
    with the same random draws (a stored timm trial keeps its numbers)."""
    torch.manual_seed(3)
    a = create_model("timm:resnet18", num_classes=10, img_size=32)
    torch.manual_seed(3)
    b = create_model("timm:resnet18", num_classes=10)
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(HarnessError, match="takes any crop"):
        create_model("resnet18", num_classes=10, img_size=32)
