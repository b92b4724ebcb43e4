"""Mixup training -- paper Sec. 5.4, Eqs. (5)-(6).

"In mixup, each time we randomly sample two examples (x_i, y_i) and (x_j, y_j).
Then we form a new example by a weighted linear interpolation of these two
examples:  x^ = lam x_i + (1 - lam) x_j,  y^ = lam y_i + (1 - lam) y_j,
where lam in [0, 1] is a random number drawn from the Beta(alpha, alpha)
distribution. In mixup training, we only use the new example (x^, y^)."

The targets may already be label-smoothed (Sec. 5.2): mixup composes with label
smoothing by interpolating the smoothed distributions, as in the paper's
combined experiments.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from tricks.trick import Trick

__all__ = ["sample_lambda", "mix", "mixup_batch", "TRICK"]

TRICK = Trick("mixup", "5.4", {"mixup": True, "epochs": 200},  # mixup trains 200 epochs
              lambda r: r.mixup)


def sample_lambda(alpha: float, generator: torch.Generator) -> float:
    """Sec. 5.4: draw ``lam ~ Beta(alpha, alpha)`` deterministically from ``generator``.

    One 63-bit integer is drawn from the torch ``generator`` (advancing it by
    exactly one draw) and seeds a ``numpy.random.Generator`` whose ``beta``
    sampler produces ``lam``; hence the result is a pure function of the
    generator state.  (numpy's Beta sampler is used because
    ``torch.distributions.Beta`` is not generator-aware and naive
    ``Gamma/(Gamma+Gamma)`` underflows to 0/0 for small ``alpha``.)
    ``alpha == 0`` means "no mixup" and returns 1.0 without touching the generator.
    """
    if alpha < 0:
        raise ValueError(f"alpha must be >= 0, got {alpha}")
    if alpha == 0:
        return 1.0
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator, device=generator.device).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def mix(x: Tensor, target_probs: Tensor, lam: float, perm: Tensor) -> tuple[Tensor, Tensor]:
    """Sec. 5.4 Eqs. (5)-(6): ``x^ = lam x + (1-lam) x[perm]`` and likewise for the targets.

    ``target_probs`` is a ``[B, K]`` distribution (one-hot, label-smoothed, ...);
    the output rows are convex combinations, so they still sum to 1.
    """
    if x.shape[0] != target_probs.shape[0] or perm.shape[0] != x.shape[0]:
        raise ValueError("x, target_probs and perm must share the batch dimension")
    if perm.device != x.device:  # pinned + non_blocking: no wait for queued GPU work
        perm = perm.pin_memory().to(x.device, non_blocking=True) if x.is_cuda else perm.to(x.device)
    x_mixed = lam * x + (1.0 - lam) * x[perm]
    perm_t = perm.to(target_probs.device)
    y_mixed = lam * target_probs + (1.0 - lam) * target_probs[perm_t]
    return x_mixed, y_mixed


def mixup_batch(
    x: Tensor, target_probs: Tensor, alpha: float, generator: torch.Generator
) -> tuple[Tensor, Tensor, float]:
    """Sec. 5.4: sample ``lam`` and a partner permutation, return ``(x^, y^, lam)``.

    ``lam`` comes from :func:`sample_lambda`, then the partner ``j`` of example
    ``i`` is ``perm[i]`` with ``perm = torch.randperm(B, generator=generator)``.
    ``randperm`` runs on ``generator.device`` (a CPU generator is the usual
    choice, giving the same permutation whatever ``x.device`` is); the
    permutation is then moved to ``x.device``.  Both draws consume the same
    generator, in this order, so the whole batch is reproducible from its state.
    """
    lam = sample_lambda(alpha, generator)
    perm = torch.randperm(x.shape[0], generator=generator, device=generator.device)
    x_mixed, y_mixed = mix(x, target_probs, lam, perm)
    return x_mixed, y_mixed, lam
