"""Per-iteration learning-rate schedule composing the paper's LR tricks.

* linear scaling (Sec. 3.1) is applied by the caller when choosing ``base_lr``
  (see :func:`tricks.linear_scaling.scaled_lr`);
* linear warmup (Sec. 3.1) over the first ``warmup_iters`` iterations;
* then either step decay (Sec. 2.1) or cosine decay (Sec. 5.1, Eq. 1).
"""
from __future__ import annotations

from dataclasses import dataclass

from .cosine import cosine_factor
from .step_decay import step_factor
from .warmup import warmup_factor

__all__ = ["LRSchedule"]

_KINDS = ("step", "cosine")


@dataclass(frozen=True)
class LRSchedule:
    """Learning rate at every 0-based iteration ``it`` (Sec. 2.1, 3.1, 5.1 Eq. 1).

    * ``it < warmup_iters``: ``base_lr * (it + 1) / warmup_iters`` (Sec. 3.1;
      warmup overrides the decay schedule);
    * ``kind == "step"``: ``base_lr * gamma ** #{m in milestones : m <= it}``
      (Sec. 2.1); milestones are ABSOLUTE iteration indices (warmup included);
    * ``kind == "cosine"``: ``base_lr * 1/2 (1 + cos(pi t / T))`` with
      ``T = total_iters - warmup_iters`` and ``t = it - warmup_iters`` (Sec. 5.1, Eq. 1).
    """

    base_lr: float
    total_iters: int
    warmup_iters: int = 0
    kind: str = "step"
    milestones: tuple[int, ...] = ()
    gamma: float = 0.1

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise ValueError(f"unknown schedule kind {self.kind!r}; expected one of {_KINDS}")
        if self.total_iters < 0 or self.warmup_iters < 0:
            raise ValueError("total_iters and warmup_iters must be >= 0")
        if self.base_lr < 0:
            raise ValueError(f"base_lr must be >= 0, got {self.base_lr}")
        # accept any iterable (list from YAML/CLI) but store an immutable, sorted tuple
        object.__setattr__(self, "milestones", tuple(sorted(int(m) for m in self.milestones)))

    def __call__(self, it: int) -> float:
        if it < self.warmup_iters:
            return self.base_lr * warmup_factor(it, self.warmup_iters)
        if self.kind == "step":
            return self.base_lr * step_factor(it, self.milestones, self.gamma)
        return self.base_lr * cosine_factor(it, self.total_iters, self.warmup_iters)

    def apply(self, optimizer, it: int) -> float:
        """Set ``lr`` of every param group of ``optimizer`` for iteration ``it``.

        A group may carry an optional ``'lr_mult'`` (default 1): its lr becomes
        ``lr * lr_mult``.  Returns the (un-multiplied) schedule value ``lr``.
        """
        lr = self(it)
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_mult", 1.0)
        return lr
