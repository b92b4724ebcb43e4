"""Learning-rate warmup -- paper Sec. 3.1 ("Learning rate warmup").

"[...] if we use the first m batches (e.g. 5 data epochs) to warm up, and the
initial learning rate is eta, then at batch i, 1 <= i <= m, we will set the
learning rate to be i*eta/m."
"""
from __future__ import annotations

from tricks.trick import Trick

__all__ = ["warmup_factor", "TRICK"]

TRICK = Trick("warmup", "3.1", {"warmup_epochs": 5}, lambda r: r.warmup_epochs > 0)


def warmup_factor(it: int, warmup_iters: int) -> float:
    """Sec. 3.1 linear warmup factor ``i/m`` for the paper's 1-based batch ``i = it + 1``.

    ``it`` is the 0-based iteration index: returns ``(it + 1) / m`` while
    ``it < m`` and ``1.0`` afterwards; ``m = 0`` disables warmup (always ``1.0``).
    Multiply by the target learning rate ``eta`` to get the paper's ``i*eta/m``.
    """
    if warmup_iters < 0:
        raise ValueError(f"warmup_iters must be >= 0, got {warmup_iters}")
    if it < 0:
        raise ValueError(f"iteration index must be >= 0, got {it}")
    if warmup_iters == 0 or it >= warmup_iters:
        return 1.0
    return (it + 1) / warmup_iters
