"""Knowledge distillation -- paper Sec. 5.3, Eq. (4).

    loss = l(p, softmax(z)) + T^2 * l(softmax(r/T), softmax(z/T))

"where l is the cross entropy, z and r are the outputs of the student and the
teacher, p the true probability distribution, T the temperature hyper-parameter"
(T = 20 in the paper, teacher ResNet-152-D trained with cosine decay and label
smoothing).
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from tricks.trick import Trick

__all__ = ["distillation_loss", "TRICK"]

TRICK = Trick("distill", "5.3", {"distill": True}, lambda r: r.distill,
              no_grid="needs a teacher trained first (Sec 5.3); write an experiment file "
                      "with a 'teacher:' row instead (docs/experiments.md)")

_FORMS = ("paper", "gluoncv")


def _ce(target_probs: Tensor, logits: Tensor) -> Tensor:
    """Batch mean of ``-sum_i q_i log softmax(logits)_i`` (float32)."""
    return -(target_probs.float() * F.log_softmax(logits.float(), dim=-1)).sum(dim=-1).mean()


def distillation_loss(
    student_logits: Tensor,
    target_probs: Tensor,
    teacher_logits: Tensor,
    temperature: float = 20.0,
    form: str = "paper",
) -> Tensor:
    """Sec. 5.3 Eq. (4) distillation loss, averaged over the batch.

    ``hard = CE(p, softmax(z))``, ``soft = CE(softmax(r/T), softmax(z/T))``;
    ``form="paper"`` returns ``hard + T^2 * soft``, ``form="gluoncv"`` returns
    ``0.5 * hard + 0.5 * T^2 * soft`` (GluonCV's ``DistillationSoftmaxCrossEntropyLoss``
    with its default ``hard_weight=0.5``).  ``target_probs`` is the (possibly
    label-smoothed / mixed) true distribution ``p``.  The teacher logits are
    detached (no gradient flows into the teacher).  Computed in float32.
    """
    if form not in _FORMS:
        raise ValueError(f"unknown distillation form {form!r}; expected one of {_FORMS}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    T = float(temperature)
    hard = _ce(target_probs, student_logits)
    teacher_probs = F.softmax(teacher_logits.detach().float() / T, dim=-1)
    soft = _ce(teacher_probs, student_logits.float() / T)
    if form == "paper":
        return hard + T * T * soft
    return 0.5 * hard + 0.5 * T * T * soft
