"""Model registry (timm style) and the shared builder conventions.

Every architecture module registers its builders with ``@register_model``; a builder
takes the keyword arguments ``num_classes, in_chans, width_mult, small_input, blocks``
and returns an *uninitialised* ``nn.Module``. :func:`create_model` validates the
arguments, calls the builder and applies the paper's initialisation (Sec 2.1).

Width rule (all models): a nominal channel count ``c`` becomes
``scale_channels(c, width_mult)`` = ``c * width_mult`` rounded to the nearest multiple
of 8 (ties up), never below 8, and bumped by 8 if rounding lost more than 10%.
At ``width_mult=1.0`` every channel count in these models is already a multiple of 8,
so the full-size models are exactly the published layouts.
"""
from __future__ import annotations

import bisect
from typing import Callable, Protocol

import torch
from torch import nn

from harness.errors import HarnessError, unknown
from harness.models.external import check_external, create_external, external_input_size
from harness.models.init import init_weights


class ModelBuilder(Protocol):
    """Signature every registered builder has."""

    def __call__(self, *, num_classes: int, in_chans: int, width_mult: float,
                 small_input: bool, blocks: tuple[int, ...] | None) -> nn.Module: ...


_REGISTRY: dict[str, ModelBuilder] = {}
_INPUT_SIZES: dict[str, int] = {}
MODEL_NAMES: list[str] = []  # kept sorted, filled in place by register_model


def register_model(fn: Callable | None = None, *, name: str | None = None,
                   input_size: int = 224) -> Callable:
    """Register a builder under ``name`` (default: the function's ``__name__``).

    Usable as ``@register_model``, ``@register_model(input_size=299)`` or
    ``register_model(fn, name="resnet50_d")``.
    """

    def _register(f: Callable) -> Callable:
        key = name or f.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} registered twice")
        _REGISTRY[key] = f
        _INPUT_SIZES[key] = input_size
        bisect.insort(MODEL_NAMES, key)
        return f

    return _register(fn) if fn is not None else _register


def _builder(name: str) -> ModelBuilder:
    if name not in _REGISTRY:
        raise unknown("model", name, [*MODEL_NAMES, "timm:NAME", "torchvision:NAME"])
    return _REGISTRY[name]


def default_input_size(name: str) -> int:
    """Paper's training crop for ``name``: 224, or 299 for Inception-V3 (Sec 2.1, 4); an
    external model's native crop (``harness.models.external``)."""
    if ":" in name:
        return external_input_size(name)
    _builder(name)
    return _INPUT_SIZES[name]


def check_model(name: str) -> str:
    """``name`` if it is a registered model or an existing ``timm:``/``torchvision:`` one;
    else one line naming it and the valid (or closest) choices."""
    if ":" in name:  # LIBRARY:NAME (an unknown library is named in the error too)
        return check_external(name)
    _builder(name)
    return name


def scale_channels(channels: int, width_mult: float, divisor: int = 8) -> int:
    """Scale a nominal channel count by ``width_mult`` (see module docstring)."""
    value = channels * width_mult
    scaled = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if scaled < 0.9 * value:
        scaled += divisor
    return scaled


def _check_args(num_classes: int, in_chans: int, width_mult: float) -> None:
    if int(num_classes) != num_classes or num_classes < 1:
        raise HarnessError(f"num_classes must be a positive integer, got {num_classes!r}")
    if int(in_chans) != in_chans or in_chans < 1:
        raise HarnessError(f"in_chans must be a positive integer, got {in_chans!r}")
    if not width_mult > 0:
        raise HarnessError(f"width_mult must be > 0, got {width_mult!r}")


def check_blocks(blocks: tuple[int, ...] | None, length: int, what: str) -> tuple[int, ...] | None:
    """Validate a ``blocks`` override: ``length`` positive integers (or None)."""
    if blocks is None:
        return None
    blocks = tuple(blocks)
    if len(blocks) != length or any(int(b) != b or b < 1 for b in blocks):
        raise HarnessError(f"blocks for {what} must be {length} positive integers, got {blocks!r}")
    return tuple(int(b) for b in blocks)


def create_model(name: str, *, num_classes: int = 1000, in_chans: int = 3,
                 width_mult: float = 1.0, small_input: bool = False,
                 blocks: tuple[int, ...] | None = None,
                 init: str = "xavier_uniform", img_size: int | None = None) -> nn.Module:
    """Build the registered model ``name`` and initialise it with ``init`` (Sec 2.1).

    An external model (``timm:NAME``, ``torchvision:NAME``) is built by its library at its
    own size (``width_mult``, ``small_input`` and ``blocks`` must keep their defaults) and
    then gets the same ``init``: the recipe's initialisation replaces the library's, so a
    baseline row is the Sec 2.1 baseline for every model (timm's ResNets, for one, zero the
    last BN of each block by default, which would make every row a zero-gamma row).
    ``img_size``: the training crop, for an external model built for a fixed size (a timm
    ViT); the harness's own models take any crop and must leave it None.
    """
    if ":" in name:
        _check_args(num_classes, in_chans, width_mult)
        if width_mult != 1.0 or small_input or blocks is not None:
            raise HarnessError(f"{name} is built at its library's size; width_mult, small_input "
                               "and blocks apply only to the harness's own models "
                               f"({', '.join(MODEL_NAMES[:3])}, ...)")
        model = create_external(name, num_classes=int(num_classes), in_chans=int(in_chans),
                                img_size=img_size)
        return init_weights(model, init)
    if img_size is not None:
        raise HarnessError(f"img_size applies to timm:/torchvision: models; {name} takes any crop")
    builder = _builder(name)
    _check_args(num_classes, in_chans, width_mult)
    model = builder(num_classes=int(num_classes), in_chans=int(in_chans),
                    width_mult=float(width_mult), small_input=bool(small_input),
                    blocks=blocks)
    init_weights(model, init)
    return model


def check_input_size(model: nn.Module, name: str, size: int, in_chans: int,
                     device: torch.device | None = None) -> None:
    """HarnessError (one line) when ``model`` cannot take ``size`` x ``size`` inputs (a ViT
    built for 224 px, pooling that shrinks a small map to nothing). One forward of a zero
    batch in eval mode under no_grad: no random draw, no BN statistics touched."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, in_chans, size, size, device=device))
    except (RuntimeError, AssertionError, ValueError) as exc:
        msg = " ".join(str(exc).split())[:160]
        raise HarnessError(f"model {name} cannot take {size}x{size} px inputs ({type(exc).__name__}: {msg}); "
                           "valid: a larger --image-size (ImageFolder data), or a model built for this "
                           "size") from None
    finally:
        model.train(was)
