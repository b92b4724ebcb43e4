"""Linear scaling learning rate -- paper Sec. 3.1 ("Large-batch training").

"If we follow the paper [Goyal et al.] to choose 0.1 as the initial learning
rate for batch size 256, then when changing to a larger batch size b, we will
increase the initial learning rate to 0.1 x b/256."
"""
from __future__ import annotations

from tricks.trick import Trick

__all__ = ["scaled_lr", "TRICK"]

TRICK = Trick("linear_scaling", "3.1", {"batch_size": 1024, "linear_scaling": True},
              lambda r: r.linear_scaling and r.batch_size != 256)  # at batch 256 it changes nothing


def scaled_lr(base_lr: float, batch_size: int, reference_batch: int = 256) -> float:
    """Sec. 3.1, linear scaling rule: ``eta = base_lr * batch_size / reference_batch``.

    With the paper's numbers ``scaled_lr(0.1, 1024) == 0.4``.
    """
    if batch_size <= 0 or reference_batch <= 0:
        raise ValueError(f"batch sizes must be positive, got {batch_size=}, {reference_batch=}")
    return float(base_lr) * batch_size / reference_batch
