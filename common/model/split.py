"""Split execution: a cut turns one traced model into an edge part and a cloud part.

Invariant (as in torch.fx's split_module): for every valid cut E,
`cloud_part(*edge_part(x))` computes exactly what `model(x)` computes — the same ops, in the same
order, on the same weights (both parts share the original module's parameters, nothing is copied).

What crosses is a flat tuple of tensors, one per wire frame: each node in `sends` contributes its
output flattened by its ValueSpec (a tensor as is; a tuple of tensors, e.g. `chunk`, one tensor per
element; Python ints/floats/bools as 0-d tensors; a torch.Size as an int64 vector). `sends` is the
plan's `transfer` list (DESIGN §3, graph order), followed by any node of the model's output that
was computed on the edge and no cloud node consumes (for edge-only, the whole result).
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

import torch
import torch.fx as fx
from torch import nn

from common.errors import InvalidCut
from common.model.graph import ModelGraph, ValueSpec, trace
from common.planning import dag

__all__ = [
    "EdgePart", "CloudPart", "split", "split_graph", "cloud_part", "flatten", "unflatten", "relative_error", "check_cut",
    "wire_names", "wire_layout", "StagePart", "stage_part",
]

_SCALAR_DTYPES = {"int": torch.int64, "float": torch.float64, "bool": torch.bool}


def flatten(value: Any, spec: ValueSpec, out: list[torch.Tensor]) -> None:
    """Append the tensors that carry `value` (structured as `spec`) to `out`."""
    kind = spec.kind
    if kind == "tensor":
        out.append(value)
    elif kind == "size":
        out.append(torch.tensor(list(value), dtype=torch.int64))
    elif kind in _SCALAR_DTYPES:
        out.append(torch.tensor(value, dtype=_SCALAR_DTYPES[kind]))
    elif kind in ("tuple", "list"):
        for item, item_spec in zip(value, spec.items, strict=True):
            flatten(item, item_spec, out)


def unflatten(spec: ValueSpec, tensors: Iterator[torch.Tensor]) -> Any:
    """Rebuild one value of structure `spec` from the tensors that carry it."""
    kind = spec.kind
    if kind == "tensor":
        return next(tensors)
    if kind == "size":
        return torch.Size(next(tensors).tolist())
    if kind in _SCALAR_DTYPES:
        return next(tensors).item()
    if kind == "none":
        return None
    items = [unflatten(s, tensors) for s in spec.items]
    return tuple(items) if kind == "tuple" else items


def wire_layout(spec: ValueSpec) -> list[tuple[str, tuple[int, ...]]]:
    """(dtype, shape) of each frame that carries a value of structure `spec`, as `flatten` makes them."""
    kind = spec.kind
    if kind == "tensor":
        return [(spec.dtype, spec.shape)]
    if kind == "size":
        return [("int64", spec.shape)]
    if kind in _SCALAR_DTYPES:
        return [(str(_SCALAR_DTYPES[kind]).removeprefix("torch."), ())]
    return [frame for item in spec.items for frame in wire_layout(item)]


def wire_names(nodes: Iterable[str], specs: Iterable[ValueSpec]) -> list[str]:
    """One name per wire frame: a node whose output is a tuple sends one frame per element."""
    return [n for n, spec in zip(nodes, specs, strict=True) for _ in range(spec.num_tensors)]


class EdgePart(nn.Module):
    """The edge side of a cut: model inputs in, the crossing tensors out (wire order)."""

    def __init__(self, gm: fx.GraphModule, sends: list[str], specs: list[ValueSpec]) -> None:
        super().__init__()
        self.gm = gm
        self.sends = tuple(sends)
        self.specs = tuple(specs)
        self.wire_names = wire_names(sends, specs)

    def forward(self, *inputs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values = self.gm(*inputs)
        out: list[torch.Tensor] = []
        for value, spec in zip(values, self.specs, strict=True):
            flatten(value, spec, out)
        return tuple(out)


class CloudPart(nn.Module):
    """The cloud side of a cut: the crossing tensors in, the model's output out."""

    def __init__(self, gm: fx.GraphModule, receives: list[str], specs: list[ValueSpec]) -> None:
        super().__init__()
        self.gm = gm
        self.receives = tuple(receives)
        self.specs = tuple(specs)
        self.wire_names = wire_names(receives, specs)
        self.num_tensors = len(self.wire_names)
        #: (name, dtype, shape) of every frame this part takes: what a worker checks requests by
        self.wire_frames = [(name, *frame) for name, frame in zip(
            self.wire_names, [f for spec in specs for f in wire_layout(spec)], strict=True)]

    def forward(self, *tensors: torch.Tensor) -> Any:
        if len(tensors) != self.num_tensors:
            raise ValueError(
                f"cloud part expects {self.num_tensors} tensors for {list(self.receives)}, "
                f"got {len(tensors)}"
            )
        it = iter(tensors)
        values = [unflatten(spec, it) for spec in self.specs]
        return self.gm(*values)


class StagePart(CloudPart):
    """A middle tier's part (Scission's edge server): the tensors crossing into it in, the
    tensors crossing out of it (to the next tier) out, flattened in wire order like EdgePart's.
    A tensor made before this tier that a later one needs passes through it: the chain of tiers
    is the network's, so it crosses every link on its way (and the plan pays it on each)."""

    def __init__(self, gm: fx.GraphModule, receives: list[str], specs: list[ValueSpec],
                 sends: list[str], send_specs: list[ValueSpec]) -> None:
        super().__init__(gm, receives, specs)
        self.sends = tuple(sends)
        self.send_specs = tuple(send_specs)
        self.send_names = wire_names(sends, send_specs)

    def forward(self, *tensors: torch.Tensor) -> tuple[torch.Tensor, ...]:
        values = super().forward(*tensors)
        out: list[torch.Tensor] = []
        for value, spec in zip(values, self.send_specs, strict=True):
            flatten(value, spec, out)
        return tuple(out)


def _crossing(graph: ModelGraph, edge_nodes: Iterable[str],
              exit: str | None = None) -> tuple[frozenset[str], list[str]]:
    """The edge set (checked: raises InvalidCut naming the node) and the tensors that cross,
    outputs computed on the edge included; for an exit, within the nodes that exit needs."""
    whole = graph.dag if exit is None else dag.needed_by(graph.dag, exit)
    outputs = graph.outputs if exit is None else [exit]
    edge = dag.check_cut(whole, edge_nodes)
    sends = dag.transfer(whole, edge)
    sends += [v for v in outputs if v in edge and v not in sends]
    return edge, sends


def _needed(graph: ModelGraph, exit: str | None) -> frozenset[str]:
    return frozenset(graph.nodes) if exit is None else frozenset(dag.needed_by(graph.dag, exit))


def _edge_module(graph: ModelGraph, edge: frozenset[str], sends: list[str]) -> fx.GraphModule:
    src, g = graph.module.graph, fx.Graph()
    env: dict[fx.Node, fx.Node] = {}
    by_name = {n.name: n for n in src.nodes}
    for n in src.nodes:
        if n.name in edge:
            env[n] = g.node_copy(n, env.__getitem__)
    g.output(tuple(env[by_name[v]] for v in sends))
    return fx.GraphModule(graph.module, g, class_name="EdgeGraph")


def _cloud_module(graph: ModelGraph, edge: frozenset[str], sends: list[str],
                  exit: str | None = None) -> fx.GraphModule:
    """The nodes off the edge (of those the exit needs, for an exit); the model's output, or
    the exit's alone."""
    src, g = graph.module.graph, fx.Graph()
    by_name = {n.name: n for n in src.nodes}
    needed = _needed(graph, exit)
    env = {by_name[v]: g.placeholder(v) for v in sends}
    for n in src.nodes:
        if n.op == "output":
            g.output(fx.map_arg(n.args[0], env.__getitem__) if exit is None else env[by_name[exit]])
        elif n.name not in edge and n.name in needed:
            env[n] = g.node_copy(n, env.__getitem__)
    return fx.GraphModule(graph.module, g, class_name="CloudGraph")


def split_graph(graph: ModelGraph, edge_nodes: Iterable[str],
                exit: str | None = None) -> tuple[EdgePart, CloudPart]:
    """Cut a traced model; raises InvalidCut (naming the node) when `edge_nodes` is not a cut.
    With `exit` (an early exit's node), only what that exit needs runs, and it is the output."""
    edge, sends = _crossing(graph, edge_nodes, exit)
    specs = [graph.nodes[v].spec for v in sends]
    return (EdgePart(_edge_module(graph, edge, sends), sends, specs),
            CloudPart(_cloud_module(graph, edge, sends, exit), sends, specs))


def cloud_part(graph: ModelGraph, edge_nodes: Iterable[str], exit: str | None = None) -> CloudPart:
    """Only the cloud's side of the cut: what a worker runs (it never needs the edge's)."""
    edge, sends = _crossing(graph, edge_nodes, exit)
    return CloudPart(_cloud_module(graph, edge, sends, exit), sends,
                     [graph.nodes[v].spec for v in sends])


def stage_part(graph: ModelGraph, before: Iterable[str], upto: Iterable[str],
               exit: str | None = None) -> StagePart:
    """The part of a tier between two nested cuts: `before` (the nodes of the earlier tiers)
    and `upto` (those and this tier's). `cloud_part(upto)(*stage_part(before, upto)(*x))` is
    `cloud_part(before)(*x)`: the same ops on the same weights, in the same order."""
    edge, receives = _crossing(graph, before, exit)
    done, sends = _crossing(graph, upto, exit)
    if not edge <= done:
        first = sorted(edge - done)[0]
        raise InvalidCut(f"the tiers are not nested: {first!r} runs before this tier but not "
                         "up to it", node=first)
    src, g = graph.module.graph, fx.Graph()
    by_name = {n.name: n for n in src.nodes}
    env = {by_name[v]: g.placeholder(v) for v in receives}
    for n in src.nodes:
        if n.name in done and n.name not in edge:
            env[n] = g.node_copy(n, env.__getitem__)
    g.output(tuple(env[by_name[v]] for v in sends))
    return StagePart(fx.GraphModule(graph.module, g, class_name="StageGraph"), receives,
                     [graph.nodes[v].spec for v in receives], sends,
                     [graph.nodes[v].spec for v in sends])


def split(
    model: nn.Module | ModelGraph,
    example_input: torch.Tensor | tuple[torch.Tensor, ...] | None,
    edge_nodes: Iterable[str],
) -> tuple[EdgePart, CloudPart]:
    """DESIGN §7: `edge_part(x)` gives the crossing tensors, `cloud_part(*them)` the output.

    Pass a ModelGraph (from `common.model.graph.trace`) to skip tracing when splitting one model often.
    """
    if isinstance(model, ModelGraph):
        graph = model
    else:
        if example_input is None:
            raise ValueError("split() needs an example input to trace a module")
        graph = trace(model, example_input)
    return split_graph(graph, edge_nodes)


def relative_error(out: Any, ref: Any) -> float:
    """max |out - ref| over the output scale max |ref| (outputs may be tensors or tuples)."""
    outs = out if isinstance(out, (tuple, list)) else (out,)
    refs = ref if isinstance(ref, (tuple, list)) else (ref,)
    diff = max(float((a.double() - b.double()).abs().max()) for a, b in zip(outs, refs, strict=True))
    scale = max(float(b.double().abs().max()) for b in refs)
    return diff / max(scale, 1e-30)


def check_cut(graph: ModelGraph, edge_nodes: Iterable[str], x: tuple[torch.Tensor, ...], ref: Any) -> float:
    """Split at `edge_nodes`, run both parts on `x`, return the relative error against `ref`."""
    edge_part, cloud_part = split_graph(graph, edge_nodes)
    with torch.no_grad():
        return relative_error(cloud_part(*edge_part(*x)), ref)
