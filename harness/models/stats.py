"""Parameter and multiply-add counts (paper Table 5 "#Params" / "FLOPs" columns).

MACs are *measured*: one forward pass of one image through the model under
``torch.utils.flop_counter.FlopCounterMode``; multiply-adds = counted FLOPs / 2. The
counter covers convolutions and matrix products (conv, linear); BN, ReLU, pooling and
additions are not counted, which is the usual convention for the paper's numbers.
"""
from __future__ import annotations

from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from harness.models.registry import create_model, default_input_size


def count_params(model: torch.nn.Module) -> int:
    """Number of parameters (trainable or not; buffers excluded)."""
    return sum(p.numel() for p in model.parameters())


def count_macs(model: torch.nn.Module, input_size: int, in_chans: int = 3) -> int:
    """Multiply-adds of one eval-mode forward pass of one ``in_chans x size x size`` image."""
    was_training = model.training
    model.eval()
    x = torch.zeros(1, in_chans, input_size, input_size)
    counter = FlopCounterMode(display=False)
    try:
        with torch.no_grad(), counter:
            model(x)
    finally:
        model.train(was_training)
    return counter.get_total_flops() // 2


def model_stats(name: str, input_size: int | None = None, **create_kwargs: Any) -> dict[str, Any]:
    """``{"name", "params", "macs", "input_size"}`` for ``create_model(name, **create_kwargs)``.

    ``input_size`` defaults to ``default_input_size(name)`` (224, 299 for Inception-V3),
    also with ``small_input=True``: pass e.g. ``input_size=32`` explicitly then.
    """
    size = default_input_size(name) if input_size is None else int(input_size)
    if ":" in name:  # an external model is built for the crop it is counted at (a ViT's grid)
        create_kwargs = {**create_kwargs, "img_size": size}
    with torch.device("meta"):  # shapes only: same counts, no weight init or real compute
        model = create_model(name, **create_kwargs)
        macs = count_macs(model, size, create_kwargs.get("in_chans", 3))
    return {
        "name": name,
        "params": count_params(model),
        "macs": macs,
        "input_size": size,
    }
