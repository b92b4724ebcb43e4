"""Cosine learning-rate decay -- paper Sec. 5.1, Eq. (1).

    eta_t = 1/2 * (1 + cos(t * pi / T)) * eta

"where T is the total number of batches (ignoring the warmup stage), then at
batch t, the learning rate eta_t is computed as" above.
"""
from __future__ import annotations

import math

from tricks.trick import Trick

__all__ = ["cosine_factor", "TRICK"]

TRICK = Trick("cosine", "5.1", {"lr_schedule": "cosine"}, lambda r: r.lr_schedule == "cosine")


def cosine_factor(it: int, total_iters: int, warmup_iters: int = 0) -> float:
    """Sec. 5.1 Eq. (1) factor ``1/2 * (1 + cos(t*pi/T))``.

    ``T = total_iters - warmup_iters`` (batches excluding warmup) and
    ``t = it - warmup_iters`` (0 at the first post-warmup batch, ``it`` 0-based).
    During warmup (``t < 0``) the factor is 1.0 (the warmup factor is applied
    separately, see :mod:`tricks.warmup`); after the end of the schedule
    (``t > T``) ``t`` is clamped to ``T`` so the factor stays 0.  With ``T <= 0``
    (no post-warmup batches) the factor is 1.0.
    """
    T = total_iters - warmup_iters
    t = it - warmup_iters
    if T <= 0 or t <= 0:
        return 1.0
    t = min(t, T)
    return 0.5 * (1.0 + math.cos(math.pi * t / T))
