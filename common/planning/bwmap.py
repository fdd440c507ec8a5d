"""The whole bandwidth → DSL plan map, so the runtime switches plans by lookup, not by solving.

With x = 8 / bandwidth (seconds per byte), a cut E costs L_E(x) = A_E + D_E·x: A_E its compute
time, D_E the bytes it sends. The optimal latency min_E L_E(x) is the lower envelope of these
lines, concave and piecewise linear in x. It is found with few min-cut solves by the classic
parametric search (Eisner & Severance): solve at both ends; where the two optimal lines cross,
solve again; if nothing lies below the crossing it is a breakpoint, else recurse on both sides
of the new line. Each segment costs about two solves.

With codecs a line is a cut with a codec for each crossing tensor: A adds their encode and
decode times, D counts their encoded bytes; the min-cut solver picks both at each x, so the
same search finds the envelope over cuts and codecs.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

import networkx as nx

from common.planning import dag
from common.planning.costgraph import encoding
from common.planning.mincut import CutSolver

__all__ = ["Segment", "BandwidthMap", "bandwidth_map"]

_REL_TOL = 1e-9


@dataclass(frozen=True)
class Segment:
    """One cut, optimal for bandwidths in [min_bps, max_bps]."""

    min_bps: float
    max_bps: float
    edge_nodes: frozenset[str]
    transfer: tuple[str, ...]
    compute_s: float  # edge + cloud time of this cut (codec times included)
    transfer_bytes: int
    codecs: tuple[tuple[str, str], ...] = ()  # (crossing node, codec), when codecs are planned

    def latency_s(self, bandwidth_bps: float) -> float:
        return self.compute_s + self.transfer_bytes * 8.0 / bandwidth_bps


@dataclass(frozen=True)
class BandwidthMap:
    segments: tuple[Segment, ...]  # by increasing bandwidth
    solves: int

    def lookup(self, bandwidth_bps: float) -> Segment:
        """The optimal cut at this bandwidth (the end segments cover what lies beyond)."""
        lows = [s.min_bps for s in self.segments]
        i = bisect.bisect_right(lows, bandwidth_bps) - 1
        return self.segments[min(max(i, 0), len(self.segments) - 1)]

    def latency_s(self, bandwidth_bps: float) -> float:
        return self.lookup(bandwidth_bps).latency_s(bandwidth_bps)

    @property
    def breakpoints_bps(self) -> list[float]:
        return [s.min_bps for s in self.segments[1:]]

    def to_json(self) -> dict[str, Any]:
        return {
            "solves": self.solves,
            "segments": [
                {"min_bps": s.min_bps, "max_bps": s.max_bps, "edge_nodes": sorted(s.edge_nodes),
                 "transfer": list(s.transfer), "compute_s": s.compute_s,
                 "transfer_bytes": s.transfer_bytes, "codecs": dict(s.codecs)}
                for s in self.segments
            ],
        }


@dataclass(frozen=True)
class _Line:
    edge: frozenset[str]
    a: float  # compute seconds
    d: float  # bytes sent
    codecs: tuple[tuple[str, str], ...] = ()

    def at(self, x: float) -> float:
        return self.a + self.d * x


def bandwidth_map(
    g: nx.DiGraph, min_bps: float = 1e3, max_bps: float = 1e11, solver: CutSolver | None = None
) -> BandwidthMap:
    """Every breakpoint of the optimal DSL latency between `min_bps` and `max_bps`."""
    if not 0 < min_bps < max_bps:
        raise ValueError("need 0 < min_bps < max_bps")
    solver = solver or CutSolver(g)
    solves = 0
    nodes = g.nodes

    def line_at(x: float) -> _Line:
        nonlocal solves
        solves += 1
        edge = solver.solve(1.0, x, 1.0)
        a = sum(nodes[v]["edge_time_s"] for v in edge)
        a += sum(d["cloud_time_s"] for v, d in nodes(data=True) if v not in edge)
        crossing = dag.transfer(g, edge)
        if not solver.has_codecs:
            return _Line(edge, a, float(sum(nodes[v]["output_bytes"] for v in crossing)))
        choice = solver.choice(1.0, x, 1.0)
        chosen = [encoding(g, v, choice[v]) for v in crossing]
        a += sum(e.encode_s + e.decode_s for e in chosen)
        return _Line(edge, a, float(sum(e.bytes for e in chosen)),
                     tuple((v, choice[v]) for v in crossing))

    def envelope(left: _Line, right: _Line) -> list[tuple[float, _Line]]:
        """Lines between `left` (small x) and `right`, each with the x where it starts."""
        if left.d <= right.d:  # the same line (or parallel): nothing in between
            return []
        x = (right.a - left.a) / (left.d - right.d)
        mid = line_at(x)
        if mid.at(x) >= left.at(x) - _REL_TOL * max(abs(left.at(x)), 1e-15):
            return [(x, right)]
        return envelope(left, mid) + envelope(mid, right)

    x_lo, x_hi = 8.0 / max_bps, 8.0 / min_bps
    first, last = line_at(x_lo), line_at(x_hi)
    pieces = [(x_lo, first)] + envelope(first, last)  # ends with `last` unless they coincide
    # x grows as bandwidth falls: emit by increasing bandwidth
    segments = []
    for i in range(len(pieces) - 1, -1, -1):
        x_start, line = pieces[i]
        x_end = pieces[i + 1][0] if i + 1 < len(pieces) else x_hi
        segments.append(Segment(
            min_bps=8.0 / x_end if x_end > 0 else 0.0,
            max_bps=8.0 / x_start,
            edge_nodes=line.edge,
            transfer=tuple(dag.transfer(g, line.edge)),
            compute_s=line.a,
            transfer_bytes=int(line.d),
            codecs=line.codecs,
        ))
    segments = [s for s in segments if s.min_bps < s.max_bps]
    return BandwidthMap(tuple(segments), solves)
