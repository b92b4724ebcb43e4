"""Step learning-rate decay -- paper Sec. 2.1 (baseline training procedure).

"The learning rate is initialized to 0.1 and divided by 10 at the 30th, 60th,
and 90th epochs."
"""
from __future__ import annotations

from typing import Sequence

__all__ = ["step_factor"]


def step_factor(it: int, milestones: Sequence[int], gamma: float = 0.1) -> float:
    """Sec. 2.1 step decay: ``gamma ** (number of milestones m with m <= it)``.

    ``it`` and ``milestones`` must be in the same unit (the harness uses
    absolute 0-based iteration indices; e.g. ``30 * iters_per_epoch``).  A
    milestone equal to ``it`` already counts, i.e. the decayed rate is used
    from the milestone iteration on (as in ``torch.optim.lr_scheduler.MultiStepLR``).
    """
    n = sum(1 for m in milestones if m <= it)
    return float(gamma) ** n
