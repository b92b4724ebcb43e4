"""The model-level tricks a trial's network got, applied where the paper defines them for it.

* zero-gamma (Sec 3.1): the harness's ResNets name each block's last BN (``residual_bn``);
  any other model's are found by structure (:func:`tricks.zero_gamma.find_residual_bns`:
  the BN whose output is added to a skip connection, in the ``torch.fx`` graph). A model
  with none (VGG, DenseNet, a LayerNorm ViT) gets a stated skip and trains without it.
* no bias decay (Sec 3.1): every model's 1-D parameters (biases, norm gamma/beta) go
  undecayed (:func:`tricks.no_bias_decay.param_groups`; the note only counts them).
* ResNet-B/C/D (Sec 4): architectures of the harness's own ResNets, chosen by name
  (``resnet50_d``); an external model is built as its library defines it, so the tweaks are
  a stated skip for it (and ``timm:resnet50_d``-style names are rejected at parse time).

:func:`apply_model_tricks` returns one line per trick; the trial stores them in its metrics
(``model_tricks``) and reports with an external model list them per model.
"""
from __future__ import annotations

import re

from torch import nn

from harness.models.external import is_external, library_version
from harness.recipe import Recipe
from tricks.zero_gamma import apply_zero_gamma, apply_zero_gamma_by_structure

NAMES_SHOWN = 4  # BN names listed in a zero-gamma note before "..."
_RESNET = re.compile(r"resnet\d+(?:_([bcd]))?")


def zero_gamma_note(model: nn.Module, name: str) -> str:
    """Apply Sec 3.1's zero-gamma to ``model`` (in place) and say what was done."""
    if not is_external(name):
        n = apply_zero_gamma(model)
        return (f"applied: gamma = 0 in {n} BN layers (each residual block's residual_bn)" if n
                else "skipped: no residual blocks in this model")
    found = apply_zero_gamma_by_structure(model)
    if not found.names:
        return f"skipped: {found.skip}"
    shown = ", ".join(found.names[:NAMES_SHOWN]) + (", ..." if len(found.names) > NAMES_SHOWN else "")
    return (f"applied: gamma = 0 in {len(found.names)} BN layers ending a residual branch, "
            f"found by torch.fx structure ({shown})")


def no_bias_decay_note(model: nn.Module) -> str:
    """What Sec 3.1's no bias decay leaves undecayed in ``model``."""
    flat = [p for p in model.parameters() if p.dim() < 2]
    return (f"applied: weight decay 0 on {len(flat)} 1-D parameter tensors "
            f"({sum(p.numel() for p in flat)} values: biases, norm gamma/beta)")


def tweaks_note(name: str) -> str:
    """Sec 4's ResNet-B/C/D for ``name``: the variant of a harness ResNet, else a skip."""
    if is_external(name):
        return (f"skipped: the Sec 4 tweaks are defined for the harness's own ResNets "
                f"(resnet50_b/_c/_d, ...); {name} is built as {library_version(name)} defines it")
    m = _RESNET.fullmatch(name)
    if m is None:
        return "not applicable: not a ResNet"
    return f"ResNet-{(m.group(1) or 'a').upper()}" + ("" if m.group(1) else " (no tweak)")


def apply_model_tricks(model: nn.Module, name: str, recipe: Recipe) -> dict[str, str]:
    """Zero-gamma (when the recipe asks) applied to ``model``; one note per model-level trick."""
    notes: dict[str, str] = {}
    if is_external(name):
        notes["library"] = library_version(name)
    if recipe.zero_gamma:
        notes["zero_gamma"] = zero_gamma_note(model, name)
    if recipe.no_bias_decay:
        notes["no_bias_decay"] = no_bias_decay_note(model)
    notes["resnet_tweaks"] = tweaks_note(name)
    return notes
