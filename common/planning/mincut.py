"""The DSL minimum e–c cut (DESIGN §4), built once per cost graph and solved many times.

DSH and the bandwidth map solve the same auxiliary graph under different weights of edge,
transfer and cloud time, so the arc structure is built once and only capacities change.

Capacities are integers (DESIGN §4: float capacities make some max-flow codes return a source side
that is not a minimum cut): finite ones are scaled so that they sum to at most 2**48, and "infinite"
is 2**49. igraph's push-relabel (C) works in doubles, which hold every such integer and every sum
of them exactly, so the cut is the exact optimum of the scaled problem; the scaling error is below
2**-48 of the total per node. It solves a 430-node model in well under a millisecond, where
networkx's pure-Python flows take 26–220 ms.

With codecs, a crossing tensor's arc costs the least, over the encodings a policy allows, of
a·encode + b·bytes + g·decode (`choice` says which one). That is still one number per tensor
for given weights, so the construction is unchanged; why the cut stays optimal over cuts and
codecs together is in `partition.dsl`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

import igraph
import networkx as nx
import numpy as np

from common.planning.costgraph import encodings

__all__ = ["CutSolver"]

_FINITE_TOTAL = 2.0**48
_INF = 2.0**49


class CutSolver:
    """min over cuts E (and codecs κ) of
    a·Σ_E e(v) + Σ_{E→C} (a·enc_κ(v) + b·bytes_κ(v) + g·dec_κ(v)) + g·Σ_C c(v)."""

    def __init__(self, g: nx.DiGraph, codecs: Collection[str] = ()) -> None:
        self.nodes: list[str] = list(g)
        index = {v: i for i, v in enumerate(self.nodes)}
        n = len(self.nodes)
        self.source, self.sink = n, n + 1
        inputs = set(g.graph["inputs"])
        self.edge_time = np.array([g.nodes[v]["edge_time_s"] for v in self.nodes], dtype=float)
        self.cloud_time = np.array([g.nodes[v]["cloud_time_s"] for v in self.nodes], dtype=float)
        self.out_bytes = np.array([g.nodes[v]["output_bytes"] for v in self.nodes], dtype=float)
        # the encodings each node's output may cross in: (n, K) tables, raw in column 0,
        # missing options cost infinity
        options = [encodings(g, v, codecs) for v in self.nodes]
        k = max(len(o) for o in options)
        self.codec_names = [[e.name for e in o] for o in options]
        self._bytes = np.full((n, k), np.inf)
        self._enc = np.zeros((n, k))
        self._dec = np.zeros((n, k))
        for i, opts in enumerate(options):
            for j, e in enumerate(opts):
                self._bytes[i, j], self._enc[i, j], self._dec[i, j] = e.bytes, e.encode_s, e.decode_s
        self.has_codecs = k > 1

        arcs: list[tuple[int, int]] = []
        e_arcs, c_arcs, t_arcs = [], [], []  # (arc index, node index)
        inf_arcs: list[int] = []
        aux = n + 2
        for v in self.nodes:
            i = index[v]
            if v in inputs:
                inf_arcs.append(len(arcs))
            else:
                c_arcs.append((len(arcs), i))  # cut when v runs on the cloud
            arcs.append((self.source, i))
            e_arcs.append((len(arcs), i))  # cut when v runs on the edge
            arcs.append((i, self.sink))
            succ = [index[w] for w in g.successors(v)]
            if len(succ) == 1:  # one consumer: the auxiliary node would add nothing
                t_arcs.append((len(arcs), i))
                arcs.append((i, succ[0]))
            elif succ:  # v -> v' pays the tensor once, however many cloud consumers
                t_arcs.append((len(arcs), i))
                arcs.append((i, aux))
                for w in succ:
                    inf_arcs.append(len(arcs))
                    arcs.append((aux, w))
                aux += 1
        for u, w in g.edges:  # no data flows back: E is closed under predecessors
            inf_arcs.append(len(arcs))
            arcs.append((index[w], index[u]))
        self._graph = igraph.Graph(n=aux, edges=arcs, directed=True)
        self._num_arcs = len(arcs)
        self._e = np.array(e_arcs, dtype=int).reshape(-1, 2)
        self._c = np.array(c_arcs, dtype=int).reshape(-1, 2)
        self._t = np.array(t_arcs, dtype=int).reshape(-1, 2)
        self._inf = np.array(inf_arcs, dtype=int)

    def _crossing(self, edge_weight: float, seconds_per_byte: float,
                  cloud_weight: float) -> tuple[np.ndarray, np.ndarray]:
        """Per node: the least weighted cost of its tensor crossing, and the option giving it."""
        if not self.has_codecs:
            return seconds_per_byte * self.out_bytes, np.zeros(len(self.nodes), dtype=int)
        cost = edge_weight * self._enc + seconds_per_byte * self._bytes + cloud_weight * self._dec
        best = np.argmin(cost, axis=1)
        return cost[np.arange(len(self.nodes)), best], best

    def choice(self, edge_weight: float, seconds_per_byte: float,
               cloud_weight: float) -> dict[str, str]:
        """The codec each node's tensor crosses in under these weights (raw where none helps)."""
        _, best = self._crossing(edge_weight, seconds_per_byte, cloud_weight)
        return {v: self.codec_names[i][best[i]] for i, v in enumerate(self.nodes)}

    def solve(
        self, edge_weight: float, seconds_per_byte: float, cloud_weight: float
    ) -> frozenset[str]:
        """The edge side of a minimum cut under these weights."""
        caps = np.zeros(self._num_arcs)
        caps[self._e[:, 0]] = edge_weight * self.edge_time[self._e[:, 1]]
        caps[self._c[:, 0]] = cloud_weight * self.cloud_time[self._c[:, 1]]
        crossing, _ = self._crossing(edge_weight, seconds_per_byte, cloud_weight)
        caps[self._t[:, 0]] = crossing[self._t[:, 1]]
        total = caps.sum()
        if total > 0:  # caps / total first: 2**48 / total overflows when total is subnormal
            caps = np.rint(caps / total * _FINITE_TOTAL)
        caps[self._inf] = _INF
        flow = self._graph.maxflow(self.source, self.sink, capacity=caps.tolist())
        side: Sequence[int] = next(p for p in flow.partition if self.source in p)
        n = len(self.nodes)
        return frozenset(self.nodes[i] for i in side if i < n)
