"""The cost graph (DESIGN §3): the planner's input, a public and stable JSON format.

networkx node-link JSON; graph attributes `model`, `fingerprint`, `inputs`; node attributes
`edge_time_s`, `cloud_time_s`, `output_bytes`, `op` and optionally `exit` and `codecs` (the
encodings a node's output may cross in besides raw, each `{"name", "bytes", "encode_s",
"decode_s", "lossy"}`); edges are data dependencies. Plain data: no torch here, so planners and
external tools can read it anywhere.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import networkx as nx

from common.errors import CostGraphError
from common.planning.profile import Profile

__all__ = ["NODE_FIELDS", "RAW", "Encoding", "encoding", "encodings", "codec_names", "allowed", "build",
           "validate", "to_json", "from_json", "load", "save", "describe_mismatch"]

NODE_FIELDS = ("edge_time_s", "cloud_time_s", "output_bytes")
RAW = "raw"  # the encoding every tensor has: its bytes as they are (common.codec.codecs.RAW)
CODEC_POLICIES = ("none", "lossless", "all")


@dataclass(frozen=True)
class Encoding:
    """One way a node's output may cross: what it costs on the link, the edge and the cloud."""

    name: str
    bytes: int
    encode_s: float = 0.0  # on the edge
    decode_s: float = 0.0  # on the cloud
    lossy: bool = False

    def seconds(self, seconds_per_byte: float, edge_weight: float = 1.0,
                cloud_weight: float = 1.0) -> float:
        return (edge_weight * self.encode_s + seconds_per_byte * self.bytes
                + cloud_weight * self.decode_s)


def encodings(g: nx.DiGraph, v: str, names: Collection[str] = ()) -> list[Encoding]:
    """Raw first, then the node's listed codecs among `names` (the ones a policy allows)."""
    attrs = g.nodes[v]
    out = [Encoding(RAW, int(attrs["output_bytes"]))]
    for c in attrs.get("codecs") or ():
        if c["name"] in names:
            out.append(Encoding(c["name"], int(c["bytes"]), float(c["encode_s"]),
                                float(c["decode_s"]), bool(c["lossy"])))
    return out


def encoding(g: nx.DiGraph, v: str, name: str) -> Encoding:
    """The encoding `name` of node v's output (raw always exists); CostGraphError if unlisted."""
    for e in encodings(g, v, (name,)):
        if e.name == name:
            return e
    raise CostGraphError(f"node {v!r} has no codec {name!r} in the cost graph")


def codec_names(g: nx.DiGraph, lossy: bool | None = None) -> frozenset[str]:
    """Every codec some node lists (only the lossy, or only the lossless, ones if asked)."""
    return frozenset(c["name"] for _, attrs in g.nodes(data=True) for c in attrs.get("codecs") or ()
                     if lossy is None or bool(c["lossy"]) == lossy)


def allowed(g: nx.DiGraph, policy: str | Collection[str]) -> frozenset[str]:
    """The codecs a plan may use: `none` (raw only), `lossless` (results stay bit-exact),
    `all`, or the names given (an operator's explicit choice, lossy ones included)."""
    if isinstance(policy, str):
        if policy == "none":
            return frozenset()
        if policy == "lossless":
            return codec_names(g, lossy=False)
        if policy == "all":
            return codec_names(g)
        raise CostGraphError(f"codec policy {policy!r}: one of {', '.join(CODEC_POLICIES)} "
                             "or a list of codec names")
    return frozenset(policy) - {RAW}


def build(
    dag: nx.DiGraph,
    edge: Profile,
    cloud: Profile,
    input_bytes: int | dict[str, int] | None = None,
) -> nx.DiGraph:
    """Combine a model DAG (`ModelGraph.dag`) with an edge and a cloud profile.

    `input_bytes` is what crossing the raw input really costs; by default an input node costs
    its tensor's bytes. Codecs come from the edge profile (sizes and encode times, measured on
    its real frames); decode times from the cloud profile, else the edge's scaled by how much
    faster the cloud runs the model.
    """
    fp = dag.graph["fingerprint"]
    edge.check(fp)
    cloud.check(fp)
    g = nx.DiGraph(
        model=dag.graph["model"],
        fingerprint=fp,
        inputs=list(dag.graph["inputs"]),
        edge_device=edge.device.key,
        cloud_device=cloud.device.key,
    )
    for v, attrs in dag.nodes(data=True):
        g.add_node(
            v,
            op=attrs["op"],
            edge_time_s=float(edge.node_times_s[v]),
            cloud_time_s=float(cloud.node_times_s[v]),
            output_bytes=int(attrs["output_bytes"]),
        )
        if attrs.get("exit") is not None:
            g.nodes[v]["exit"] = float(attrs["exit"])
    g.add_edges_from(dag.edges)
    ratio = cloud.total_s / edge.total_s if edge.total_s > 0 else 1.0
    for v, table in edge.codecs.items():
        if v in g:
            theirs = cloud.codecs.get(v, {})
            g.nodes[v]["codecs"] = [
                {"name": name, "bytes": int(c["bytes"]), "encode_s": float(c["encode_s"]),
                 "decode_s": float(theirs[name]["decode_s"] if name in theirs
                                   else c["decode_s"] * ratio),
                 "lossy": bool(c["lossy"])}
                for name, c in sorted(table.items())]
    if input_bytes is not None:
        sizes = input_bytes if isinstance(input_bytes, dict) else dict.fromkeys(g.graph["inputs"], input_bytes)
        for v, b in sizes.items():
            g.nodes[v]["output_bytes"] = int(b)
    validate(g)
    return g


def _number(v: str, key: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise CostGraphError(f"node {v!r}: {key} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0:
        raise CostGraphError(f"node {v!r}: {key} must be finite and >= 0, got {value!r}")
    return float(value)


def validate(g: nx.DiGraph) -> None:
    """Raise CostGraphError with a precise message unless `g` is a usable cost graph."""
    if not isinstance(g, nx.DiGraph) or g.is_multigraph():
        raise CostGraphError("a cost graph is a directed simple graph (networkx DiGraph)")
    if g.number_of_nodes() == 0:
        raise CostGraphError("the cost graph has no nodes")
    inputs = g.graph.get("inputs")
    if not isinstance(inputs, list) or not inputs:
        raise CostGraphError("graph attribute 'inputs' must list the input node ids")
    for v in inputs:
        if v not in g:
            raise CostGraphError(f"input {v!r} is not a node of the graph")
        if g.in_degree(v):
            raise CostGraphError(f"input {v!r} has predecessors; inputs are sources")
    if not nx.is_directed_acyclic_graph(g):
        cycle = nx.find_cycle(g)
        raise CostGraphError(f"the cost graph has a cycle: {cycle}")
    for v, attrs in g.nodes(data=True):
        for key in NODE_FIELDS:
            if key not in attrs:
                raise CostGraphError(f"node {v!r} lacks {key!r}")
            _number(v, key, attrs[key])
        if attrs.get("codecs") is not None:
            _check_codecs(v, attrs["codecs"])
        if attrs.get("exit") is not None and not 0.0 <= _number(v, "exit", attrs["exit"]) <= 1.0:
            raise CostGraphError(f"node {v!r}: exit is an accuracy in [0, 1], got {attrs['exit']!r}")


def _check_codecs(v: str, entries: Any) -> None:
    if not isinstance(entries, list):
        raise CostGraphError(f"node {v!r}: codecs must be a list of objects")
    seen: set[str] = set()
    for c in entries:
        if not isinstance(c, dict) or not isinstance(c.get("name"), str):
            raise CostGraphError(f"node {v!r}: a codec entry is an object with a string 'name'")
        name = c["name"]
        if name == RAW or name in seen:
            raise CostGraphError(f"node {v!r}: codec {name!r} listed twice (raw is implicit)")
        seen.add(name)
        for key in ("bytes", "encode_s", "decode_s"):
            if key not in c:
                raise CostGraphError(f"node {v!r}: codec {name!r} lacks {key!r}")
            _number(v, f"codec {name} {key}", c[key])
        if not isinstance(c.get("lossy"), bool):
            raise CostGraphError(f"node {v!r}: codec {name!r} needs 'lossy': true or false")


def to_json(g: nx.DiGraph) -> dict[str, Any]:
    return nx.node_link_data(g, edges="edges")


def from_json(doc: dict[str, Any]) -> nx.DiGraph:
    if not isinstance(doc, dict) or "nodes" not in doc:
        raise CostGraphError("not a node-link cost graph: expected an object with 'nodes'")
    if not doc.get("directed", True) or doc.get("multigraph", False):
        raise CostGraphError("a cost graph must be directed and not a multigraph")
    try:
        g = nx.node_link_graph(doc, directed=True, multigraph=False, edges="edges")
    except (KeyError, TypeError, nx.NetworkXError) as exc:
        raise CostGraphError(f"malformed node-link JSON: {exc!r}") from exc
    validate(g)
    return g


def load(path: str | os.PathLike[str]) -> nx.DiGraph:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise CostGraphError(f"cannot read cost graph {str(path)!r}: {exc}") from exc
    return from_json(doc)


def save(g: nx.DiGraph, path: str | os.PathLike[str]) -> Path:
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(to_json(g), indent=1))
    return out


def describe_mismatch(mine: str, theirs: str) -> str:
    """Why two fingerprints differ, and what the user should do about it."""
    if mine[:16] != theirs[:16]:
        return ("the model's structure differs (another model, input shape or torch/torchvision "
                "version): give both sides the same --model (DADS_MODEL)")
    return ("the same model with different weights: give both sides the same --weights file "
            "(DADS_WEIGHTS) and --seed (DADS_SEED)")
