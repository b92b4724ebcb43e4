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

_DECAYED_MODULES = (nn.modules.conv._ConvNd, nn.Linear)


def param_groups(model: nn.Module, weight_decay: float, no_bias_decay: bool) -> list[dict]:
    """Sec. 3.1 optimizer param groups, with or without no-bias-decay.

    * ``no_bias_decay=False``: ``[{"params": all, "weight_decay": wd}]``;
    * ``no_bias_decay=True``: ``[{"params": conv/linear weights, "weight_decay": wd},
      {"params": everything else, "weight_decay": 0.0}]``.

    Classification is by MODULE type (``Conv1d/2d/3d`` and transposed convs,
    ``nn.Linear``): only the ``weight`` parameter directly owned by such a
    module is decayed; biases, BN gamma/beta and any other parameter are not.
    Every parameter of ``model.parameters()`` appears exactly once (shared
    parameters are deduplicated; frozen ones are included, optimizers skip them),
    in ``model.parameters()`` order.  Either group may be empty.
    """
    params = list(model.parameters())  # deduplicated by torch
    if not no_bias_decay:
        return [{"params": params, "weight_decay": float(weight_decay)}]
    decay_ids: set[int] = set()
    for module in model.modules():
        if isinstance(module, _DECAYED_MODULES):
            w = module._parameters.get("weight")
            if w is not None:
                decay_ids.add(id(w))
    decayed = [p for p in params if id(p) in decay_ids]
    rest = [p for p in params if id(p) not in decay_ids]
    return [
        {"params": decayed, "weight_decay": float(weight_decay)},
        {"params": rest, "weight_decay": 0.0},
    ]
