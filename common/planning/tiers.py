"""Placement over an ordered chain of tiers (Scission): device → edge server → cloud, or any chain.

Each node runs on one tier; data only flows forward (a node's tier is at least its inputs');
a tensor is paid once on every link it crosses. With T tiers, a node's time on tier t is
`times[t][v]`, link j joins tier j and j+1 at `bandwidths_bps[j]`, and a placement τ costs

    L(τ) = Σ_v times[τ(v)][v] + Σ_j Σ_{v: τ(v) ≤ j < max_{w ∈ succ(v)} τ(w)} bytes(v) / B_j.

**Exact by one minimum cut** (Ishikawa's layered construction, with DSL's tensor gadget per
layer): for every node v and link j a vertex (v, j), on the source side iff τ(v) ≤ j.
- chain: s → (v, T-2) with capacity times[T-1][v]; (v, j) → (v, j-1) with times[j][v];
  (v, 0) → t with times[0][v]. Exactly one chain arc is cut, the one at τ(v), because
- (v, j-1) → (v, j) is infinite: τ(v) ≤ j-1 implies τ(v) ≤ j (the layers nest);
- for every data edge (u, w) and layer j, (w, j) → (u, j) is infinite: τ(u) ≤ τ(w);
- per layer j, DSL's gadget: (v, j) → v'_j with bytes(v) / B_j, v'_j → (w, j) infinite for
  each consumer w: cut exactly when v is at or before tier j and some consumer after it.
Every cut of finite value is therefore a valid placement and its value is L(τ), and every
placement gives such a cut: the minimum cut is the optimal placement. With two tiers this is
DSL's graph exactly (`tests/test_tiers.py` checks both, and three tiers against brute force).
Pins and exclusions are infinite arcs: a node pinned to tier t has s → (v, t) and
(v, t-1) → t; an excluded tier makes its chain arc infinite for every node, a forbidden
(node, tier) only that node's.

**Codecs on the first link** (the device's uplink, where encoding pays): a tensor that crosses
link 0 may cross in any codec the policy allows (`TierProblem.codecs`), paying its encode time
on the first tier, its bytes on the link and its decode time on the next tier, which forwards
it raw on any later link. In L(τ) each crossing tensor's codec appears in its own term only,
so min over codecs of L(τ, κ) is L(τ) with bytes(v)/B_0 replaced by m(v) = min_k (enc_k +
bytes_k/B_0 + dec_k): the layer-0 gadget's arc carries m(v), and the minimum cut is still the
optimum over placements and codecs together (DSL's argument, `partition.dsl`; checked against
brute force over placements x codecs).

**Ranked placements** (`ranked`, Scission's ranked list, exact): Lawler's k-best scheme. The
best placement τ* of a subproblem (its pins and forbidden pairs) splits the rest of it into n
disjoint subproblems: the i-th pins nodes 1..i-1 as τ* has them and forbids node i its τ*
tier. Each is again one minimum cut; a heap of their optima yields the placements in order of
latency, each once.

Plain data and numpy; igraph's max-flow, as `mincut` (integer-scaled capacities).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import igraph
import networkx as nx
import numpy as np

from common.errors import CostGraphError
from common.planning import costgraph, dag
from common.planning.costgraph import RAW, Encoding
from common.planning.partition import Plan, Prediction
from common.planning.units import format_bytes

__all__ = ["TierProblem", "Placement", "Limits", "first_link", "cost", "solve", "iter_ranked",
           "ranked",
           "memory_bytes", "best_within", "brute_force", "to_plan", "placement_of",
           "bottleneck_s", "chain_splits", "max_throughput", "brute_force_throughput"]

_FINITE_TOTAL = 2.0**48
_INF = 2.0**49


@dataclass(frozen=True)
class TierProblem:
    """A DAG (cost-graph node ids, `output_bytes`, graph attribute `inputs`), each tier's
    per-node times, each link's bandwidth (bit/s), and the user's constraints."""

    g: nx.DiGraph
    tiers: tuple[str, ...]  # names, in data-flow order
    times: tuple[Mapping[str, float], ...]  # per tier: node -> seconds
    bandwidths_bps: tuple[float, ...]  # per link: tiers[j] -> tiers[j + 1]
    pins: Mapping[str, int] = field(default_factory=dict)  # node -> tier index
    excluded: frozenset[int] = frozenset()
    forbidden: frozenset[tuple[str, int]] = frozenset()  # (node, tier) pairs it may not use
    codecs: frozenset[str] = frozenset()  # codecs the first link may use (a policy's choice)

    def __post_init__(self) -> None:
        t = len(self.tiers)
        if t < 2:
            raise CostGraphError("a placement needs at least two tiers")
        if len(self.times) != t or len(self.bandwidths_bps) != t - 1:
            raise CostGraphError(f"{t} tiers need {t} time tables and {t - 1} link bandwidths")
        if any(not (b > 0) for b in self.bandwidths_bps):
            raise CostGraphError("every link's bandwidth must be > 0")
        for v, tier in self.pins.items():
            if v not in self.g or not 0 <= tier < t:
                raise CostGraphError(f"pin {v!r} -> tier {tier}: no such node or tier")
            if tier in self.excluded:
                raise CostGraphError(f"{v!r} is pinned to {self.tiers[tier]}, which is excluded")


@dataclass(frozen=True)
class Placement:
    tier_of: dict[str, int]
    latency_s: float
    compute_s: tuple[float, ...]  # per tier (encoding on the first, decoding on the second)
    link_bytes: tuple[int, ...]  # per link, as sent (encoded on the first)
    codecs: dict[str, str] = field(default_factory=dict)  # node -> codec on the first link

    def nodes_on(self, tier: int) -> list[str]:
        return sorted(v for v, t in self.tier_of.items() if t == tier)


def _pinned(p: TierProblem) -> dict[str, int]:
    pins = dict(p.pins)
    for v in p.g.graph.get("inputs", []):
        if pins.setdefault(v, 0) != 0:
            raise CostGraphError(f"input {v!r} is read on the first tier; it cannot be pinned "
                                 f"to {p.tiers[pins[v]]}")
    return pins


def first_link(p: TierProblem, v: str) -> Encoding:
    """How v's output crosses the first link: the quickest of raw and the codecs allowed, at
    that link's rate (encoded on the first tier, decoded on the second)."""
    spb = 8.0 / p.bandwidths_bps[0]
    return min(costgraph.encodings(p.g, v, p.codecs), key=lambda e: e.seconds(spb))


def cost(p: TierProblem, tier_of: Mapping[str, int]) -> Placement:
    """L(τ) of a placement, each tensor on the first link in its best codec (checked: forward
    flow, pins, exclusions)."""
    g = p.g
    for u, w in g.edges:
        if tier_of[u] > tier_of[w]:
            raise CostGraphError(f"{u!r} on {p.tiers[tier_of[u]]} feeds {w!r} on an earlier tier")
    compute = [0.0] * len(p.tiers)
    for v, t in tier_of.items():
        compute[t] += float(p.times[t][v])
    links = [0] * (len(p.tiers) - 1)
    codecs: dict[str, str] = {}
    for v in g:
        last = max((tier_of[w] for w in g.successors(v)), default=tier_of[v])
        for j in range(tier_of[v], last):
            if j == 0:
                e = first_link(p, v)
                links[0] += e.bytes
                compute[0] += e.encode_s
                compute[1] += e.decode_s
                if e.name != RAW:
                    codecs[v] = e.name
            else:
                links[j] += int(g.nodes[v]["output_bytes"])
    total = sum(compute) + sum(b * 8.0 / bw for b, bw in zip(links, p.bandwidths_bps, strict=True))
    return Placement(dict(tier_of), total, tuple(compute), tuple(links), codecs)


def solve(p: TierProblem) -> Placement:
    """The minimum-latency placement (exact: one max-flow on the layered graph)."""
    g, t = p.g, len(p.tiers)
    pins = _pinned(p)
    nodes = list(g)
    layers = t - 1
    vid = {(v, j): i * layers + j for i, v in enumerate(nodes) for j in range(layers)}
    s, sink = len(vid), len(vid) + 1
    nxt = sink + 1
    arcs: list[tuple[int, int]] = []
    caps: list[float] = []
    inf: list[int] = []

    def arc(a: int, b: int, cap: float | None) -> None:
        if cap is None:
            inf.append(len(arcs))
            caps.append(0.0)
        else:
            caps.append(cap)
        arcs.append((a, b))

    for v in nodes:
        def tier_cap(tier: int, v: str = v) -> float | None:
            if tier in p.excluded or (v, tier) in p.forbidden:
                return None
            return float(p.times[tier][v])

        arc(s, vid[v, layers - 1], tier_cap(t - 1))
        for j in range(layers - 1, 0, -1):
            arc(vid[v, j], vid[v, j - 1], tier_cap(j))
        arc(vid[v, 0], sink, tier_cap(0))
        for j in range(1, layers):
            arc(vid[v, j - 1], vid[v, j], None)
        if v in pins:
            tier = pins[v]
            if tier < layers:
                arc(s, vid[v, tier], None)
            if tier > 0:
                arc(vid[v, tier - 1], sink, None)
    for u, w in g.edges:
        for j in range(layers):
            arc(vid[w, j], vid[u, j], None)
    for v in nodes:
        succ = list(g.successors(v))
        if not succ:
            continue
        for j in range(layers):
            arc(vid[v, j], nxt, first_link(p, v).seconds(8.0 / p.bandwidths_bps[0]) if j == 0
                else g.nodes[v]["output_bytes"] * 8.0 / p.bandwidths_bps[j])
            for w in succ:
                arc(nxt, vid[w, j], None)
            nxt += 1
    c = np.array(caps)
    total = c.sum()
    if total > 0:
        c = np.rint(c / total * _FINITE_TOTAL)
    c[np.array(inf, dtype=int)] = _INF
    flow = igraph.Graph(n=nxt, edges=arcs, directed=True).maxflow(s, sink, capacity=c.tolist())
    if flow.value >= _INF:
        raise CostGraphError("the constraints leave no valid placement (a pin on a node whose "
                             "inputs are pinned later, or every tier a node could use excluded)")
    side = set(next(part for part in flow.partition if s in part))
    tier_of = {v: next((j for j in range(layers) if vid[v, j] in side), layers) for v in nodes}
    return cost(p, tier_of)


def ranked(p: TierProblem, count: int) -> list[Placement]:
    """The `count` best distinct placements, best first (fewer if fewer exist)."""
    return list(itertools.islice(iter_ranked(p), count))


def iter_ranked(p: TierProblem) -> Iterator[Placement]:
    """Every valid placement, in order of latency, each once (lazily)."""
    import dataclasses
    import heapq

    order = list(nx.topological_sort(p.g))
    heap: list[tuple[float, int, Placement, TierProblem]] = []
    tie = itertools.count()

    def push(sub: TierProblem) -> None:
        try:
            best = solve(sub)
        except CostGraphError:
            return  # this part of the space is empty
        heapq.heappush(heap, (best.latency_s, next(tie), best, sub))

    push(p)
    while heap:
        _, _, best, sub = heapq.heappop(heap)
        yield best
        fixed = dict(sub.pins)
        for v in order:
            if v in fixed:
                continue
            push(dataclasses.replace(sub, pins=dict(fixed),
                                     forbidden=sub.forbidden | {(v, best.tier_of[v])}))
            fixed[v] = best.tier_of[v]


@dataclass(frozen=True)
class Limits:
    """What a min cut cannot express: a tier's memory, a link's bytes per frame."""

    memory_bytes: Mapping[int, int] = field(default_factory=dict)  # tier -> bytes
    link_bytes: Mapping[int, int] = field(default_factory=dict)  # link -> bytes per frame

    def broken(self, p: TierProblem, placement: Placement) -> list[str]:
        """Each limit this placement breaks, in words (empty: it fits)."""
        out = []
        for tier, limit in self.memory_bytes.items():
            need = memory_bytes(p, placement, tier)
            if need > limit:
                out.append(f"{p.tiers[tier]} needs {format_bytes(need)} of memory (--memory "
                           f"{p.tiers[tier]}={format_bytes(limit)})")
        for link, limit in self.link_bytes.items():
            if placement.link_bytes[link] > limit:
                out.append(f"link {p.tiers[link]}->{p.tiers[link + 1]} carries "
                           f"{format_bytes(placement.link_bytes[link])} a frame (--link-budget "
                           f"{link}={format_bytes(limit)})")
        return out


def memory_bytes(p: TierProblem, placement: Placement, tier: int) -> int:
    """A tier's memory for its nodes: their parameters (node attribute `param_bytes`, 0 if
    absent) and the largest working set of one of them (its inputs and its output)."""
    g = p.g
    mine = [v for v, t in placement.tier_of.items() if t == tier]
    params = sum(int(g.nodes[v].get("param_bytes", 0)) for v in mine)
    work = max((int(g.nodes[v]["output_bytes"]) + sum(int(g.nodes[u]["output_bytes"])
                                                       for u in g.predecessors(v))
                for v in mine), default=0)
    return params + work


def best_within(p: TierProblem, limits: Limits, max_candidates: int = 100_000) -> Placement:
    """The minimum-latency placement within the limits, exact: the ranked placements are
    walked in order of latency and the first that fits is the optimum. Gives up, naming what
    binds, after `max_candidates`."""
    last: list[str] = []
    for count, placement in enumerate(iter_ranked(p)):
        if count >= max_candidates:
            raise CostGraphError(f"none of the {max_candidates} best placements fits the limits; "
                                 f"the last one: {'; '.join(last)}")
        last = limits.broken(p, placement)
        if not last:
            return placement
    raise CostGraphError(f"no placement fits the limits; the slowest tried: {'; '.join(last)}"
                         if last else "the constraints leave no valid placement")


def brute_force(p: TierProblem, limit: int = 2_000_000) -> Placement:
    """Every forward placement honouring the constraints; small graphs only (tests)."""
    pins = _pinned(p)
    nodes = list(nx.topological_sort(p.g))
    allowed = [t for t in range(len(p.tiers)) if t not in p.excluded]
    best = None
    for count, combo in enumerate(itertools.product(allowed, repeat=len(nodes))):
        if count >= limit:
            raise CostGraphError("brute force: too many placements")
        tier_of = dict(zip(nodes, combo, strict=True))
        if any(tier_of[v] != t for v, t in pins.items()):
            continue
        if any((v, t) in p.forbidden for v, t in tier_of.items()):
            continue
        if any(tier_of[u] > tier_of[w] for u, w in p.g.edges):
            continue
        cand = cost(p, tier_of)
        if best is None or cand.latency_s < best.latency_s:
            best = cand
    if best is None:
        raise CostGraphError("the constraints leave no valid placement")
    return best



def to_plan(p: TierProblem, placement: Placement, algorithm: str = "tiers",
            workers: int = 1) -> Plan:
    """The plan document of a placement: the first tier's nodes as `edge_nodes` (what an edge
    agent runs and sends, as in a two-tier plan), each middle tier's in `tier_nodes`.
    Throughput: the slowest of the tiers (the last shared by `workers`) and the links."""
    edge = frozenset(placement.nodes_on(0))
    transfer = tuple(dag.transfer(p.g, edge))
    links_s = [b * 8.0 / bw for b, bw in zip(placement.link_bytes, p.bandwidths_bps, strict=True)]
    stages = [*placement.compute_s[:-1], placement.compute_s[-1] / max(1, workers), *links_s]
    slowest = max(stages, default=0.0)
    return Plan(
        algorithm=algorithm,
        fingerprint=str(p.g.graph.get("fingerprint", "")),
        edge_nodes=tuple(sorted(edge)),
        transfer=transfer,
        predicted=Prediction(placement.compute_s[0], sum(links_s), sum(placement.compute_s[1:]),
                             placement.latency_s, 1.0 / slowest if slowest > 0 else 0.0),
        bandwidth_bps=float(p.bandwidths_bps[0]),
        workers=workers,
        transfer_bytes=int(placement.link_bytes[0]),
        codecs={v: placement.codecs.get(v, RAW) for v in transfer} if placement.codecs else {},
        tiers=tuple(p.tiers),
        tier_nodes=tuple(tuple(placement.nodes_on(t)) for t in range(1, len(p.tiers) - 1)),
        extra={"link_bytes": list(placement.link_bytes),
               "tier_s": [round(x, 6) for x in placement.compute_s]},
    )


def placement_of(p: TierProblem, plan: Plan) -> Placement:
    """A plan's placement, costed under `p` (e.g. the plan in force, under today's rates)."""
    tier_of = {v: len(p.tiers) - 1 for v in p.g}
    for t, nodes in reversed(list(enumerate([plan.edge_nodes, *plan.tier_nodes]))):
        for v in nodes:
            if v not in tier_of:
                raise CostGraphError(f"the placement names {v!r}, which the model lacks")
            tier_of[v] = t
    return cost(p, tier_of)


def bottleneck_s(p: TierProblem, placement: Placement, workers: int = 1) -> float:
    """A pipelined chain's period: its slowest stage, every tier and every link (the last
    tier shared by `workers`); 1 / throughput."""
    compute = list(placement.compute_s)
    compute[-1] /= max(1, workers)
    links = [b * 8.0 / bw for b, bw in zip(placement.link_bytes, p.bandwidths_bps, strict=True)]
    return max(compute + links)


def _scaled(p: TierProblem, scales: tuple[float, ...]) -> TierProblem:
    import dataclasses

    return dataclasses.replace(p, times=tuple({v: t * s for v, t in times.items()}
                                              for times, s in zip(p.times, scales, strict=True)))


def chain_splits(p: TierProblem, workers: int = 1, count: int = 32) -> list[Placement]:
    """Placements whose tiers are consecutive runs of one topological order (Neurosurgeon's
    chain view of the DAG), the `count` of least bottleneck (two or three tiers; none beyond).

    Why: scaling each tier's times uniformly, as `max_throughput`'s search does, cannot split
    the model between two tiers that are equally fast (each scaled solve puts every node on the
    cheaper one), yet that pipeline is what heavy load needs. Every split of the order is
    scored at once from prefix sums (times, and the bytes crossing each boundary, raw), the
    best are costed exactly (codecs, constraints) by `cost`."""
    g, t = p.g, len(p.tiers)
    if t > 3 or len(g) == 0:
        return []
    order = list(nx.topological_sort(g))
    pos = {v: i for i, v in enumerate(order)}
    n = len(order)
    pre = [np.concatenate([[0.0], np.cumsum([float(p.times[j][v]) for v in order])])
           for j in range(t)]
    cross = np.zeros(n + 2)  # cross[i]: bytes produced before boundary i and read at or after it
    for v in order:
        last = max((pos[w] for w in g.successors(v)), default=pos[v])
        if last > pos[v]:
            cross[pos[v] + 1] += g.nodes[v]["output_bytes"]
            cross[last + 1] -= g.nodes[v]["output_bytes"]
    cross = np.cumsum(cross)[: n + 1]
    first = 1 + max((pos[v] for v in g.graph.get("inputs", [])), default=-1)
    k = max(1, workers)
    a = np.arange(max(first, 0), n + 1)
    if t == 2:
        pairs = np.stack([a, a], axis=1)
    else:
        aa, bb = np.meshgrid(a, a, indexing="ij")
        keep = bb >= aa
        pairs = np.stack([aa[keep], bb[keep]], axis=1)
    ia, ib = pairs[:, 0], pairs[:, 1]
    stages = [pre[0][ia], cross[ia] * 8.0 / p.bandwidths_bps[0]]
    if t == 3:
        stages += [pre[1][ib] - pre[1][ia], cross[ib] * 8.0 / p.bandwidths_bps[1]]
    stages.append((pre[t - 1][n] - pre[t - 1][ib]) / k)
    period = np.max(np.stack(stages), axis=0)
    pins = _pinned(p)
    out = []
    for i in np.argsort(period, kind="stable"):
        cut_a, cut_b = int(ia[i]), int(ib[i])
        tier_of = {v: 0 if pos[v] < cut_a else (1 if pos[v] < cut_b else t - 1) for v in order}
        if any(tier_of[v] != tier for v, tier in pins.items()) or any(
                tier in p.excluded or (v, tier) in p.forbidden for v, tier in tier_of.items()):
            continue
        out.append(cost(p, tier_of))
        if len(out) >= count:
            break
    return out


def max_throughput(p: TierProblem, workers: int = 1, grid: int = 7, span_log2: float = 6.0,
                   rounds: int = 4) -> Placement:
    """DSH over tiers: the placement with the smallest bottleneck (`bottleneck_s`) that scaled
    minimum cuts find. The seed is the latency solve with the last tier's times over `workers`:
    its sum of stages is minimal, and the bottleneck is at least the sum over the 2T - 1
    stages, so it is a (2T - 1)-approximation; the plain latency placement is a seed too, so
    the result is never worse than it, and so are the best splits of a topological order
    (`chain_splits`: pipelines over equally fast tiers, which scaling cannot find). Then coordinate search over each tier's scale (log2
    grid, narrowed each round), every candidate judged unscaled; the best one found is
    returned (`tests/test_tiers.py` checks both bounds against brute force)."""
    t = len(p.tiers)
    base = [1.0] * (t - 1) + [1.0 / max(1, workers)]
    def unscaled(scales: tuple[float, ...]) -> Placement:  # judged on the real times
        return cost(p, solve(_scaled(p, scales)).tier_of)

    best = min((unscaled(tuple(base)), solve(p), *chain_splits(p, workers)),
               key=lambda x: (bottleneck_s(p, x, workers), x.latency_s))
    logs = [0.0] * t
    span = span_log2
    offsets = np.linspace(-1.0, 1.0, grid) if grid > 1 else np.zeros(1)
    for _ in range(rounds):
        for dim in range(t):
            centre = logs[dim]
            for off in offsets:
                trial = list(logs)
                trial[dim] = centre + off * span
                cand = unscaled(tuple(b * 2.0**x for b, x in zip(base, trial, strict=True)))
                if (bottleneck_s(p, cand, workers), cand.latency_s) < (
                        bottleneck_s(p, best, workers), best.latency_s):
                    best, logs = cand, trial
        span /= 2.0
    return best


def brute_force_throughput(p: TierProblem, workers: int = 1) -> float:
    """The smallest bottleneck over every placement (small graphs only: tests)."""
    pins = _pinned(p)
    nodes = list(nx.topological_sort(p.g))
    allowed = [t for t in range(len(p.tiers)) if t not in p.excluded]
    best = float("inf")
    for combo in itertools.product(allowed, repeat=len(nodes)):
        tier_of = dict(zip(nodes, combo, strict=True))
        if any(tier_of[v] != t for v, t in pins.items()) or any(
                (v, t) in p.forbidden for v, t in tier_of.items()) or any(
                tier_of[u] > tier_of[w] for u, w in p.g.edges):
            continue
        best = min(best, bottleneck_s(p, cost(p, tier_of), workers))
    return best
