"""Zero gamma -- paper Sec. 3.1 ("Zero gamma").

"[...] we initialize gamma = 0 for all BN layers that sit at the end of a
residual block. Therefore, all residual blocks just return their inputs,
mimics network that has less number of layers and is easier to train at the
initial stage."  (Block output ``relu(x + block(x))`` with ``block(x) = 0``
becomes ``relu(shortcut(x))``.)
"""
from __future__ import annotations

import operator
from dataclasses import dataclass

import torch
import torch.fx
from torch import nn

from tricks.trick import Trick

__all__ = ["apply_zero_gamma", "apply_zero_gamma_by_structure", "find_residual_bns", "ResidualBNs",
           "TRICK"]

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


# ---- any model: the BN that ends a residual branch, found in the traced graph ---------------
_ADD_FUNCTIONS = (operator.add, operator.iadd, torch.add)
_ADD_METHODS = ("add", "add_")
_MUL_FUNCTIONS = (operator.mul, operator.imul, torch.mul)
_MUL_METHODS = ("mul", "mul_")
# value-preserving at zero, one input: dropout and stochastic depth (timm, torchvision)
_PASS_FUNCTIONS = ("dropout", "drop_path", "stochastic_depth", "drop_block_2d")
_PASS_MODULES = (nn.Identity, nn.Dropout, nn.Dropout2d, nn.Dropout3d)


@dataclass(frozen=True)
class ResidualBNs:
    """What :func:`find_residual_bns` found: the qualified names of the BNs that end a
    residual branch, and ``skip``, why none were ("" when some were)."""

    names: tuple[str, ...]
    skip: str = ""


class _Tracer(torch.fx.Tracer):
    """torch.fx's tracer with every BatchNorm (subclasses such as BN+activation included) a
    leaf, so each BN is one ``call_module`` node named by its module path."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, nn.modules.batchnorm._BatchNorm) or super().is_leaf_module(m, qualname)


def _is_add(n: torch.fx.Node) -> bool:
    return ((n.op == "call_function" and n.target in _ADD_FUNCTIONS)
            or (n.op == "call_method" and n.target in _ADD_METHODS))


def _is_mul(n: torch.fx.Node) -> bool:
    return ((n.op == "call_function" and n.target in _MUL_FUNCTIONS)
            or (n.op == "call_method" and n.target in _MUL_METHODS))


def _ending_bns(node: torch.fx.Node, modules: dict[str, nn.Module]) -> set[str]:
    """BNs whose output reaches ``node`` through value-preserving ops only (dropout, stochastic
    depth, identity; a product such as a squeeze-excitation gate or a layer scale: all its
    factors are followed)."""
    if node.op == "call_module":
        m = modules[node.target]
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            return {node.target} if m.weight is not None else set()
        if not isinstance(m, _PASS_MODULES):
            return set()
        nexts = node.all_input_nodes[:1]
    elif _is_mul(node):
        nexts = node.all_input_nodes
    elif node.op == "call_function" and getattr(node.target, "__name__", "") in _PASS_FUNCTIONS:
        nexts = node.all_input_nodes[:1]
    else:
        return set()
    return set().union(*(_ending_bns(n, modules) for n in nexts))


def _ancestors(graph: torch.fx.Graph) -> dict[torch.fx.Node, frozenset[torch.fx.Node]]:
    """Each node's ancestors, itself included (the graph's node order is topological)."""
    out: dict[torch.fx.Node, frozenset[torch.fx.Node]] = {}
    for n in graph.nodes:
        out[n] = frozenset({n}).union(*(out[i] for i in n.all_input_nodes))
    return out


def _weighted(nodes: frozenset[torch.fx.Node], modules: dict[str, nn.Module]) -> int:
    """How many of ``nodes`` apply learned weights (modules with parameters, or parameters
    read by ``get_attr``): the length of a branch in layers."""
    return sum(1 for n in nodes
               if (n.op == "call_module" and any(True for _ in modules[n.target].parameters()))
               or n.op == "get_attr")


def find_residual_bns(model: nn.Module) -> ResidualBNs:
    """Sec 3.1's "BN layers that sit at the end of a residual block", found by structure.

    The model is traced with ``torch.fx`` (BNs as leaves). Every addition of two tensors that
    share an ancestor is a merge of two branches of one fork: the branch with more weighted
    layers since the fork is the residual branch, the other the shortcut (the identity, or a
    projection such as ResNet's 1x1 conv + BN). The residual branch's BN is the one whose
    output reaches the addition through value-preserving ops only (dropout, stochastic depth,
    a squeeze-excitation gate; see :func:`_ending_bns`). Additions of equal-length branches
    are ambiguous and left alone. A model that cannot be traced, or has no such BN (a plain
    CNN, a DenseNet, a LayerNorm transformer), gets an empty result and a ``skip`` reason.
    """
    try:
        graph = _Tracer().trace(model)
    except Exception as exc:  # noqa: BLE001 - any tracing failure is a stated skip
        return ResidualBNs((), f"not traceable with torch.fx ({type(exc).__name__}: "
                           f"{' '.join(str(exc).split())[:160]})")
    modules = dict(model.named_modules())
    ancestors = _ancestors(graph)
    order = {n: i for i, n in enumerate(graph.nodes)}
    found: list[str] = []
    adds = ambiguous = 0
    for node in graph.nodes:
        ins = node.all_input_nodes
        common = ancestors[ins[0]] & ancestors[ins[1]] if _is_add(node) and len(ins) == 2 else None
        if not common:
            continue
        adds += 1
        fork = ancestors[max(common, key=order.__getitem__)]  # where the branches split
        lengths = [_weighted(ancestors[i] - fork, modules) for i in ins]
        if lengths[0] == lengths[1]:
            ambiguous += 1
            continue
        residual = ins[0] if lengths[0] > lengths[1] else ins[1]
        found.extend(sorted(_ending_bns(residual, modules) - set(found)))
    if found:
        return ResidualBNs(tuple(found))
    why = (f"{adds} residual additions, {ambiguous} ambiguous, none with a BatchNorm ending "
           "its residual branch" if adds else "no residual additions (no skip connections)")
    return ResidualBNs((), why)


def apply_zero_gamma_by_structure(model: nn.Module) -> ResidualBNs:
    """Sec 3.1 zero-gamma on any model: gamma = 0 for every BN :func:`find_residual_bns`
    finds (in place); returns what was found, or why nothing was."""
    found = find_residual_bns(model)
    modules = dict(model.named_modules())
    for name in found.names:
        nn.init.zeros_(modules[name].weight)
    return found
