"""Random cost graphs (DESIGN §3) for property tests."""

from __future__ import annotations

import networkx as nx
from hypothesis import strategies as st


@st.composite
def cost_graphs(draw: st.DrawFn, min_nodes: int = 2, max_nodes: int = 14) -> nx.DiGraph:
    n = draw(st.integers(min_nodes, max_nodes))
    n_inputs = draw(st.integers(1, min(2, n - 1)))
    g = nx.DiGraph(model="random", fingerprint="f" * 32, inputs=[f"in{i}" for i in range(n_inputs)])
    names = [f"in{i}" for i in range(n_inputs)] + [f"v{i}" for i in range(n - n_inputs)]
    time = st.floats(0.0, 0.02, allow_nan=False, allow_infinity=False)
    for v in names:
        g.add_node(v, op="op", edge_time_s=draw(time), cloud_time_s=draw(time),
                   output_bytes=draw(st.integers(0, 2_000_000)))
    density = draw(st.floats(0.0, 0.6))  # 0: a tree, with the most cuts
    for j in range(n_inputs, n):
        preds = [i for i in range(j) if draw(st.floats(0, 1)) < density]
        if not preds:  # keep most nodes fed by something, as in a real model
            preds = [draw(st.integers(0, j - 1))]
        for i in preds:
            g.add_edge(names[i], names[j])
    return g


bandwidths = st.floats(1e4, 1e10).map(float)


CODEC_OPTIONS = (("zstd", False), ("int8", True), ("png", False))


@st.composite
def codec_graphs(draw: st.DrawFn, min_nodes: int = 2, max_nodes: int = 9) -> nx.DiGraph:
    """Cost graphs whose nodes list codecs: each may shrink its tensor at a price in time."""
    g = draw(cost_graphs(min_nodes, max_nodes))
    time = st.floats(0.0, 0.01, allow_nan=False, allow_infinity=False)
    for _, attrs in g.nodes(data=True):
        entries = []
        for name, lossy in CODEC_OPTIONS:
            if draw(st.booleans()):
                ratio = draw(st.floats(0.05, 1.2))
                entries.append({"name": name, "bytes": int(attrs["output_bytes"] * ratio),
                                "encode_s": draw(time), "decode_s": draw(time), "lossy": lossy})
        if entries:
            attrs["codecs"] = entries
    return g
