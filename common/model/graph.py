"""Model graph: a torch.fx trace annotated with what each node outputs.

`trace(model, example_input)` runs the traced module once on the example, recording for every
node the structure of its output (tensor dtype/shape, Python scalars, shapes, tuples of these) and
the bytes it would take on the wire. Node ids are the names `torch.fx.symbolic_trace` gives, so
they match the cost graph and every plan (DESIGN §3).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any, Literal

import networkx as nx
import torch
import torch.fx as fx
from torch import nn

from common.errors import TraceError

__all__ = [
    "ValueSpec", "NodeInfo", "ModelGraph", "trace"]

SpecKind = Literal["tensor", "int", "float", "bool", "none", "size", "tuple", "list"]
_SCALAR_BYTES = {"int": 8, "float": 8, "bool": 1}


@dataclass(frozen=True)
class ValueSpec:
    """The structure of one node's output, enough to send it as tensors and rebuild it."""

    kind: SpecKind
    dtype: str = ""
    shape: tuple[int, ...] = ()
    items: tuple[ValueSpec, ...] = ()

    @classmethod
    def of(cls, value: Any) -> ValueSpec:
        if isinstance(value, torch.Tensor):
            return cls("tensor", str(value.dtype).removeprefix("torch."), tuple(value.shape))
        if isinstance(value, torch.Size):
            return cls("size", shape=(len(value),))
        if isinstance(value, bool):
            return cls("bool")
        if isinstance(value, int):
            return cls("int")
        if isinstance(value, float):
            return cls("float")
        if value is None:
            return cls("none")
        if isinstance(value, (tuple, list)):
            kind: SpecKind = "tuple" if isinstance(value, tuple) else "list"
            return cls(kind, items=tuple(cls.of(v) for v in value))
        raise TypeError(f"a node produced a {type(value).__name__}, which cannot cross a cut")

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: tensors raw, scalars as 0-d tensors, shapes as int64 vectors."""
        if self.kind == "tensor":
            numel = 1
            for d in self.shape:
                numel *= d
            return numel * torch.empty((), dtype=getattr(torch, self.dtype)).element_size()
        if self.kind == "size":
            return 8 * self.shape[0]
        if self.kind in ("tuple", "list"):
            return sum(i.nbytes for i in self.items)
        return _SCALAR_BYTES.get(self.kind, 0)

    @property
    def num_tensors(self) -> int:
        if self.kind in ("tuple", "list"):
            return sum(i.num_tensors for i in self.items)
        return 0 if self.kind == "none" else 1

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.kind == "tensor":
            out.update(dtype=self.dtype, shape=list(self.shape))
        elif self.kind == "size":
            out["len"] = self.shape[0]
        elif self.items:
            out["items"] = [i.to_json() for i in self.items]
        return out


@dataclass(frozen=True)
class NodeInfo:
    name: str
    op: str  # a short kind: conv2d, add, cat, getitem, input, get_attr, ...
    fx_op: str  # placeholder, call_module, call_function, call_method, get_attr
    inputs: tuple[str, ...]
    spec: ValueSpec

    @property
    def output_bytes(self) -> int:
        return self.spec.nbytes


@dataclass
class ModelGraph:
    """A traced model: the fx module, its annotated nodes in execution order, its fingerprint."""

    name: str
    module: fx.GraphModule
    example_inputs: tuple[torch.Tensor, ...]
    nodes: dict[str, NodeInfo]
    inputs: list[str]
    outputs: list[str]  # the nodes the model's output is built from
    fingerprint: str
    meta: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.nodes)

    @cached_property
    def dag(self) -> nx.DiGraph:
        """The node DAG in the cost-graph shape (op, output_bytes; graph: model, fingerprint, inputs)."""
        g = nx.DiGraph(model=self.name, fingerprint=self.fingerprint, inputs=list(self.inputs))
        for info in self.nodes.values():
            g.add_node(info.name, op=info.op, output_bytes=info.output_bytes)
        for info in self.nodes.values():
            for u in info.inputs:
                g.add_edge(u, info.name)
        return g


def _op_kind(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "placeholder":
        return "input"
    if node.op == "get_attr":
        return "get_attr"
    if node.op == "call_module":
        return type(modules[str(node.target)]).__name__.lower()
    if node.op == "call_method":
        return str(node.target)
    target = node.target
    return getattr(target, "__name__", str(target)).lower()


def _canon(a: Any) -> Any:
    """A JSON-able, address-free rendering of an fx argument, for the fingerprint."""
    if isinstance(a, fx.Node):
        return "%" + a.name
    if isinstance(a, (tuple, list)):
        return [type(a).__name__, [_canon(x) for x in a]]
    if isinstance(a, dict):
        return {str(k): _canon(v) for k, v in sorted(a.items(), key=lambda kv: str(kv[0]))}
    if a is None or isinstance(a, (bool, int, str)):
        return a
    if isinstance(a, float):
        return repr(a)
    if isinstance(a, slice):
        return ["slice", _canon(a.start), _canon(a.stop), _canon(a.step)]
    if isinstance(a, (torch.dtype, torch.device, torch.memory_format, torch.layout)):
        return str(a)
    if callable(a):
        return f"{getattr(a, '__module__', '')}.{getattr(a, '__qualname__', type(a).__name__)}"
    return type(a).__qualname__


def _target_key(node: fx.Node, modules: dict[str, nn.Module]) -> str:
    if node.op == "call_module":
        mod = modules[str(node.target)]
        return f"{type(mod).__qualname__}({mod.extra_repr()})"
    if node.op == "call_function":
        return _canon(node.target)
    return str(node.target)


def _structure_digest(gm: fx.GraphModule, specs: dict[str, ValueSpec]) -> str:
    modules = dict(gm.named_modules())
    doc = {
        "nodes": [
            [n.name, n.op, _target_key(n, modules), _canon(n.args), _canon(n.kwargs),
             specs[n.name].to_json() if n.name in specs else None]
            for n in gm.graph.nodes
        ],
        "params": [
            [k, list(v.shape), str(v.dtype)]
            for k, v in list(gm.named_parameters()) + list(gm.named_buffers())
        ],
    }
    blob = json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()


def _weights_digest(gm: fx.GraphModule) -> str:
    """The values of every parameter and buffer: two seeds or two weights files differ here."""
    h = hashlib.sha256()
    state = gm.state_dict(keep_vars=False)
    for name in sorted(state):
        t = state[name].detach().cpu().contiguous()
        h.update(name.encode() + b"\0" + str(t.dtype).encode() + b"\0")
        h.update(t.reshape(-1).view(torch.uint8).numpy().data if t.numel() else b"")
    return h.hexdigest()


def _fingerprint(gm: fx.GraphModule, specs: dict[str, ValueSpec]) -> str:
    """32 hex digits: 16 of the structure (graph, shapes), then 16 of the weights' values.

    Edge and worker compare whole fingerprints; the halves let `costgraph.describe_mismatch` say which
    side of the model differs.
    """
    return _structure_digest(gm, specs)[:16] + _weights_digest(gm)[:16]


class _Recorder(fx.Interpreter):
    """Runs the graph once, remembering the structure of every node's output."""

    def __init__(self, gm: fx.GraphModule) -> None:
        super().__init__(gm)
        self.specs: dict[str, ValueSpec] = {}

    def run_node(self, n: fx.Node) -> Any:
        out = super().run_node(n)
        if n.op != "output":
            self.specs[n.name] = ValueSpec.of(out)
        return out


def _symbolic_trace(model: nn.Module) -> fx.GraphModule:
    """`fx.symbolic_trace` that leaves `model` as it found it, so every trace names nodes alike.

    fx stores a tensor made inside `forward` on the root as `_tensor_constantN`, choosing the
    first free N: left there, the next trace of the same module gets `_tensor_constant1` (and
    node ids that no longer match a cut taken from the first). The GraphModule keeps its own
    copies, so the attributes are removed from the model again.
    """
    before = set(vars(model))
    try:
        return fx.symbolic_trace(model)
    finally:
        for name in set(vars(model)) - before:
            if name.startswith("_tensor_constant"):
                delattr(model, name)


def trace(
    model: nn.Module,
    example_input: torch.Tensor | tuple[torch.Tensor, ...],
    name: str | None = None,
) -> ModelGraph:
    """Trace `model` with torch.fx and annotate every node from one run on `example_input`."""
    inputs = example_input if isinstance(example_input, tuple) else (example_input,)
    try:
        gm = model if isinstance(model, fx.GraphModule) else _symbolic_trace(model)
    except Exception as exc:  # fx raises many kinds for untraceable Python
        raise TraceError(
            f"torch.fx cannot trace {type(model).__name__}: {exc}. Make the forward free of "
            "data-dependent control flow, or wrap such parts with torch.fx.wrap"
        ) from exc
    gm.eval()
    recorder = _Recorder(gm)
    try:
        with torch.no_grad():
            recorder.run(*inputs)
    except Exception as exc:
        shapes = [list(x.shape) for x in inputs]
        raise TraceError(
            f"the example input {shapes} does not fit the model: {str(exc).splitlines()[0]}; "
            "give the right shape with --input-shape"
        ) from exc
    modules = dict(gm.named_modules())
    nodes: dict[str, NodeInfo] = {}
    outputs: list[str] = []
    for n in gm.graph.nodes:
        if n.op == "output":
            outputs = [a.name for a in n.all_input_nodes]
            continue
        nodes[n.name] = NodeInfo(
            name=n.name,
            op=_op_kind(n, modules),
            fx_op=n.op,
            inputs=tuple(a.name for a in n.all_input_nodes),
            spec=recorder.specs[n.name],
        )
    return ModelGraph(
        name=name or type(model).__name__.lower(),
        module=gm,
        example_inputs=inputs,
        nodes=nodes,
        inputs=[n.name for n in gm.graph.nodes if n.op == "placeholder"],
        outputs=outputs,
        fingerprint=_fingerprint(gm, recorder.specs),
    )
