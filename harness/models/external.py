"""Models from other libraries by name: ``timm:NAME`` and ``torchvision:NAME``.

The paper's training procedure (Sec 2.1) and tricks (Sec 3, 5) are not specific to its
networks, so any classification network of timm or torchvision can take a row of a table.
Such a model is built exactly as its library defines it, never with pretrained weights
(``pretrained=False`` / ``weights=None``: nothing is downloaded), with the class count and
input channels of the data:

* timm: ``timm.create_model(NAME, pretrained=False, num_classes=K, in_chans=C)``, plus
  ``img_size=CROP`` for a model built for a fixed size (a ViT) trained at another crop;
* torchvision: ``torchvision.models.get_model(NAME, weights=None, num_classes=K)``; for
  ``C != 3`` input channels, the first ``nn.Conv2d`` taking 3 channels (the stem, in
  module order) is replaced by the same convolution taking ``C`` channels. torchvision's
  ViTs are built at their own size (a crop they cannot take is refused before training).

The Sec 4 ResNet tweaks (B, C, D) are the harness's own ResNets (``resnet50_d``, ...): a
name such as ``timm:resnet50_d`` is not a timm model and is rejected with that hint (timm's
own D variant is ``timm:resnet50d``, built as timm defines it). timm is an optional
dependency (the ``models`` extra); torchvision is always installed.
"""
from __future__ import annotations

import difflib
import importlib
import importlib.metadata
import re

from torch import nn

from harness.errors import HarnessError

LIBRARIES: dict[str, str] = {"timm": "timm", "torchvision": "torchvision"}  # prefix -> package
INSTALL_HINT = {"timm": "pip install 'bag-of-tricks-harness[models]' (or pip install timm==1.0.31)",
                "torchvision": "pip install torchvision"}
CLOSE_MATCHES = 5
AUX_LOGITS = ("inception_v3", "googlenet")  # torchvision models that return a namedtuple when training
_TWEAK = re.compile(r"(resnet\d+)_([bcd])")  # the harness's Sec 4 names: resnet50_d


def is_external(name: str) -> bool:
    """Whether ``name`` names another library's model (``timm:...``, ``torchvision:...``)."""
    return name.partition(":")[0] in LIBRARIES and ":" in name


def split_name(name: str) -> tuple[str, str]:
    """``"timm:resnet18"`` -> ``("timm", "resnet18")``; bad prefixes are a HarnessError."""
    lib, sep, model = name.partition(":")
    if not sep or lib not in LIBRARIES:
        raise HarnessError(f"unknown model library {lib!r} in {name!r}; valid choices: "
                           + ", ".join(f"{p}:NAME" for p in LIBRARIES))
    if not model:
        raise HarnessError(f"model name missing in {name!r}; valid: {lib}:NAME")
    return lib, model


def _import(lib: str):
    try:
        return importlib.import_module(LIBRARIES[lib])
    except ImportError:
        raise HarnessError(f"model library {lib!r} is not installed; install it with: "
                           f"{INSTALL_HINT[lib]}") from None


def library_models(lib: str) -> tuple[str, ...]:
    """Every classification model name the library offers (timm.list_models(),
    torchvision.models.list_models(module=torchvision.models))."""
    mod = _import(lib)
    if lib == "timm":
        return tuple(mod.list_models())
    import torchvision.models  # noqa: F401  (the submodule itself)

    return tuple(mod.models.list_models(module=mod.models))


def library_version(name: str) -> str:
    """``"timm 1.0.31"``: the library and version an external model was built with."""
    lib, _ = split_name(name)
    try:
        return f"{lib} {importlib.metadata.version(LIBRARIES[lib])}"
    except importlib.metadata.PackageNotFoundError:
        return f"{lib} (not installed)"


def check_external(name: str) -> str:
    """``name`` if its library has that model; else one line with the closest names."""
    lib, model = split_name(name)
    names = library_models(lib)
    if model in names:
        return name
    close = difflib.get_close_matches(model, names, n=CLOSE_MATCHES, cutoff=0.0)  # the n most alike
    hint = ""
    tweak = _TWEAK.fullmatch(model)
    if tweak:
        hint = (f" (the Sec 4 tweaks B/C/D apply only to the harness's own ResNets, e.g. "
                f"--model {model}; {lib} builds its own variants as it defines them)")
    closest = ", ".join(f"{lib}:{c}" for c in close)
    raise HarnessError(f"unknown {lib} model {model!r}{hint}; closest: {closest}; valid choices: "
                       f"any of the {len(names)} names of {_listing(lib)}")


def _listing(lib: str) -> str:
    return "timm.list_models()" if lib == "timm" else "torchvision.models.list_models()"


def external_input_size(name: str) -> int:
    """The model's native training crop: timm's ``pretrained_cfg`` input size, else 224
    (torchvision's Inception-V3: 299)."""
    lib, model = split_name(name)
    if lib == "torchvision":
        return 299 if model == "inception_v3" else 224
    timm = _import(lib)
    cfg = timm.get_pretrained_cfg(model) if hasattr(timm, "get_pretrained_cfg") else None
    size = getattr(cfg, "input_size", None) if cfg is not None else None
    return int(size[-1]) if size else 224


def create_external(name: str, *, num_classes: int, in_chans: int,
                    img_size: int | None = None) -> nn.Module:
    """The library's uninitialised-by-us network ``name`` for ``num_classes`` classes and
    ``in_chans`` input channels, never pretrained (see the module docstring); ``img_size``:
    the training crop, for a timm model built for a fixed size (:func:`_timm_model`)."""
    lib, model = split_name(check_external(name))
    mod = _import(lib)
    if lib == "timm":
        return _timm_model(mod, model, num_classes, in_chans, img_size)
    aux = {"aux_logits": False} if model in AUX_LOGITS else {}  # one logits tensor in train mode
    net = mod.models.get_model(model, weights=None, num_classes=num_classes, **aux)
    if in_chans != 3:
        replace_stem_conv(net, in_chans)
    return net


def _timm_model(timm, model: str, num_classes: int, in_chans: int,
                img_size: int | None) -> nn.Module:
    """``timm.create_model``; at a crop other than the model's native one, with
    ``img_size=crop`` where the model takes it (ViT, DeiT, Swin...: their patch grid and
    position embeddings are sized by it, so a 224-px ViT can train on 28-px images). A model
    whose constructor has no ``img_size`` (a CNN) raises TypeError before building anything
    (no random draw), and is then built as before."""
    kw = {"pretrained": False, "num_classes": num_classes, "in_chans": in_chans}
    if img_size is not None and img_size != external_input_size(f"timm:{model}"):
        try:
            return timm.create_model(model, img_size=int(img_size), **kw)
        except TypeError as exc:
            if "img_size" not in str(exc):
                raise
    return timm.create_model(model, **kw)


def replace_stem_conv(net: nn.Module, in_chans: int) -> str:
    """Swap the first ``nn.Conv2d`` with 3 input channels (module order) for the same
    convolution with ``in_chans`` inputs; returns its name."""
    for qual, conv in net.named_modules():
        if type(conv) is nn.Conv2d and conv.in_channels == 3:
            new = nn.Conv2d(in_chans, conv.out_channels, conv.kernel_size, conv.stride,
                            conv.padding, conv.dilation, conv.groups, conv.bias is not None,
                            conv.padding_mode, device=conv.weight.device, dtype=conv.weight.dtype)
            parent_name, _, attr = qual.rpartition(".")
            setattr(net.get_submodule(parent_name) if parent_name else net, attr, new)
            return qual
    raise HarnessError(f"cannot adapt this torchvision model to {in_chans} input channels: "
                       "no 3-channel nn.Conv2d stem found; valid: data with 3 channels")
