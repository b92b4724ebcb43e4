"""No bias decay -- paper Sec. 3.1 ("No bias decay").

"[...] it is recommended to only apply the regularization to weights to avoid
overfitting. The no bias decay heuristic follows this recommendation, it only
applies the weight decay to the weights in convolution and fully-connected
layers. Other parameters, including the biases and gamma and beta in BN
layers, are left unregularized."
"""
from __future__ import annotations

from torch import nn

from tricks.trick import Trick

__all__ = ["param_groups", "TRICK"]

TRICK = Trick("no_bias_decay", "3.1", {"no_bias_decay": True}, lambda r: r.no_bias_decay)

def param_groups(model: nn.Module, weight_decay: float, no_bias_decay: bool) -> list[dict]:
    """Sec. 3.1 optimizer param groups, with or without no-bias-decay.

    * ``no_bias_decay=False``: ``[{"params": all, "weight_decay": wd}]``;
    * ``no_bias_decay=True``: ``[{"params": weight tensors, "weight_decay": wd},
      {"params": everything else, "weight_decay": 0.0}]``.

    Classification is by SHAPE, so it holds for any model (the harness's, timm's,
    torchvision's): a parameter of two or more dimensions (a conv or FC kernel) is decayed,
    a 1-D (or 0-D) one -- conv/FC biases, BN/GN/LN gamma and beta, layer scales -- is not.
    For the harness's own models, whose only >= 2-D parameters are conv and FC weights, this
    is the paper's rule word for word (tests/test_external_models.py checks it model by
    model); another library's multi-dimensional non-kernel tensor (a position embedding) is
    a weight and is decayed, as in timm's own no-weight-decay rule.
    Every parameter of ``model.parameters()`` appears exactly once (shared
    parameters are deduplicated; frozen ones are included, optimizers skip them),
    in ``model.parameters()`` order.  Either group may be empty.
    """
    params = list(model.parameters())  # deduplicated by torch
    if not no_bias_decay:
        return [{"params": params, "weight_decay": float(weight_decay)}]
    decayed = [p for p in params if p.dim() >= 2]
    rest = [p for p in params if p.dim() < 2]
    return [
        {"params": decayed, "weight_decay": float(weight_decay)},
        {"params": rest, "weight_decay": 0.0},
    ]
