"""What a trial applied, measured on the objects that trained it.

A trick can break without moving a proxy's accuracy beyond its seed noise (at ``local``,
weight decay on BN gammas or inputs left on the 0-255 scale cost nothing a few seeds can
see: BN after the first conv absorbs the scale). These facts are read from what ran, not
from the recipe, so a silently dropped trick shows up in them; the trial stores them in
``metrics["applied"]`` and the nightly gate compares them with its baseline's
(``invariant`` checks, docs/nightly.md):

* ``decayed_1d``: values of 1-D parameters (biases, BN gamma/beta) in an optimizer group with
  weight decay > 0 (Sec 3.1's no bias decay: 0 when it is on);
* ``undecayed_nd``: values of >= 2-D parameters (conv/FC kernels) in a group without weight
  decay (the recipe's weight decay reaching the kernels);
* ``zero_gamma_bns``: BatchNorm layers whose gamma is all zero when training starts
  (Sec 3.1's zero-gamma);
* ``lr_mean``: the schedule's mean learning rate over all iterations (Sec 3.1 warmup, Sec
  5.1 cosine: a cosine schedule silently run as step decay changes it);
* ``input_mean``, ``input_std``: mean and standard deviation of the first training batch as
  the model receives it (after the data pipeline's normalisation, before mixup): about 0
  and 1 with the dataset's own mean/std (Sec 2.1's normalisation);
* ``target_max``: the mean over every training step of the batch's mean largest target
  probability as the loss receives it (:class:`TargetTally`): 1 for one-hot labels,
  ``1 - eps`` with Sec 5.2's label smoothing, lower again with mixup's blend (Sec 5.4; one
  batch would not do: Beta(0.2, 0.2) draws most lambdas near 0 or 1).

A detection or segmentation fine-tuning trial (Sec 6) stores ``decayed_1d``,
``undecayed_nd`` and ``lr_mean`` of its own optimizer and schedule, and:

* ``backbone_rms``: the root mean square of the backbone's parameter values when fine-tuning
  starts (:func:`backbone_facts`): the pre-trained checkpoint of that seed, so a backbone
  silently left at its random init, or loaded from another row's trial, changes it.
"""
from __future__ import annotations

from typing import Any

import torch
from torch import nn

from tricks.lr_schedule import LRSchedule

__all__ = ["optimizer_facts", "zero_gamma_facts", "schedule_facts", "input_facts", "backbone_facts",
           "TargetTally"]

_BN = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.SyncBatchNorm)


def optimizer_facts(optimizer: torch.optim.Optimizer) -> dict[str, int]:
    """Parameter values decayed against Sec 3.1's rule, from the optimizer's own groups."""
    decayed_1d = undecayed_nd = 0
    for group in optimizer.param_groups:
        decays = float(group.get("weight_decay", 0.0)) > 0.0
        for p in group["params"]:
            if decays and p.dim() < 2:
                decayed_1d += p.numel()
            elif not decays and p.dim() >= 2:
                undecayed_nd += p.numel()
    return {"decayed_1d": decayed_1d, "undecayed_nd": undecayed_nd}


def zero_gamma_facts(model: nn.Module) -> dict[str, int]:
    """BatchNorm layers of ``model`` whose gamma is all zero (call before training)."""
    n = sum(1 for m in model.modules() if isinstance(m, _BN) and m.weight is not None
            and not bool(m.weight.detach().any()))
    return {"zero_gamma_bns": n}


def schedule_facts(schedule: LRSchedule) -> dict[str, float]:
    """The schedule's mean learning rate over its ``total_iters`` iterations."""
    n = max(1, schedule.total_iters)
    return {"lr_mean": sum(schedule(it) for it in range(n)) / n}


@torch.no_grad()
def input_facts(x: torch.Tensor) -> dict[str, float]:
    """Mean and standard deviation over every value of one input batch."""
    v = x.detach().float()
    return {"input_mean": float(v.mean()), "input_std": float(v.std())}


@torch.no_grad()
def backbone_facts(backbone: nn.Module) -> dict[str, float]:
    """Root mean square over every parameter value of ``backbone`` (summed in float64)."""
    total, n = 0.0, 0
    for p in backbone.parameters():
        total += float(p.detach().double().pow(2).sum())
        n += p.numel()
    return {"backbone_rms": (total / n) ** 0.5} if n else {}


class TargetTally:
    """The running mean of each step's mean largest target probability, summed where the
    targets live (no host sync per step; one at :meth:`value` and :meth:`state`)."""

    def __init__(self) -> None:
        self.total: torch.Tensor | float = 0.0
        self.steps = 0

    @torch.no_grad()
    def add(self, targets: torch.Tensor | None) -> None:
        """One step's soft ``targets`` (None: one-hot labels, largest probability 1)."""
        self.total = self.total + (1.0 if targets is None
                                   else targets.detach().max(dim=1).values.double().mean())
        self.steps += 1

    def value(self) -> dict[str, float]:
        return {"target_max": float(self.total) / self.steps} if self.steps else {}

    def state(self) -> dict[str, float]:
        """What a checkpoint keeps, so that a resumed trial's mean covers every step."""
        return {"total": float(self.total), "steps": self.steps}

    def load(self, state: dict[str, float] | None) -> None:
        if state:
            self.total, self.steps = float(state["total"]), int(state["steps"])
