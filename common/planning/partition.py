"""Planning: pure functions from a cost graph (DESIGN §3) to a Plan (DESIGN §4, §7).

Each algorithm takes a networkx DiGraph in the cost-graph format and `bandwidth_bps` (bit/s; the
formulas use bytes/s = bandwidth_bps / 8), and `workers` (k cloud workers) where it matters.
No torch, no I/O, no clock: the planner service stamps `plan_id` and `created_at`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import networkx as nx
import numpy as np

from common.errors import CostGraphError
from common.planning import dag
from common.planning.costgraph import validate
from common.planning.mincut import CutSolver

__all__ = [
    "ALGORITHMS", "Prediction", "Plan", "evaluate", "make_plan", "dsl", "dsh",
    "exact_throughput", "neurosurgeon", "edge_only", "cloud_only", "brute_force", "solve",
    "supersedes",
]

BRUTE_FORCE_MAX_NODES = 30
BRUTE_FORCE_MAX_CUTS = 2_000_000


@dataclass(frozen=True)
class Prediction:
    edge_s: float
    transfer_s: float
    cloud_s: float  # one frame on one worker
    latency_s: float
    throughput_fps: float  # pipelined, cloud stage shared by k workers

    @property
    def bottleneck_s(self) -> float:
        return 1.0 / self.throughput_fps if self.throughput_fps > 0 else math.inf


@dataclass(frozen=True)
class Plan:
    """A partition decision; `to_json` is the DESIGN §3 plan document."""

    algorithm: str
    fingerprint: str
    edge_nodes: tuple[str, ...]  # sorted
    transfer: tuple[str, ...]  # graph order = wire order
    predicted: Prediction
    bandwidth_bps: float
    workers: int = 1
    transfer_bytes: int = 0
    plan_id: int = 0
    created_at: float = 0.0
    epoch: int = 0  # the issuing planner's run: ids restart with a planner, epochs do not
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def stamped(self, plan_id: int, created_at: float, epoch: int = 0) -> Plan:
        return replace(self, plan_id=plan_id, created_at=created_at, epoch=epoch)

    @property
    def key(self) -> tuple[int, int]:
        """What names a plan everywhere: (epoch, plan_id). A restarted planner cannot collide."""
        return (self.epoch, self.plan_id)

    def to_json(self) -> dict[str, Any]:
        doc = asdict(self)
        doc["edge_nodes"] = list(self.edge_nodes)
        doc["transfer"] = list(self.transfer)
        if not self.extra:
            doc.pop("extra")
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Plan:
        body = dict(doc)
        body["predicted"] = Prediction(**body["predicted"])
        body["edge_nodes"] = tuple(body["edge_nodes"])
        body["transfer"] = tuple(body["transfer"])
        return cls(**body)


def supersedes(new: tuple[int, int], current: tuple[int, int] | None) -> bool:
    """Whether a plan keyed `new` (epoch, id) replaces the one in force.

    A restarted planner counts ids from 1 again but under a newer epoch (its start time in ms),
    so its plans win over the dead planner's; within one epoch, the higher id wins.
    """
    return current is None or new > current


def _check_inputs(g: nx.DiGraph, bandwidth_bps: float, workers: int) -> None:
    validate(g)
    if not (isinstance(bandwidth_bps, (int, float)) and math.isfinite(bandwidth_bps)
            and bandwidth_bps > 0):
        raise CostGraphError(f"bandwidth must be a positive, finite bit rate, got {bandwidth_bps!r}")
    if not isinstance(workers, int) or workers < 1:
        raise CostGraphError(f"workers must be a whole number >= 1, got {workers!r}")


def evaluate(g: nx.DiGraph, edge: Iterable[str], bandwidth_bps: float, workers: int = 1) -> Prediction:
    """DESIGN §4 latency L(E) and pipelined throughput T(E) of one cut, with unscaled times."""
    edge = frozenset(edge)
    nodes = g.nodes
    edge_s = sum(nodes[v]["edge_time_s"] for v in edge)
    cloud_s = sum(d["cloud_time_s"] for v, d in nodes(data=True) if v not in edge)
    sent = sum(nodes[v]["output_bytes"] for v in dag.transfer(g, edge))
    transfer_s = sent * 8.0 / bandwidth_bps
    worst = max(edge_s, transfer_s, cloud_s / workers)
    return Prediction(edge_s, transfer_s, cloud_s, edge_s + transfer_s + cloud_s,
                      1.0 / worst if worst > 0 else math.inf)


def make_plan(
    g: nx.DiGraph, edge: Iterable[str], bandwidth_bps: float, algorithm: str, workers: int = 1,
    **extra: Any,
) -> Plan:
    edge = dag.check_cut(g, edge)
    transfer = dag.transfer(g, edge)
    return Plan(
        algorithm=algorithm,
        fingerprint=str(g.graph.get("fingerprint", "")),
        edge_nodes=tuple(sorted(edge)),
        transfer=tuple(transfer),
        predicted=evaluate(g, edge, bandwidth_bps, workers),
        bandwidth_bps=float(bandwidth_bps),
        workers=workers,
        transfer_bytes=int(sum(g.nodes[v]["output_bytes"] for v in transfer)),
        extra=extra,
    )


def _better(a: Prediction, b: Prediction | None, objective: str) -> bool:
    if b is None:
        return True
    key = (lambda p: (p.latency_s, p.bottleneck_s)) if objective == "latency" else (
        lambda p: (p.bottleneck_s, p.latency_s))
    return key(a) < key(b)


# --- DSL and DSH -----------------------------------------------------------------------------


def dsl(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1, *,
        solver: CutSolver | None = None) -> Plan:
    """DADS light load: the minimum e–c cut, i.e. the cut of least per-frame latency."""
    _check_inputs(g, bandwidth_bps, workers)
    solver = solver or CutSolver(g)
    edge = solver.solve(1.0, 8.0 / bandwidth_bps, 1.0)
    return make_plan(g, edge, bandwidth_bps, "dsl", workers)


def dsh(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1, *, grid: int = 9,
        span_log2: float = 8.0, max_rounds: int = 12, solver: CutSolver | None = None) -> Plan:
    """DADS heavy load: minimise the pipeline bottleneck max(T_e, T_t, T_c / k).

    The paper's Algorithm 2, with its printed defects avoided: a bounded log-spaced grid of
    scaling factors (edge × α, cloud × γ/k, transfer × 1) around the best point found, narrowed
    each round while the best improves; the best cut (not the last) is returned, every candidate
    judged with the unscaled times. The grid's centre α = γ = 1 is DSL on (e, t, c/k), whose
    bottleneck is at most 3 × optimal, so the result is a 3-approximation; plain DSL is a seed
    too, so DSH never has a worse bottleneck than DSL.
    """
    _check_inputs(g, bandwidth_bps, workers)
    if grid < 1:
        raise ValueError("grid must be >= 1")
    solver = solver or CutSolver(g)
    spb = 8.0 / bandwidth_bps
    seen: dict[frozenset[str], Prediction] = {}

    def score(edge: frozenset[str]) -> Prediction:
        if edge not in seen:
            seen[edge] = evaluate(g, edge, bandwidth_bps, workers)
        return seen[edge]

    # Seeds: DSL on (e, t, c/k), the 3-approximation, and plain DSL on (e, t, c), so that DSH
    # is never worse than the latency plan whatever k is.
    best_edge = solver.solve(1.0, spb, 1.0 / workers)
    best, centre, span, solves = score(best_edge), (0.0, 0.0), span_log2, 2
    plain = solver.solve(1.0, spb, 1.0)
    if _better(score(plain), best, "throughput"):
        best, best_edge = score(plain), plain
    offsets = np.linspace(-1.0, 1.0, grid) if grid > 1 else np.zeros(1)
    for _ in range(max_rounds):
        improved = False
        round_best = centre
        for da in offsets:
            for dg in offsets:
                la, lg = centre[0] + da * span, centre[1] + dg * span
                edge = solver.solve(2.0**la, spb, 2.0**lg / workers)
                solves += 1
                pred = score(edge)
                if _better(pred, best, "throughput"):
                    best, best_edge, round_best, improved = pred, edge, (la, lg), True
        if not improved:
            break
        centre, span = round_best, span / 2
    return make_plan(g, best_edge, bandwidth_bps, "dsh", workers, solves=solves,
                     distinct_cuts=len(seen))


def exact_throughput(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1, *,
                     time_limit_s: float = 120.0) -> Plan:
    """The throughput-optimal cut, by an integer program solved with HiGHS (via scipy).

    x_v = 1 when v runs on the edge, y_v >= x_v - x_w when v's tensor crosses to consumer w;
    minimise z subject to z >= Σ e x, z >= Σ t y, z >= Σ c (1 - x) / k, closure x_u >= x_w.
    Ties on the bottleneck are then broken towards lower latency by a second, exact solve.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_array

    _check_inputs(g, bandwidth_bps, workers)
    nodes = list(g)
    n = len(nodes)
    index = {v: i for i, v in enumerate(nodes)}
    e = np.array([g.nodes[v]["edge_time_s"] for v in nodes])
    c = np.array([g.nodes[v]["cloud_time_s"] for v in nodes]) / workers
    t = np.array([g.nodes[v]["output_bytes"] for v in nodes]) * 8.0 / bandwidth_bps
    scale = max(e.max(initial=0), c.max(initial=0), t.max(initial=0)) or 1.0
    e, c, t = e / scale, c / scale, t / scale
    z = 2 * n  # variables: x (n), y (n), z
    rows, cols, vals, ub = [], [], [], []

    def row(entries: list[tuple[int, float]], upper: float) -> None:
        r = len(ub)
        for col, val in entries:
            rows.append(r)
            cols.append(col)
            vals.append(val)
        ub.append(upper)

    for u, w in g.edges:
        iu, iw = index[u], index[w]
        row([(iw, 1.0), (iu, -1.0)], 0.0)  # closure: x_w <= x_u
        row([(iu, 1.0), (iw, -1.0), (n + iu, -1.0)], 0.0)  # y_u >= x_u - x_w
    row([(i, e[i]) for i in range(n)] + [(z, -1.0)], 0.0)
    row([(n + i, t[i]) for i in range(n)] + [(z, -1.0)], 0.0)
    row([(i, -c[i]) for i in range(n)] + [(z, -1.0)], -float(c.sum()))
    a = coo_array((vals, (rows, cols)), shape=(len(ub), z + 1)).tocsr()
    lower = np.zeros(z + 1)
    for v in g.graph["inputs"]:
        lower[index[v]] = 1.0
    upper = np.ones(z + 1)
    upper[z] = np.inf
    integrality = np.zeros(z + 1)
    integrality[:n] = 1
    cost = np.zeros(z + 1)
    cost[z] = 1.0
    options = {"time_limit": time_limit_s, "mip_rel_gap": 1e-9}
    res = milp(cost, constraints=LinearConstraint(a, -np.inf, np.array(ub)),
               integrality=integrality, bounds=Bounds(lower, upper), options=options)
    if res.x is None:
        raise RuntimeError(f"exact throughput solver failed: {res.message}")
    edge = {nodes[i] for i in range(n) if res.x[i] > 0.5}
    optimal = res.status == 0
    return make_plan(g, dag.ancestors_cut(g, edge), bandwidth_bps, "exact", workers,
                     optimal=optimal, solver_status=str(res.message))


# --- baselines -------------------------------------------------------------------------------


def edge_only(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1) -> Plan:
    _check_inputs(g, bandwidth_bps, workers)
    return make_plan(g, g.nodes, bandwidth_bps, "edge_only", workers)


def cloud_only(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1) -> Plan:
    _check_inputs(g, bandwidth_bps, workers)
    return make_plan(g, dag.inputs_of(g), bandwidth_bps, "cloud_only", workers)


def neurosurgeon(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1) -> Plan:
    """The chain view: the best single cut point along the graph's topological (layer) order.

    Each prefix is judged by its true cost (every tensor that crosses), so this is the strongest
    chain-view planner; what it cannot do is put parallel branches on different sides.
    """
    _check_inputs(g, bandwidth_bps, workers)
    order = dag.layer_order(g)
    inputs = set(dag.inputs_of(g))
    spb = 8.0 / bandwidth_bps
    edge: set[str] = set()
    cloud_succ = {v: g.out_degree(v) for v in g}
    edge_s, cloud_s, sent = 0.0, sum(d["cloud_time_s"] for _, d in g.nodes(data=True)), 0.0
    best, best_len = None, 0
    for i, v in enumerate(order, start=1):
        edge.add(v)
        edge_s += g.nodes[v]["edge_time_s"]
        cloud_s -= g.nodes[v]["cloud_time_s"]
        if cloud_succ[v]:
            sent += g.nodes[v]["output_bytes"]
        for u in g.predecessors(v):
            cloud_succ[u] -= 1
            if cloud_succ[u] == 0:
                sent -= g.nodes[u]["output_bytes"]
        if i < len(inputs):
            continue
        latency = edge_s + sent * spb + max(cloud_s, 0.0)
        if best is None or latency < best:
            best, best_len = latency, i
    return make_plan(g, order[:best_len], bandwidth_bps, "neurosurgeon", workers)


def brute_force(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1,
                objective: str = "latency") -> Plan:
    """Every valid cut judged exactly; small graphs only (a clear error otherwise)."""
    _check_inputs(g, bandwidth_bps, workers)
    if objective not in ("latency", "throughput"):
        raise ValueError("objective is 'latency' or 'throughput'")
    if len(g) > BRUTE_FORCE_MAX_NODES:
        raise CostGraphError(
            f"brute force enumerates every cut: refused for {len(g)} nodes "
            f"(at most {BRUTE_FORCE_MAX_NODES}); use dsl, dsh or exact instead"
        )
    best_edge, best = None, None
    for count, edge in enumerate(dag.closed_sets(g), start=1):
        if count > BRUTE_FORCE_MAX_CUTS:
            raise CostGraphError(
                f"brute force gave up after {BRUTE_FORCE_MAX_CUTS} cuts; use dsl, dsh or exact"
            )
        pred = evaluate(g, edge, bandwidth_bps, workers)
        if _better(pred, best, objective):
            best, best_edge = pred, edge
    assert best_edge is not None
    return make_plan(g, best_edge, bandwidth_bps, "brute", workers, objective=objective)


ALGORITHMS = {
    "dsl": dsl,
    "dsh": dsh,
    "exact": exact_throughput,
    "neurosurgeon": neurosurgeon,
    "edge_only": edge_only,
    "cloud_only": cloud_only,
    "brute": brute_force,
}


def solve(g: nx.DiGraph, algorithm: str, bandwidth_bps: float, workers: int = 1) -> Plan:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}: one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algorithm](g, bandwidth_bps, workers)
