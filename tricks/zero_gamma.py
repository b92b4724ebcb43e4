"""Zero gamma -- paper Sec. 3.1 ("Zero gamma").

"[...] we initialize gamma = 0 for all BN layers that sit at the end of a
residual block. Therefore, all residual blocks just return their inputs,
mimics network that has less number of layers and is easier to train at the
initial stage."  (Block output ``relu(x + block(x))`` with ``block(x) = 0``
becomes ``relu(shortcut(x))``.)
"""
from __future__ import annotations

from torch import nn

from tricks.trick import Trick

__all__ = ["apply_zero_gamma", "TRICK"]

TRICK = Trick("zero_gamma", "3.1", {"zero_gamma": True}, lambda r: r.zero_gamma)


def apply_zero_gamma(model: nn.Module) -> int:
    """Sec. 3.1 zero-gamma init: set gamma (BN ``weight``) to 0 for the last BN of every residual block.

    Residual blocks are recognised by their ``residual_bn`` attribute (an
    ``nn.BatchNorm2d``; any ``_BatchNorm`` is accepted), which every residual
    block of the harness' ResNets exposes.  Only gamma is touched; beta keeps
    its (zero) init, so the residual branch outputs ``beta = 0`` at init.
    A BN shared by several blocks is counted once.  Returns the number of BNs zeroed.
    """
    seen: set[int] = set()
    for module in model.modules():
        bn = getattr(module, "residual_bn", None)
        if bn is None:
            continue
        if not isinstance(bn, nn.modules.batchnorm._BatchNorm):
            raise TypeError(
                f"{type(module).__name__}.residual_bn must be a BatchNorm layer, got {type(bn).__name__}"
            )
        if bn.weight is None:
            raise ValueError(f"{type(module).__name__}.residual_bn has affine=False: no gamma to zero")
        if id(bn) in seen:
            continue
        seen.add(id(bn))
        nn.init.zeros_(bn.weight)
    return len(seen)
