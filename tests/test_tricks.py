"""Tests for ``tricks/``: every trick is checked against an independent reference
(a hand computation from the paper's formula, a torch built-in or a closed form),
never against its own output."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from tricks.cosine import cosine_factor
from tricks.distillation import distillation_loss
from tricks.label_smoothing import smooth_targets, soft_cross_entropy, theoretical_gap
from tricks.linear_scaling import scaled_lr
from tricks.lr_schedule import LRSchedule
from tricks.mixed_precision import autocast, make_scaler, resolve_precision
from tricks.mixup import mix, mixup_batch, sample_lambda
from tricks.no_bias_decay import param_groups
from tricks.step_decay import step_factor
from tricks.warmup import warmup_factor
from tricks.zero_gamma import apply_zero_gamma


# --------------------------------------------------------------------------- helpers
def _dummy_optimizer(lr: float = 1.0, groups: int = 1) -> torch.optim.Optimizer:
    return torch.optim.SGD([{"params": [nn.Parameter(torch.zeros(1))]} for _ in range(groups)], lr=lr)


def _harness_create_model():
    """Return harness.models.create_model, or skip if the other developer's module is not there yet."""
    models = pytest.importorskip("harness.models")
    create_model = getattr(models, "create_model", None)
    if create_model is None:
        pytest.skip("harness.models.create_model not available yet")
    return create_model


def _build_harness_model(name: str, **kwargs) -> nn.Module:
    """Build a harness model; only a missing ``create_model`` skips, a failing build is a test failure."""
    return _harness_create_model()(name, **kwargs)


# --------------------------------------------------------------------------- Sec 3.1 linear scaling
def test_linear_scaling_paper_example():
    """Sec 3.1: lr 0.1 for batch 256 scales to 0.1 * 1024 / 256 = 0.4 for batch 1024."""
    assert scaled_lr(0.1, 1024) == pytest.approx(0.4)
    assert scaled_lr(0.1, 256) == pytest.approx(0.1)
    assert scaled_lr(0.2, 64, reference_batch=128) == pytest.approx(0.1)


# --------------------------------------------------------------------------- Sec 3.1 warmup
def test_warmup_hand_values():
    """Sec 3.1: at batch i (1-based) lr = i*eta/m; base 0.4, m = 5: it=0 -> 0.08, it=4 -> 0.4."""
    sched = LRSchedule(base_lr=0.4, total_iters=100, warmup_iters=5, kind="step")
    assert sched(0) == pytest.approx(0.08)
    assert sched(1) == pytest.approx(0.16)
    assert sched(2) == pytest.approx(0.24)
    assert sched(4) == pytest.approx(0.4)
    assert sched(5) == pytest.approx(0.4)
    assert warmup_factor(0, 4) == pytest.approx(0.25)
    assert warmup_factor(10, 4) == 1.0
    assert warmup_factor(0, 0) == 1.0


def test_warmup_matches_torch_linearlr():
    """Warmup factor (it+1)/m equals torch LinearLR(start_factor=1/m, end_factor=1, total_iters=m-1)."""
    m = 7
    opt = _dummy_optimizer(lr=1.0)
    ref = torch.optim.lr_scheduler.LinearLR(opt, start_factor=1.0 / m, end_factor=1.0, total_iters=m - 1)
    for it in range(m + 3):
        assert warmup_factor(it, m) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        ref.step()


# --------------------------------------------------------------------------- Sec 2.1 step decay
def test_step_decay_hand_values():
    """Sec 2.1: divide by 10 at 30, 60, 90; factor 1 before 30, 0.1 at 30, 0.01 at 75, 0.001 at 90."""
    ms = (30, 60, 90)
    assert step_factor(29, ms) == pytest.approx(1.0)
    assert step_factor(30, ms) == pytest.approx(0.1)
    assert step_factor(75, ms) == pytest.approx(0.01)
    assert step_factor(90, ms) == pytest.approx(0.001)
    sched = LRSchedule(base_lr=0.1, total_iters=120, kind="step", milestones=(30, 60, 90))
    assert sched(75) == pytest.approx(0.1 * 0.01)


def test_step_schedule_matches_torch_multisteplr():
    """Without warmup the step schedule equals torch MultiStepLR(milestones, gamma) at every iteration."""
    ms, gamma, base = (5, 12, 20), 0.3, 0.7
    sched = LRSchedule(base_lr=base, total_iters=30, kind="step", milestones=ms, gamma=gamma)
    opt = _dummy_optimizer(lr=base)
    ref = torch.optim.lr_scheduler.MultiStepLR(opt, milestones=list(ms), gamma=gamma)
    for it in range(30):
        assert sched(it) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-9)
        opt.step()
        ref.step()


def test_step_milestones_are_absolute_with_warmup():
    """Milestones are absolute iteration indices, warmup included: with warmup 5 and milestone 10, lr drops at it=10."""
    sched = LRSchedule(base_lr=1.0, total_iters=20, warmup_iters=5, kind="step", milestones=[10])
    assert sched(9) == pytest.approx(1.0)
    assert sched(10) == pytest.approx(0.1)
    assert sched.milestones == (10,)


# --------------------------------------------------------------------------- Sec 5.1 cosine
def test_cosine_hand_values():
    """Eq. 1: eta_t = 1/2(1+cos(t pi/T)) eta; t=0 -> eta, t=T/2 -> eta/2, t=T/4 -> eta(1+sqrt(2)/2)/2."""
    base, warm, T = 0.4, 5, 100
    sched = LRSchedule(base_lr=base, total_iters=warm + T, warmup_iters=warm, kind="cosine")
    assert sched(warm) == pytest.approx(base)                     # t = 0
    assert sched(warm + T // 2) == pytest.approx(base / 2)        # midpoint
    assert sched(warm + T // 4) == pytest.approx(base * (1 + math.sqrt(2) / 2) / 2)
    assert sched(0) == pytest.approx(base / warm)                 # warmup overrides
    assert cosine_factor(T, T) == pytest.approx(0.0, abs=1e-12)   # end of schedule
    assert cosine_factor(50, 100) == pytest.approx(0.5)


def test_cosine_matches_torch_cosineannealinglr():
    """Without warmup, the cosine schedule equals torch CosineAnnealingLR(T_max=T, eta_min=0) over the whole run."""
    base, T = 0.4, 50
    sched = LRSchedule(base_lr=base, total_iters=T, kind="cosine")
    opt = _dummy_optimizer(lr=base)
    ref = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=T, eta_min=0.0)
    for it in range(T):
        assert sched(it) == pytest.approx(opt.param_groups[0]["lr"], rel=1e-7, abs=1e-12)
        opt.step()
        ref.step()


def test_schedule_apply_sets_groups_with_lr_mult():
    """apply() writes lr * lr_mult into every param group (lr_mult defaults to 1) and returns lr."""
    sched = LRSchedule(base_lr=0.4, total_iters=10, warmup_iters=5)
    opt = _dummy_optimizer(lr=123.0, groups=2)
    opt.param_groups[1]["lr_mult"] = 0.1
    lr = sched.apply(opt, 1)  # warmup: 2 * 0.4 / 5
    assert lr == pytest.approx(0.16)
    assert opt.param_groups[0]["lr"] == pytest.approx(0.16)
    assert opt.param_groups[1]["lr"] == pytest.approx(0.016)


def test_schedule_rejects_unknown_kind():
    """An unknown schedule kind is rejected at construction time."""
    with pytest.raises(ValueError):
        LRSchedule(base_lr=0.1, total_iters=10, kind="poly")


# --------------------------------------------------------------------------- Sec 3.1 zero gamma
class _Basic(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.residual_bn = self.bn2
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        sc = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + sc)


class _Bottleneck(nn.Module):
    def __init__(self, cin: int, mid: int, stride: int = 1):
        super().__init__()
        cout = 4 * mid
        self.conv1 = nn.Conv2d(cin, mid, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(mid)
        self.conv3 = nn.Conv2d(mid, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.residual_bn = self.bn3
        self.downsample = None
        if stride != 1 or cin != cout:  # ResNet-D style: avgpool then 1x1 conv
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        sc = x if self.downsample is None else self.downsample(x)
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        return F.relu(self.bn3(self.conv3(out)) + sc)


def _tiny_resnet() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
        _Basic(8, 8), _Basic(8, 16, stride=2), _Bottleneck(16, 4), _Bottleneck(16, 8, stride=2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 10),
    )


def _randomize_bn(model: nn.Module, seed: int = 0) -> None:
    """Give every BN non-trivial gamma/beta=0/running stats so zeroing gamma is observable."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)


def _check_blocks_are_identity(model: nn.Module, x: torch.Tensor) -> int:
    """Forward ``x`` and check every block with ``residual_bn`` returns relu(shortcut(block_input))."""
    records: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    hooks = []
    for m in model.modules():
        if hasattr(m, "residual_bn"):
            hooks.append(m.register_forward_hook(lambda mod, inp, out: records.append((mod, inp[0], out))))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    assert records, "no residual block was run"
    checked = 0
    for block, inp, out in records:
        with torch.no_grad():
            # residual branch output: eval-mode BN with gamma = 0 returns beta = 0 exactly
            branch = block.residual_bn(torch.randn(2, block.residual_bn.num_features, 3, 3))
            assert torch.count_nonzero(branch) == 0
            shortcut = None
            for name in ("downsample", "shortcut", "skip", "proj"):
                if hasattr(block, name):
                    sc = getattr(block, name)
                    shortcut = (lambda t: t) if sc is None or isinstance(sc, nn.Identity) else sc
                    break
            if shortcut is None and inp.shape == out.shape:
                shortcut = lambda t: t  # noqa: E731  identity shortcut
            if shortcut is None:
                continue
            expected = F.relu(shortcut(inp))
        torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)
        checked += 1
    return checked


def test_zero_gamma_makes_blocks_identity():
    """Sec 3.1: after zero-gamma, every residual block (eval mode) outputs relu(shortcut(x)); other BNs untouched."""
    torch.manual_seed(0)
    model = _tiny_resnet()
    _randomize_bn(model)
    before = {n: m.weight.detach().clone() for n, m in model.named_modules() if isinstance(m, nn.BatchNorm2d)}
    x = torch.randn(2, 1, 16, 16)
    model.eval()
    out_before = model(x)
    n = apply_zero_gamma(model)
    assert n == 4
    residual = {id(m.residual_bn) for m in model.modules() if hasattr(m, "residual_bn")}
    for name, m in model.named_modules():
        if isinstance(m, nn.BatchNorm2d):
            if id(m) in residual:
                assert torch.count_nonzero(m.weight) == 0
            else:
                torch.testing.assert_close(m.weight, before[name], rtol=0, atol=0)
    assert _check_blocks_are_identity(model, x) == 4
    assert not torch.allclose(model(x), out_before)  # the trick changed the function


@pytest.mark.parametrize("name", ["resnet50_d", "resnet50", "resnet18_d"])
def test_zero_gamma_harness_resnets(name):
    """Sec 3.1 on harness' ResNet miniatures: every residual block outputs relu(shortcut(x)) after zero-gamma."""
    model = _build_harness_model(name, num_classes=10, in_chans=1, small_input=True,
                                 width_mult=0.25, blocks=(1, 1, 1, 1))
    _randomize_bn(model)
    n_blocks = sum(1 for m in model.modules() if hasattr(m, "residual_bn"))
    assert n_blocks >= 4
    assert apply_zero_gamma(model) == n_blocks
    model.eval()
    assert _check_blocks_are_identity(model, torch.randn(2, 1, 32, 32)) == n_blocks


# --------------------------------------------------------------------------- Sec 3.1 no bias decay
def _check_groups_against(model: nn.Module, groups: list[dict], expected_decay_ids: set[int], wd: float):
    all_ids = [id(p) for p in model.parameters()]
    decayed = [id(p) for p in groups[0]["params"]]
    rest = [id(p) for p in groups[1]["params"]]
    assert groups[0]["weight_decay"] == wd and groups[1]["weight_decay"] == 0.0
    assert set(decayed) == expected_decay_ids
    assert sorted(decayed + rest) == sorted(all_ids)          # nothing lost ...
    assert len(set(decayed + rest)) == len(decayed + rest)    # ... nor duplicated


def test_no_bias_decay_groups_by_module_type():
    """Sec 3.1: only conv and FC weights are decayed; conv/FC biases and BN gamma/beta get weight decay 0."""
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, bias=True), nn.BatchNorm2d(4), nn.ReLU(),
        nn.Conv2d(4, 4, 1, bias=False), nn.BatchNorm2d(4),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 5, bias=True),
    )
    expected_names = {"0.weight", "3.weight", "7.weight"}  # listed by hand
    named = dict(model.named_parameters())
    groups = param_groups(model, 1e-4, no_bias_decay=True)
    assert len(groups) == 2
    _check_groups_against(model, groups, {id(named[n]) for n in expected_names}, 1e-4)
    rest_names = {n for n, p in named.items() if any(p is q for q in groups[1]["params"])}
    assert rest_names == {"0.bias", "1.weight", "1.bias", "4.weight", "4.bias", "7.bias"}
    # torch accepts the groups
    torch.optim.SGD(groups, lr=0.1, momentum=0.9)


def test_no_bias_decay_off_is_single_group():
    """With no_bias_decay off, one group holds every parameter with the same weight decay."""
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4 * 2 * 2, 3))
    groups = param_groups(model, 5e-5, no_bias_decay=False)
    assert len(groups) == 1 and groups[0]["weight_decay"] == 5e-5
    assert [id(p) for p in groups[0]["params"]] == [id(p) for p in model.parameters()]


def test_no_bias_decay_zero_decay_in_sgd_step():
    """With lr=1, zero grads and momentum 0, SGD changes decayed params by -wd*p and leaves the rest intact."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.BatchNorm2d(2), nn.Flatten(), nn.Linear(2, 3))
    with torch.no_grad():
        model[1].weight.fill_(0.7)
        model[1].bias.fill_(0.3)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = torch.optim.SGD(param_groups(model, 0.5, no_bias_decay=True), lr=1.0)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for n, p in model.named_parameters():
        expected = before[n] * (1 - 0.5) if n in {"0.weight", "3.weight"} else before[n]
        torch.testing.assert_close(p.detach(), expected)


@pytest.mark.parametrize("name", ["resnet50_d", "mobilenet", "inception_v3"])
def test_no_bias_decay_harness_models(name):
    """On harness miniature models, the decayed group is exactly the >=2-D 'weight' tensors (conv/FC kernels)."""
    kwargs = dict(num_classes=10, in_chans=1, small_input=True, width_mult=0.25)
    if name == "resnet50_d":
        kwargs["blocks"] = (1, 1, 1, 1)
    model = _build_harness_model(name, **kwargs)
    # independent reference by shape + name: conv/FC weights are the only >= 2-D 'weight' params here
    expected = {id(p) for n, p in model.named_parameters() if n.endswith("weight") and p.dim() >= 2}
    _check_groups_against(model, param_groups(model, 1e-4, no_bias_decay=True), expected, 1e-4)


# --------------------------------------------------------------------------- Sec 3.2 mixed precision
def test_resolve_precision():
    """fp16 on CPU resolves to bf16 (CPU autocast's dtype); fp32/bf16 unchanged; unknown precisions rejected."""
    assert resolve_precision("fp16", "cpu", cpu_bf16=True) == "bf16"
    assert resolve_precision("fp16", "cpu", cpu_bf16=False) == "fp32"
    assert resolve_precision("fp16", "cuda") == "fp16"
    assert resolve_precision("fp32", "cpu") == "fp32"
    assert resolve_precision("bf16", "cuda") == "bf16"
    with pytest.raises(ValueError):
        resolve_precision("fp8", "cpu")


def test_autocast_dtypes_on_cpu(monkeypatch):
    """autocast('fp16'/'bf16','cpu') runs matmuls in bfloat16 on a CPU with native bf16 (and
    fp32 without it); autocast('fp32', ...) leaves float32."""
    a, b = torch.randn(4, 8), torch.randn(8, 3)
    monkeypatch.setenv("HARNESS_CPU_BF16", "1")
    with autocast("fp16", "cpu"):
        assert (a @ b).dtype == torch.bfloat16
    monkeypatch.setenv("HARNESS_CPU_BF16", "0")
    with autocast("fp16", "cpu"):
        assert (a @ b).dtype == torch.float32
    with autocast("bf16", "cpu"):
        assert (a @ b).dtype == torch.bfloat16
    with autocast("fp32", "cpu"):
        assert (a @ b).dtype == torch.float32


def test_make_scaler_disabled_on_cpu_still_steps():
    """make_scaler is disabled off CUDA-fp16; its step() is a plain optimizer step (w -= lr * grad)."""
    scaler = make_scaler("fp16", "cpu")
    assert not scaler.is_enabled()
    assert not make_scaler("fp32", "cuda").is_enabled()
    w = nn.Parameter(torch.tensor([1.0, 2.0]))
    opt = torch.optim.SGD([w], lr=0.5)
    loss = (w * torch.tensor([3.0, -1.0])).sum()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    torch.testing.assert_close(w.detach(), torch.tensor([1.0 - 1.5, 2.0 + 0.5]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_make_scaler_enabled_for_cuda_fp16():
    """Loss scaling (GradScaler) is enabled exactly for fp16 on CUDA."""
    assert make_scaler("fp16", "cuda").is_enabled()
    assert not make_scaler("bf16", "cuda").is_enabled()


def test_grad_scaler_skips_inf_step():
    """Sec 3.2 loss scaling: a step whose gradients overflow (inf) is skipped, weights unchanged, scale backed off;
    a finite step applies the unscaled gradient (w -= lr * grad)."""
    try:
        scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, enabled=True)
    except Exception as exc:  # pragma: no cover - older torch without CPU GradScaler
        pytest.skip(f"CPU GradScaler unavailable: {exc}")
    if not scaler.is_enabled():
        pytest.skip("CPU GradScaler disabled in this torch")
    w = nn.Parameter(torch.tensor([1.0, -2.0]))
    opt = torch.optim.SGD([w], lr=0.1)
    # overflowing step
    loss = (w * torch.tensor([1.0, 1.0])).sum()
    scaler.scale(loss).backward()
    w.grad[0] = float("inf")
    before = w.detach().clone()
    scaler.step(opt)
    scaler.update()
    torch.testing.assert_close(w.detach(), before, rtol=0, atol=0)
    assert scaler.get_scale() == pytest.approx(512.0)  # default backoff 0.5
    # finite step: gradient [2, -4] unscaled, w -= 0.1 * g
    opt.zero_grad()
    loss = (w * torch.tensor([2.0, -4.0])).sum()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    torch.testing.assert_close(w.detach(), torch.tensor([1.0 - 0.2, -2.0 + 0.4]))


# --------------------------------------------------------------------------- Sec 5.2 label smoothing
def _np_log_softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def test_label_smoothing_paper_form_hand_built():
    """Paper form q_i = 1-eps (i == y) else eps/(K-1), built with loops; the loss equals numpy float64 CE."""
    torch.manual_seed(0)
    B, K, eps = 6, 5, 0.2
    labels = torch.randint(0, K, (B,))
    logits = torch.randn(B, K)
    q_ref = np.zeros((B, K))
    for b in range(B):
        for i in range(K):
            q_ref[b, i] = 1 - eps if i == int(labels[b]) else eps / (K - 1)
    q = smooth_targets(labels, K, eps, form="paper")
    assert q.dtype == torch.float32 and q.shape == (B, K)
    np.testing.assert_allclose(q.numpy(), q_ref, rtol=1e-6)
    loss_ref = -(q_ref * _np_log_softmax(logits.double().numpy())).sum(axis=1).mean()
    assert soft_cross_entropy(logits, q).item() == pytest.approx(loss_ref, rel=1e-6)


def test_label_smoothing_uniform_form_matches_torch():
    """Uniform form (1-eps+eps/K, eps/K) equals torch cross_entropy(label_smoothing=eps), loss and gradient."""
    torch.manual_seed(1)
    B, K, eps = 8, 7, 0.1
    labels = torch.randint(0, K, (B,))
    logits = torch.randn(B, K, requires_grad=True)
    loss = soft_cross_entropy(logits, smooth_targets(labels, K, eps, form="uniform"))
    (g,) = torch.autograd.grad(loss, logits)
    logits_ref = logits.detach().clone().requires_grad_(True)
    loss_ref = F.cross_entropy(logits_ref, labels, label_smoothing=eps)
    (g_ref,) = torch.autograd.grad(loss_ref, logits_ref)
    torch.testing.assert_close(loss, loss_ref)
    torch.testing.assert_close(g, g_ref)


def test_label_smoothing_eps0_is_one_hot_and_plain_ce():
    """eps = 0 gives one-hot targets (torch one_hot) and the plain cross entropy (torch cross_entropy)."""
    labels = torch.tensor([2, 0, 1])
    logits = torch.randn(3, 4)
    for form in ("paper", "uniform"):
        q = smooth_targets(labels, 4, 0.0, form=form)
        torch.testing.assert_close(q, F.one_hot(labels, 4).float())
        torch.testing.assert_close(soft_cross_entropy(logits, q), F.cross_entropy(logits, labels))


def test_soft_cross_entropy_low_precision_logits_in_fp32():
    """bf16/fp16 logits are upcast: the loss is float32 and equals the float32 CE of the same (rounded) logits."""
    torch.manual_seed(2)
    labels = torch.randint(0, 10, (4,))
    for dt in (torch.bfloat16, torch.float16):
        logits = (torch.randn(4, 10) * 5).to(dt)
        loss = soft_cross_entropy(logits, F.one_hot(labels, 10).to(dt))
        assert loss.dtype == torch.float32
        torch.testing.assert_close(loss, F.cross_entropy(logits.float(), labels))


def test_theoretical_gap_paper_number():
    """Sec 5.2: log((K-1)(1-eps)/eps) ~ 9.1 for K=1000, eps=0.1 (exactly log(8991) = 9.104)."""
    assert theoretical_gap(0.1, 1000) == pytest.approx(9.1, abs=0.01)
    assert theoretical_gap(0.1, 1000) == pytest.approx(math.log(999 * 0.9 / 0.1), rel=1e-12)
    assert theoretical_gap(0.0, 10) == math.inf


def test_theoretical_gap_is_optimum_of_paper_loss():
    """Logits with the theoretical gap make softmax(z) equal the paper-form q, so the CE gradient softmax(z)-q vanishes."""
    K, eps, y = 20, 0.15, 3
    z = torch.zeros(1, K, dtype=torch.float64)
    z[0, y] = theoretical_gap(eps, K)
    q = smooth_targets(torch.tensor([y]), K, eps, form="paper").double()
    torch.testing.assert_close(torch.softmax(z, dim=1), q)


# --------------------------------------------------------------------------- Sec 5.4 mixup
def test_mixup_lambda_is_beta_distributed():
    """2000 draws of lambda pass a Kolmogorov-Smirnov test against Beta(0.2, 0.2) (p > 0.01)."""
    stats = pytest.importorskip("scipy.stats")
    g = torch.Generator().manual_seed(1234)
    lams = np.array([sample_lambda(0.2, g) for _ in range(2000)])
    assert np.all((lams >= 0) & (lams <= 1))
    assert stats.kstest(lams, stats.beta(0.2, 0.2).cdf).pvalue > 0.01


def test_mixup_deterministic_given_seed():
    """Same generator seed -> same lambda, permutation and mixed batch; a different seed -> a different draw."""
    x = torch.randn(16, 3, 4, 4)
    y = F.one_hot(torch.arange(16) % 5, 5).float()
    out1 = mixup_batch(x, y, 0.2, torch.Generator().manual_seed(7))
    out2 = mixup_batch(x, y, 0.2, torch.Generator().manual_seed(7))
    out3 = mixup_batch(x, y, 0.2, torch.Generator().manual_seed(8))
    assert out1[2] == out2[2]
    torch.testing.assert_close(out1[0], out2[0], rtol=0, atol=0)
    torch.testing.assert_close(out1[1], out2[1], rtol=0, atol=0)
    assert out1[2] != out3[2]
    assert sample_lambda(0.0, torch.Generator()) == 1.0


def test_mix_is_convex_combination():
    """Eqs. 5-6 by hand: x^_b = lam x_b + (1-lam) x_perm[b], y^_b likewise, element by element."""
    torch.manual_seed(3)
    x = torch.randn(5, 3)
    y = F.one_hot(torch.tensor([0, 1, 2, 3, 0]), 4).float()
    perm = torch.tensor([4, 2, 0, 1, 3])
    lam = 0.3
    xm, ym = mix(x, y, lam, perm)
    for b in range(5):
        j = int(perm[b])
        for c in range(3):
            assert xm[b, c].item() == pytest.approx(lam * x[b, c].item() + (1 - lam) * x[j, c].item(), abs=1e-6)
        for k in range(4):
            assert ym[b, k].item() == pytest.approx(lam * y[b, k].item() + (1 - lam) * y[j, k].item(), abs=1e-7)


def test_mixup_batch_uses_returned_lambda_and_a_permutation():
    """mixup_batch's output is lam*x + (1-lam)*x[p] for a permutation p (recovered by matching
    targets) that really pairs images with other images: over a few batches most examples get
    a different partner (the identity permutation would leave every batch unmixed)."""
    B, K = 8, 8
    gen = torch.Generator().manual_seed(0)
    moved = 0
    for _ in range(4):
        x = torch.randn(B, 2, generator=gen)
        y = torch.eye(K)  # example b has class b: the partner index is readable from the targets
        xm, ym, lam = mixup_batch(x, y, 1.0, gen)
        assert 0.0 < lam < 1.0
        partners = []
        for b in range(B):
            others = [k for k in range(K) if k != b and ym[b, k] > 1e-6]
            assert len(others) <= 1, ym[b]
            j = others[0] if others else b
            partners.append(j)
            torch.testing.assert_close(xm[b], lam * x[b] + (1 - lam) * x[j])
            torch.testing.assert_close(ym[b], lam * y[b] + (1 - lam) * y[j])
        assert sorted(partners) == list(range(B))
        moved += sum(j != b for b, j in enumerate(partners))
    assert moved >= 4 * B // 2, f"only {moved} of {4 * B} examples got another partner"


def test_mixup_composes_with_label_smoothing():
    """Mixing paper-smoothed targets gives lam*q(y_i) + (1-lam)*q(y_j) with q's hand values; rows sum to 1."""
    K, eps, lam = 6, 0.1, 0.75
    labels = torch.tensor([0, 3, 5])
    perm = torch.tensor([1, 2, 0])
    q = smooth_targets(labels, K, eps, form="paper")
    _, ym = mix(torch.zeros(3, 1), q, lam, perm)

    def q_hand(c, k):
        return 1 - eps if c == k else eps / (K - 1)

    for b in range(3):
        yi, yj = int(labels[b]), int(labels[perm[b]])
        for k in range(K):
            assert ym[b, k].item() == pytest.approx(lam * q_hand(yi, k) + (1 - lam) * q_hand(yj, k), abs=1e-6)
    torch.testing.assert_close(ym.sum(1), torch.ones(3))


# --------------------------------------------------------------------------- Sec 5.3 distillation
def _np_softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("form", ["paper", "gluoncv"])
def test_distillation_loss_and_grad_match_float64_formula(form):
    """Eq. 4 in float64 numpy: loss = w_h CE(p, s(z)) + w_s T^2 CE(s(r/T), s(z/T)) and its closed-form gradient
    dL/dz = [w_h (s(z) - p) + w_s T (s(z/T) - s(r/T))] / B (p rows sum to 1), with w = (1, 1) or (0.5, 0.5)."""
    rng = np.random.default_rng(0)
    B, K, T = 5, 7, 20.0
    z = rng.normal(size=(B, K)) * 3
    r = rng.normal(size=(B, K)) * 3
    p = rng.random((B, K))
    p /= p.sum(axis=1, keepdims=True)  # a smoothed/mixed target distribution
    w_h, w_s = (1.0, 1.0) if form == "paper" else (0.5, 0.5)

    hard = -(p * np.log(_np_softmax(z))).sum(axis=1).mean()
    soft = -(_np_softmax(r / T) * np.log(_np_softmax(z / T))).sum(axis=1).mean()
    loss_ref = w_h * hard + w_s * T**2 * soft
    grad_ref = (w_h * (_np_softmax(z) - p) + w_s * T * (_np_softmax(z / T) - _np_softmax(r / T))) / B

    zt = torch.tensor(z, dtype=torch.float32, requires_grad=True)
    rt = torch.tensor(r, dtype=torch.float32, requires_grad=True)
    loss = distillation_loss(zt, torch.tensor(p, dtype=torch.float32), rt, temperature=T, form=form)
    loss.backward()
    assert loss.item() == pytest.approx(loss_ref, rel=1e-5)
    np.testing.assert_allclose(zt.grad.numpy(), grad_ref, rtol=1e-4, atol=1e-6)
    assert rt.grad is None  # teacher gets no gradient


def test_distillation_reduces_to_ce_when_teacher_equals_student_limit():
    """Sanity closed form: with r = z, the soft term is T^2 * entropy(s(z/T)) (numpy), so loss - that = CE(p, s(z))."""
    torch.manual_seed(4)
    z = torch.randn(3, 4, dtype=torch.float64)
    labels = torch.tensor([0, 1, 3])
    T = 2.0
    loss = distillation_loss(z, F.one_hot(labels, 4).double(), z.clone(), temperature=T)
    s = _np_softmax(z.numpy() / T)
    entropy = -(s * np.log(s)).sum(axis=1).mean()
    ce = F.cross_entropy(z, labels).item()
    assert loss.item() == pytest.approx(ce + T**2 * entropy, rel=1e-6)
