"""The paper's models behind one registry (He et al. 2019, Sec 2 and Sec 4).

``create_model(name, ...)`` builds and initialises any of ``MODEL_NAMES``:
ResNet-A/B/C/D at depths 18/34/50/101/152 (``resnet50``, ``resnet50_b``, ...),
``mobilenet`` (v1) and ``inception_v3``. See ``registry`` for the width rule.
``timm:NAME`` and ``torchvision:NAME`` build another library's model (``external``).
"""
from __future__ import annotations

from harness.models import inception, mobilenet, resnet  # noqa: F401  (register models)
from harness.models.init import INIT_SCHEMES, init_weights
from harness.models.registry import (
    MODEL_NAMES,
    check_input_size,
    check_model,
    create_model,
    default_input_size,
    register_model,
    scale_channels,
)
from harness.models.stats import count_macs, count_params, model_stats

__all__ = [
    "INIT_SCHEMES",
    "MODEL_NAMES",
    "check_input_size",
    "check_model",
    "count_macs",
    "count_params",
    "create_model",
    "default_input_size",
    "init_weights",
    "model_stats",
    "register_model",
    "scale_channels",
]
