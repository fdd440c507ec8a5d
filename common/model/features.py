"""Shape features of each node, for the latency predictors (Edgent's regression models).

Edgent predicts a layer's latency from its shape: convolutions from the input feature map size
and (filter size / stride)^2 x filters, ReLU/dropout/LRN from the input size, pooling and fully
connected layers from input and output sizes. The features here carry all of those as numbers
a regression can weigh: the multiply-accumulates (for a convolution, output elements x (input
channels / groups) x kernel area: Edgent's (k/s)^2 x filters x input map, exactly), the input
and output elements, and the parameter bytes (what must stream through the caches).
"""

from __future__ import annotations

import math

import torch.fx as fx
from torch import nn

from common.model.graph import ModelGraph

__all__ = ["FEATURES", "node_features"]

FEATURES = ("macs", "in_elems", "out_elems", "param_bytes")


def _numel(graph: ModelGraph, name: str) -> int:
    spec = graph.nodes[name].spec
    return math.prod(spec.shape) if spec.kind == "tensor" else 0


def _macs(module: nn.Module | None, node: fx.Node, out_elems: int, in_elems: int) -> float:
    if isinstance(module, nn.Conv2d | nn.Conv1d | nn.Conv3d):
        return out_elems * (module.in_channels // module.groups) * math.prod(module.kernel_size)
    if isinstance(module, nn.Linear):
        return out_elems * module.in_features
    if isinstance(module, nn.MaxPool2d | nn.AvgPool2d):
        k = module.kernel_size
        return out_elems * (k * k if isinstance(k, int) else math.prod(k))
    if isinstance(module, nn.AdaptiveAvgPool2d | nn.AdaptiveMaxPool2d):
        return float(in_elems)
    return float(max(out_elems, in_elems))


def node_features(graph: ModelGraph) -> dict[str, tuple[str, dict[str, float]]]:
    """node -> (op kind, {feature: value}) for every node of the model."""
    modules = dict(graph.module.named_modules())
    fx_nodes = {n.name: n for n in graph.module.graph.nodes}
    out: dict[str, tuple[str, dict[str, float]]] = {}
    for name, info in graph.nodes.items():
        node = fx_nodes[name]
        module = modules.get(str(node.target)) if node.op == "call_module" else None
        in_elems = sum(_numel(graph, u) for u in info.inputs)
        out_elems = _numel(graph, name)
        params = sum(p.numel() * p.element_size() for p in module.parameters()) if module else 0
        out[name] = (info.op, {"macs": float(_macs(module, node, out_elems, in_elems)),
                               "in_elems": float(in_elems), "out_elems": float(out_elems),
                               "param_bytes": float(params)})
    return out
