"""Label smoothing -- paper Sec. 5.2.

Paper form (Eq. 2 region):  q_i = 1 - eps if i == y, else eps / (K - 1).
"Uniform" form (GluonCV ``smooth``/``mixup_transform``, torch
``cross_entropy(label_smoothing=eps)``, Szegedy et al.):
q_i = 1 - eps + eps/K if i == y, else eps/K.

The loss is the cross entropy ``-sum_i q_i log p_i`` with ``p = softmax(z)``;
with the paper form its optimum has ``z*_y - z*_other = log((K-1)(1-eps)/eps)``
(Sec. 5.2, the "gap" that is ~9.1 for K=1000, eps=0.1).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from tricks.trick import Trick

__all__ = ["smooth_targets", "soft_cross_entropy", "theoretical_gap", "TRICK"]

TRICK = Trick("label_smoothing", "5.2", {"label_smoothing": 0.1},
              lambda r: r.label_smoothing > 0)

_FORMS = ("paper", "uniform")


def smooth_targets(labels: Tensor, num_classes: int, eps: float, form: str = "paper") -> Tensor:
    """Sec. 5.2 smoothed target distribution ``q`` as a float32 ``[B, K]`` tensor.

    ``form="paper"``: ``1 - eps`` on the true class, ``eps/(K-1)`` elsewhere;
    ``form="uniform"``: ``1 - eps + eps/K`` and ``eps/K`` (GluonCV / torch).
    ``eps = 0`` gives the one-hot distribution.  Rows sum to 1.
    """
    if form not in _FORMS:
        raise ValueError(f"unknown label-smoothing form {form!r}; expected one of {_FORMS}")
    if not 0.0 <= eps <= 1.0:
        raise ValueError(f"eps must be in [0, 1], got {eps}")
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    labels = labels.long()
    if form == "paper":
        off = eps / (num_classes - 1) if num_classes > 1 else 0.0
        on = 1.0 - eps if num_classes > 1 else 1.0
    else:
        off = eps / num_classes
        on = 1.0 - eps + eps / num_classes
    q = torch.full((labels.shape[0], num_classes), off, dtype=torch.float32, device=labels.device)
    q.scatter_(1, labels.view(-1, 1), on)
    return q


def soft_cross_entropy(logits: Tensor, target_probs: Tensor) -> Tensor:
    """Sec. 5.2 loss: batch mean of ``-sum_i q_i log softmax(z)_i``.

    Computed in float32 even when ``logits`` are bf16/fp16 (e.g. produced
    under autocast); the result is a float32 scalar.
    """
    logp = F.log_softmax(logits.float(), dim=-1)
    return -(target_probs.float() * logp).sum(dim=-1).mean()


def theoretical_gap(eps: float, num_classes: int) -> float:
    """Sec. 5.2: optimal logit gap ``log((K-1)(1-eps)/eps)`` for the paper form.

    ``theoretical_gap(0.1, 1000) ~= 9.10`` (the paper's "9.1"); ``eps = 0``
    gives ``inf`` (unbounded logits without smoothing).
    """
    if not 0.0 <= eps < 1.0:
        raise ValueError(f"eps must be in [0, 1), got {eps}")
    if num_classes < 2:
        raise ValueError(f"num_classes must be >= 2, got {num_classes}")
    if eps == 0.0:
        return math.inf
    return math.log((num_classes - 1) * (1.0 - eps) / eps)
