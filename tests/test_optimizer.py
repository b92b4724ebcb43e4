"""The trainer's optimizer: NAG (Sec 2.1) with no-bias-decay groups (Sec 3.1), against the
update written out by hand in float64, for the fused CPU kernel the trainer picks."""
from __future__ import annotations

import dataclasses

import torch
from torch import nn

from harness.recipe import named_recipe
from harness.trainer import build_optimizer


def _hand_nag(w0, grads, lrs, mu, wd):
    """PyTorch's Nesterov form: d = g + wd w; v = mu v + d (v = d at the first step);
    w -= lr (d + mu v)."""
    w, v = w0.double().clone(), None
    for g, lr in zip(grads, lrs):
        d = g.double() + wd * w
        v = d.clone() if v is None else mu * v + d
        w = w - lr * (d + mu * v)
    return w


def test_nag_with_no_bias_decay_matches_hand_update():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(2, 3, 3), nn.BatchNorm2d(3), nn.Flatten(), nn.Linear(3, 4))
    recipe = dataclasses.replace(named_recipe("efficient"), weight_decay=0.01)
    assert recipe.no_bias_decay and recipe.optimizer == "nag"
    opt = build_optimizer(model, recipe, torch.device("cpu"))
    assert all(group.get("fused") for group in opt.param_groups)  # the fused CPU kernel
    params = dict(model.named_parameters())
    start = {n: p.detach().clone() for n, p in params.items()}
    gen = torch.Generator().manual_seed(1)
    grads = {n: [torch.randn(p.shape, generator=gen) for _ in range(4)] for n, p in params.items()}
    lrs = [0.05, 0.1, 0.2, 0.1]
    for step, lr in enumerate(lrs):
        for group in opt.param_groups:
            group["lr"] = lr
        for n, p in params.items():
            p.grad = grads[n][step].clone()
        opt.step()
    decayed = {"0.weight", "3.weight"}  # conv and FC weights only (Sec 3.1)
    for n, p in params.items():
        wd = 0.01 if n in decayed else 0.0
        want = _hand_nag(start[n], grads[n], lrs, recipe.momentum, wd)
        torch.testing.assert_close(p.detach().double(), want, rtol=1e-5, atol=1e-6, msg=n)
