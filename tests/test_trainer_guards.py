"""Guard rails: the trainer really applies each trick (issue 17).

tests/test_tricks.py checks every trick function on its own; these tests check that the
shared trainer calls them, at the level of what the model sees, the loss, the learning rate
applied to the optimizer, the parameter groups and the parameters built. They use only the
trainer's stable API (``build_model``, ``build_optimizer``, ``make_schedule``,
``StepContext``, ``compute_loss``, ``train_step``, ``run_trial``) and compute every
expected value by hand, never through ``tricks/``.
"""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from harness.recipe import Recipe, named_recipe
from harness.scales import get_scale
from harness.spec import TrialSpec
from harness.trainer import (
    StepContext,
    TrainOptions,
    build_model,
    build_optimizer,
    compute_loss,
    make_schedule,
    run_trial,
    train_step,
)

CPU = torch.device("cpu")
QUIET = TrainOptions(device="cpu", log=lambda m: None)

pytestmark = pytest.mark.usefixtures("one_thread")


# ---- probes ---------------------------------------------------------------------------------
class Probe(nn.Module):
    """A stand-in model: records every input it is given and returns ``flatten(x) @ weight``
    (float64), so the logits of any input are known by hand."""

    def __init__(self, weight: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return x.flatten(1).to(self.weight.dtype) @ self.weight


class FixedTeacher(nn.Module):
    """A stand-in teacher: records its input and returns ``logits`` whatever it is given."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.detach().clone())
        return self.logits.clone()


def _ctx(model: nn.Module, recipe: Recipe, num_classes: int, seed: int = 0,
         teacher: nn.Module | None = None, optimizer=None, schedule=None) -> StepContext:
    gen = torch.Generator().manual_seed(seed)
    scaler = torch.amp.GradScaler("cpu", enabled=False)
    return StepContext(model=model, optimizer=optimizer, scaler=scaler, schedule=schedule,
                       recipe=recipe, precision="fp32", device=CPU, num_classes=num_classes,
                       generator=gen, host_generator=gen, teacher=teacher)


def _hand_ce(target_probs: torch.Tensor, logits: torch.Tensor) -> torch.Tensor:
    """Batch mean of -sum_k q_k log softmax(z)_k, in float64."""
    return -(target_probs.double() * F.log_softmax(logits.double(), dim=1)).sum(1).mean()


def _hand_smooth(labels: torch.Tensor, k: int, eps: float, form: str = "paper") -> torch.Tensor:
    """Sec 5.2 targets written out: paper 1-eps / eps/(K-1); uniform 1-eps+eps/K / eps/K."""
    off, on = (eps / (k - 1), 1 - eps) if form == "paper" else (eps / k, 1 - eps + eps / k)
    q = torch.full((len(labels), k), off, dtype=torch.float64)
    q[torch.arange(len(labels)), labels] = on
    return q


# ---- mixup (Sec 5.4) ----------------------------------------------------------------------------
B = 16  # batch; each image is a distinct basis vector, so a mixed image shows its two sources


def _basis_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """x[b] = e_b (as a 1x4x4 float64 image), labels b mod K."""
    x = torch.eye(B, dtype=torch.float64).reshape(B, 1, 4, 4)
    y = torch.arange(B) % 10
    return x, y


def _decompose(seen: torch.Tensor) -> tuple[list[int | None], list[float]]:
    """Read, for each row of a mixed basis batch, the own weight lam_b and the partner j_b:
    row b must be lam_b e_b + (1 - lam_b) e_j (weights >= 0, summing to 1, at most two
    sources). j_b is None where only image b shows (partner b itself, or lam_b ~ 1)."""
    rows = seen.reshape(B, B)
    partners: list[int | None] = []
    lams = []
    for b in range(B):
        row = rows[b]
        assert torch.all(row >= -1e-12), f"row {b} has a negative weight: not a convex combination"
        assert row.sum().item() == pytest.approx(1.0, abs=1e-9), f"row {b} weights do not sum to 1"
        others = [int(i) for i in torch.nonzero(row > 1e-12).flatten() if int(i) != b]
        assert len(others) <= 1, f"row {b} = {row.tolist()} mixes more than two images"
        partners.append(others[0] if others else None)
        lams.append(float(row[b]))
    return partners, lams


@pytest.mark.parametrize("eps", [0.0, 0.1])
def test_mixup_model_sees_convex_pairs_and_loss_uses_mixed_targets(eps):
    """With mixup on, the model's input is lam x_b + (1-lam) x_j for a partner j that is a
    different image (a real permutation, not the identity), and the loss equals the soft CE of
    the model's logits against lam q(y_b) + (1-lam) q(y_j) built by hand (q = smoothed one-hot
    when eps > 0: mixup composes with label smoothing)."""
    x, y = _basis_batch()
    probe = Probe(torch.randn(B, 10, dtype=torch.float64, generator=torch.Generator().manual_seed(5)))
    recipe = named_recipe("baseline").replace(mixup=True, mixup_alpha=1.0, label_smoothing=eps)
    ctx = _ctx(probe, recipe, 10)
    moved = 0
    for _ in range(3):  # three batches: three draws of lam and partners
        loss = compute_loss(ctx, x, y)
        seen = probe.seen[-1]
        found, lams = _decompose(seen)
        partners = [b if j is None else j for b, j in enumerate(found)]
        assert sorted(partners) == list(range(B)), f"partners {partners} are not a permutation"
        moved += sum(j != b for b, j in enumerate(partners))
        q = _hand_smooth(y, 10, eps)
        mixed = torch.stack([lams[b] * q[b] + (1 - lams[b]) * q[partners[b]] for b in range(B)])
        logits = seen.flatten(1) @ probe.weight.detach()
        assert loss.item() == pytest.approx(_hand_ce(mixed, logits).item(), rel=1e-5)
    # the identity permutation (every image mixed with itself) would leave the batch unchanged
    assert moved >= 3 * B // 2, f"only {moved} of {3 * B} images got a different partner"


def test_mixup_off_model_sees_the_batch_unchanged():
    """Without mixup the model sees exactly the batch (the mixup test above discriminates)."""
    x, y = _basis_batch()
    probe = Probe(torch.zeros(B, 10, dtype=torch.float64))
    compute_loss(_ctx(probe, named_recipe("baseline"), 10), x, y)
    assert torch.equal(probe.seen[-1], x)


def test_mixup_honours_the_recipe_alpha():
    """lam ~ Beta(alpha, alpha) with the recipe's alpha: at alpha = 100 every lam lies near 0.5
    (sd 0.035), which Beta(0.2, 0.2) (the paper's alpha) would almost never give 8 times running;
    at alpha = 0.05 most lams lie within 0.05 of 0 or 1."""
    x, y = _basis_batch()
    probe = Probe(torch.zeros(B, 10, dtype=torch.float64))

    def lams(alpha: float) -> list[float]:
        ctx = _ctx(probe, named_recipe("baseline").replace(mixup=True, mixup_alpha=alpha), 10)
        out = []
        for _ in range(8):
            compute_loss(ctx, x, y)
            found, lam = _decompose(probe.seen[-1])
            # the own weight of a row with a visible partner; lam ~ 1 when none shows
            out.append(next((lam[b] for b in range(B) if found[b] is not None), 1.0))
        return out

    assert all(0.3 < lam < 0.7 for lam in lams(100.0))
    extreme = lams(0.05)
    assert sum(min(lam, 1 - lam) < 0.05 for lam in extreme) >= 5, extreme


# ---- distillation (Sec 5.3, Eq. 4) --------------------------------------------------------------
@pytest.mark.parametrize("form", ["paper", "gluoncv"])
def test_distillation_loss_uses_the_teachers_logits(form):
    """With a teacher, the loss is Eq. 4 by hand: CE(p, softmax z) + T^2 CE(softmax(r/T),
    softmax(z/T)) (GluonCV form: both halves x 0.5), p the smoothed labels; changing the
    teacher's logits changes the loss by exactly the hand-computed amount."""
    torch.manual_seed(0)
    n, k, temp, eps = 6, 10, 4.0, 0.1
    x, y = torch.randn(n, 3, 2, 2, dtype=torch.float64), torch.randint(0, k, (n,))
    student = Probe(torch.randn(12, k, dtype=torch.float64))
    recipe = named_recipe("distill").replace(distill_temperature=temp, distill_form=form,
                                             label_smoothing=eps)
    z = x.flatten(1) @ student.weight.detach()
    q = _hand_smooth(y, k, eps)

    def hand(r: torch.Tensor) -> float:
        hard = _hand_ce(q, z)
        soft = _hand_ce(F.softmax(r.double() / temp, dim=1), z / temp)
        total = hard + temp ** 2 * soft if form == "paper" else 0.5 * hard + 0.5 * temp ** 2 * soft
        return total.item()

    losses = []
    for seed in (1, 2):
        r = torch.randn(n, k, generator=torch.Generator().manual_seed(seed)) * 3
        teacher = FixedTeacher(r)
        loss = compute_loss(_ctx(student, recipe, k, teacher=teacher), x, y)
        assert teacher.seen and torch.equal(teacher.seen[-1], x)
        assert loss.item() == pytest.approx(hand(r), rel=1e-5)
        losses.append(loss.item())
    assert losses[0] != pytest.approx(losses[1], rel=1e-3)


def test_teacher_sees_the_same_mixed_input_as_the_student():
    """Distillation with mixup: the teacher is run on the mixed images the student sees."""
    x, y = _basis_batch()
    student = Probe(torch.zeros(B, 10, dtype=torch.float64))
    teacher = FixedTeacher(torch.zeros(B, 10))
    recipe = named_recipe("distill_mixup").replace(mixup_alpha=1.0)
    compute_loss(_ctx(student, recipe, 10, teacher=teacher), x, y)
    assert torch.equal(teacher.seen[-1], student.seen[-1])
    assert not torch.equal(student.seen[-1], x)


# ---- label smoothing (Sec 5.2) -----------------------------------------------------------------
@pytest.mark.parametrize("form", ["paper", "uniform"])
def test_label_smoothing_loss_is_smoothed_ce_by_hand(form):
    """eps = 0.2: the loss is the CE against 1-eps / eps/(K-1) (paper) or 1-eps+eps/K / eps/K
    (uniform), written out by hand, and differs from the plain CE."""
    torch.manual_seed(1)
    k, eps = 10, 0.2
    x, y = torch.randn(8, 12, dtype=torch.float64), torch.randint(0, k, (8,))
    model = Probe(torch.randn(12, k, dtype=torch.float64))
    recipe = named_recipe("baseline").replace(label_smoothing=eps, label_smoothing_form=form)
    loss = compute_loss(_ctx(model, recipe, k), x, y)
    z = x @ model.weight.detach()
    assert loss.item() == pytest.approx(_hand_ce(_hand_smooth(y, k, eps, form), z).item(), rel=1e-6)
    assert loss.item() != pytest.approx(F.cross_entropy(z, y).item(), rel=1e-3)


# ---- cosine decay (Sec 5.1, Eq. 1) and the lr each step applies ---------------------------------
def _cosine(base: float, it: int, total: int, warmup: int) -> float:
    """Eq. 1 by hand after a linear warmup of ``warmup`` iterations (Sec 3.1)."""
    if it < warmup:
        return base * (it + 1) / warmup
    return 0.5 * (1 + math.cos(math.pi * (it - warmup) / (total - warmup))) * base


def test_cosine_recipe_gives_a_cosine_schedule():
    """'cosine' at the local scale, 96 iterations an epoch: 3 epochs = 288 iterations, 5 of 120
    warmup epochs = 12 iterations, lr 0.4 / 8 x 2 = 0.1; then 0.5 (1 + cos(pi t / T)) x 0.1 at
    every iteration (not the step schedule: no plateau, ends near 0)."""
    s = make_schedule(named_recipe("cosine"), get_scale("local"), iters_per_epoch=96)
    for it in (0, 5, 11, 12, 50, 100, 143, 144, 200, 250, 287):
        assert s(it) == pytest.approx(_cosine(0.1, it, 288, 12), rel=1e-9, abs=1e-12), it
    assert s(287) < 1e-4


def test_train_step_applies_the_schedules_lr_of_its_iteration():
    """train_step(ctx, it, ...) sets every param group's lr to the cosine value at ``it`` (by
    hand), and the step's update of a weight scales with that lr."""
    torch.manual_seed(2)
    recipe = named_recipe("cosine").replace(no_bias_decay=False, weight_decay=0.0, momentum=0.0,
                                            optimizer="sgd")
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 10))
    opt = build_optimizer(model, recipe, CPU)
    sched = make_schedule(recipe, get_scale("local"), iters_per_epoch=96)
    ctx = _ctx(model, recipe, 10, optimizer=opt, schedule=sched)
    x, y = torch.randn(8, 12), torch.randint(0, 10, (8,))
    for it in (3, 40, 200, 287):
        w0 = model[1].weight.detach().clone()
        model.zero_grad()
        F.cross_entropy(model(x), y).backward()
        grad = model[1].weight.grad.detach().clone()
        train_step(ctx, it, x, y)
        lr = _cosine(0.1, it, 288, 12)
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([lr] * len(opt.param_groups))
        # plain SGD (momentum 0, no decay): w1 = w0 - lr * grad
        torch.testing.assert_close(model[1].weight.detach(), w0 - lr * grad, rtol=1e-4, atol=1e-7)


def test_cosine_trial_records_the_cosine_lr_each_epoch():
    """A whole smoke trial of 'cosine' over 240 paper epochs (2 smoke epochs of 256 / 64 = 4
    iterations, no warmup left after rounding): the lr in each epoch's history row is the lr of
    the epoch's last iteration, 0.5 (1 + cos(pi t / 8)) x 0.4 / 16, t = 3 and 7."""
    spec = TrialSpec("resnet18", named_recipe("cosine").replace(epochs=240), "smoke", 0)
    res = run_trial(spec, QUIET)
    assert res.status == "done" and len(res.history) == 2
    base = 0.4 / 16
    assert res.lr == pytest.approx(base)
    for row, it in zip(res.history, (3, 7)):
        assert row["lr"] == pytest.approx(_cosine(base, it, 8, 0), rel=1e-9)


# ---- zero gamma (Sec 3.1) ----------------------------------------------------------------------
def _blocks(model: nn.Module) -> list[nn.Module]:
    """The residual blocks: the children of the four stages (torchvision's layout)."""
    return [blk for name in ("layer1", "layer2", "layer3", "layer4") for blk in getattr(model, name)]


def _branch_bns(block: nn.Module) -> list[nn.BatchNorm2d]:
    """The BNs of a block's residual branch, in order (the shortcut's BN excluded)."""
    return [m for n, m in block.named_modules()
            if isinstance(m, nn.BatchNorm2d) and not n.startswith("downsample")]


@pytest.mark.parametrize("model", ["resnet18_d", "resnet50_d", "resnet50"])
def test_zero_gamma_zeroes_the_last_bn_of_every_residual_block(model):
    """build_model with zero_gamma: the last BN gamma of every residual branch is 0 (the others
    stay 1), so each block returns relu(shortcut(x)) at init; without it every gamma is 1."""
    torch.manual_seed(0)
    on = TrialSpec(model, named_recipe("baseline").replace(zero_gamma=True), "smoke", 0)
    net, _ = build_model(on, 10, 3, CPU)
    blocks = _blocks(net)
    assert blocks
    for blk in blocks:
        bns = _branch_bns(blk)
        assert torch.all(bns[-1].weight == 0), type(blk).__name__
        assert all(torch.all(bn.weight == 1) for bn in bns[:-1])
    outputs: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    hooks = [b.register_forward_hook(lambda m, i, o: outputs.append((m, i[0].detach(), o.detach())))
             for b in blocks]
    net.eval()
    with torch.no_grad():
        net(torch.randn(2, 3, 16, 16))
        for blk, inp, out in outputs:
            short = inp if blk.downsample is None else blk.downsample(inp)
            torch.testing.assert_close(out, torch.relu(short))
    for h in hooks:
        h.remove()
    off, _ = build_model(TrialSpec(model, named_recipe("baseline"), "smoke", 0), 10, 3, CPU)
    assert all(torch.all(_branch_bns(b)[-1].weight == 1) for b in _blocks(off))


# ---- no bias decay (Sec 3.1) -------------------------------------------------------------------
def _is_conv_or_fc_weight(model: nn.Module) -> set[int]:
    return {id(m.weight) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))}


@pytest.mark.parametrize("model", ["resnet18_d", "mobilenet"])
def test_no_bias_decay_groups_and_zero_gradient_step(model):
    """build_optimizer with no_bias_decay: conv/FC weights sit in a group with the recipe's
    weight decay, biases and BN gamma/beta in one with 0; a step with zero gradients leaves the
    undecayed parameters exactly unchanged and shrinks the decayed ones. Without the trick every
    parameter is decayed (the same step moves BN gammas)."""
    torch.manual_seed(0)
    for nbd in (True, False):
        recipe = named_recipe("baseline").replace(no_bias_decay=nbd, weight_decay=0.01)
        net, _ = build_model(TrialSpec(model, recipe, "smoke", 0), 10, 3, CPU)
        opt = build_optimizer(net, recipe, CPU)
        decayed = _is_conv_or_fc_weight(net)
        wd_of = {id(p): g["weight_decay"] for g in opt.param_groups for p in g["params"]}
        params = list(net.parameters())
        assert set(wd_of) == {id(p) for p in params}
        others = [p for p in params if id(p) not in decayed]
        assert others and any(isinstance(m, nn.BatchNorm2d) for m in net.modules())
        for p in params:
            want = 0.01 if (id(p) in decayed or not nbd) else 0.0
            assert wd_of[id(p)] == want
        with torch.no_grad():
            for p in others:
                p.add_(0.5)  # biases and betas start at 0, where decay would not show
        before = [p.detach().clone() for p in params]
        for g in opt.param_groups:
            g["lr"] = 0.1
        for p in params:
            p.grad = torch.zeros_like(p)
        opt.step()
        for p, p0 in zip(params, before):
            if id(p) in decayed or not nbd:
                assert torch.all(p.detach().abs() <= p0.abs()) and not torch.equal(p.detach(), p0)
            else:
                assert torch.equal(p.detach(), p0)


# ---- distillation end to end: run_trial loads the teacher and uses it -----------------------
def test_run_trial_distills_from_the_teacher_checkpoint(tmp_path):
    """A distill trial trains against the teacher checkpoint it is given: its loss carries
    Eq. 4's T^2 soft term (T = 20; CE(softmax(r/T), softmax(z/T)) >= the entropy of the nearly
    uniform softmax(r/T), about log 10), so it is far above a plain CE of about log 10; and two
    different teachers give the same student different losses."""
    teachers = []
    for seed in (0, 1):
        t = run_trial(TrialSpec("resnet18", named_recipe("label_smoothing"), "smoke", seed),
                      TrainOptions(device="cpu", log=lambda m: None, checkpoint_dir=str(tmp_path / f"t{seed}")))
        assert t.status == "done"
        teachers.append(t.checkpoint)
    student = TrialSpec("resnet18_d", named_recipe("distill"), "smoke", 0)
    losses = []
    for ckpt in teachers:
        s = run_trial(student, TrainOptions(device="cpu", log=lambda m: None, teacher_ckpt=ckpt))
        assert s.status == "done"
        losses.append(s.history[0]["loss"])
    assert all(loss > 20 ** 2 * 2.0 for loss in losses), losses
    assert losses[0] != losses[1]
