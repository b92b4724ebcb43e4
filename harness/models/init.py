"""Weight initialisation (paper Sec 2.1, "Baseline Training Procedure").

The baseline initialises convolutional and fully-connected weights with the Xavier
algorithm (uniform in ``[-a, a]``, ``a = sqrt(6 / (d_in + d_out))``), sets all biases
to 0, and BatchNorm ``gamma = 1``, ``beta = 0``.  ``"kaiming_normal"`` is offered as an
alternative: He-normal with ``mode="fan_out"`` for convolutions (as torchvision does)
and ``mode="fan_in"`` for linear layers, biases and BN as above.
"""
from __future__ import annotations

from torch import nn

from harness.errors import unknown

INIT_SCHEMES: tuple[str, ...] = ("kaiming_normal", "xavier_uniform")

_NORM_TYPES = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d, nn.GroupNorm, nn.LayerNorm)


def _init_weight(module: nn.Conv2d | nn.Linear, scheme: str) -> None:
    if scheme == "xavier_uniform":
        nn.init.xavier_uniform_(module.weight)
    elif isinstance(module, nn.Linear):
        nn.init.kaiming_normal_(module.weight, mode="fan_in", nonlinearity="relu")
    else:
        nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    if module.bias is not None:
        nn.init.zeros_(module.bias)


def init_weights(model: nn.Module, scheme: str = "xavier_uniform") -> nn.Module:
    """Initialise ``model`` in place (Sec 2.1) and return it.

    Conv/linear weights: ``scheme``; biases: 0; normalisation layers: weight 1, bias 0.
    """
    if scheme not in INIT_SCHEMES:
        raise unknown("init scheme", scheme, INIT_SCHEMES)
    for module in model.modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear)):
            _init_weight(module, scheme)
        elif isinstance(module, _NORM_TYPES) and getattr(module, "weight", None) is not None:
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
    return model
