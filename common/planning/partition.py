"""Planning: pure functions from a cost graph (DESIGN §3) to a Plan (DESIGN §4, §7).

Each algorithm takes a networkx DiGraph in the cost-graph format and `bandwidth_bps` (bit/s; the
formulas use bytes/s = bandwidth_bps / 8), `workers` (k cloud workers) where it matters, and
`codecs`: the encodings a crossing tensor may use (`costgraph.allowed`: "lossless", the default,
keeps results bit-exact; "none" is raw only; or the names an operator allows). Each crossing
tensor pays encode (edge) + bytes / B (link) + decode (cloud) of the encoding the plan names.
No torch, no I/O, no clock: the planner service stamps `plan_id` and `created_at`.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import networkx as nx
import numpy as np

from common.errors import CostGraphError
from common.planning import dag
from common.planning.costgraph import RAW, Encoding, allowed, encoding, encodings, validate
from common.planning.mincut import CutSolver

__all__ = [
    "ALGORITHMS", "Prediction", "Plan", "evaluate", "make_plan", "dsl", "dsh", "edgent",
    "fastest_exit",
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
    latency_s: float  # the stages' sum, plus `wait_s`
    throughput_fps: float  # pipelined, cloud stage shared by k workers
    #: what the plan in force's frames have spent beyond the three stages (queues at the edge,
    #: the link and the broker; hops): measured, not modelled; 0 in a cut's own evaluation
    wait_s: float = 0.0

    def waiting(self, wait_s: float) -> Prediction:
        """This prediction with `wait_s` measured (in place of its own) added to its latency."""
        return replace(self, wait_s=wait_s, latency_s=self.latency_s - self.wait_s + wait_s)

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
    codecs: dict[str, str] = field(default_factory=dict)  # crossing node -> codec (none: raw)
    exit: str = ""  # the early exit the plan answers from ("": the model's own output)
    #: Scission: the tiers a frame crosses, in order (empty: the edge and one pool); the first
    #: runs `edge_nodes`, each middle one its `tier_nodes` entry, the last the rest
    tiers: tuple[str, ...] = ()
    tier_nodes: tuple[tuple[str, ...], ...] = ()
    edge: str = ""  # the edge agent this plan is for (many edges, one pool); "": any edge
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def upto(self, tier: int) -> frozenset[str]:
        """The nodes run on tiers 0..`tier` (a cut: what crosses the link after `tier`)."""
        out = set(self.edge_nodes)
        for nodes in self.tier_nodes[:max(0, tier)]:
            out.update(nodes)
        return frozenset(out)

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
        doc["tiers"] = list(self.tiers)
        doc["tier_nodes"] = [list(nodes) for nodes in self.tier_nodes]
        for key in ("extra", "codecs", "exit", "tiers", "tier_nodes", "edge"):
            if not doc[key]:
                doc.pop(key)
        return doc

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Plan:
        body = dict(doc)
        body["predicted"] = Prediction(**body["predicted"])
        body["edge_nodes"] = tuple(body["edge_nodes"])
        body["transfer"] = tuple(body["transfer"])
        codecs = body.get("codecs", {})
        if not (isinstance(codecs, dict) and all(
                isinstance(k, str) and isinstance(v, str) for k, v in codecs.items())):
            raise ValueError("a plan's codecs map node ids to codec names")
        body["tiers"] = tuple(str(t) for t in body.get("tiers", ()))
        body["tier_nodes"] = tuple(tuple(str(v) for v in nodes)
                                   for nodes in body.get("tier_nodes", ()))
        if len(body["tier_nodes"]) != max(0, len(body["tiers"]) - 2):
            raise ValueError("a plan over T tiers lists the nodes of its T - 2 middle tiers")
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


def _crossing(g: nx.DiGraph, edge: frozenset[str],
              codecs: Mapping[str, str] | None) -> list[Encoding]:
    return [encoding(g, v, (codecs or {}).get(v, RAW)) for v in dag.transfer(g, edge)]


def evaluate(g: nx.DiGraph, edge: Iterable[str], bandwidth_bps: float, workers: int = 1,
             codecs: Mapping[str, str] | None = None) -> Prediction:
    """DESIGN §4 latency L(E) and pipelined throughput T(E) of one cut, with unscaled times;
    a crossing tensor's encode time counts on the edge, its decode time on the cloud."""
    edge = frozenset(edge)
    nodes = g.nodes
    crossing = _crossing(g, edge, codecs)
    edge_s = sum(nodes[v]["edge_time_s"] for v in edge) + sum(e.encode_s for e in crossing)
    cloud_s = sum(d["cloud_time_s"] for v, d in nodes(data=True) if v not in edge)
    cloud_s += sum(e.decode_s for e in crossing)
    transfer_s = sum(e.bytes for e in crossing) * 8.0 / bandwidth_bps
    worst = max(edge_s, transfer_s, cloud_s / workers)
    return Prediction(edge_s, transfer_s, cloud_s, edge_s + transfer_s + cloud_s,
                      1.0 / worst if worst > 0 else math.inf)


def make_plan(
    g: nx.DiGraph, edge: Iterable[str], bandwidth_bps: float, algorithm: str, workers: int = 1,
    codecs: Mapping[str, str] | None = None, **extra: Any,
) -> Plan:
    """A plan for this cut; `codecs` (node -> name) is kept for its crossing tensors only."""
    edge = dag.check_cut(g, edge)
    transfer = dag.transfer(g, edge)
    chosen = {v: codecs.get(v, RAW) for v in transfer} if codecs else {}
    return Plan(
        algorithm=algorithm,
        fingerprint=str(g.graph.get("fingerprint", "")),
        edge_nodes=tuple(sorted(edge)),
        transfer=tuple(transfer),
        predicted=evaluate(g, edge, bandwidth_bps, workers, chosen),
        bandwidth_bps=float(bandwidth_bps),
        workers=workers,
        transfer_bytes=int(sum(e.bytes for e in _crossing(g, edge, chosen))),
        codecs=chosen,
        extra=extra,
    )


def _better(a: Prediction, b: Prediction | None, objective: str) -> bool:
    if b is None:
        return True
    key = (lambda p: (p.latency_s, p.bottleneck_s)) if objective == "latency" else (
        lambda p: (p.bottleneck_s, p.latency_s))
    return key(a) < key(b)


# --- DSL and DSH -----------------------------------------------------------------------------


Codecs = str | Collection[str]


def _solver(g: nx.DiGraph, codecs: Codecs, solver: CutSolver | None) -> CutSolver:
    return solver or CutSolver(g, allowed(g, codecs))


def _codec_plan(solver: CutSolver, a: float, spb: float, gw: float) -> dict[str, str] | None:
    return solver.choice(a, spb, gw) if solver.has_codecs else None


def dsl(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1, *, codecs: Codecs = "lossless",
        solver: CutSolver | None = None) -> Plan:
    """DADS light load: the cut, and the codec of every crossing tensor, of least latency.

    Why choosing the codecs inside the cut stays exact: for a fixed cut E and codecs κ,
    L(E, κ) = Σ_E e + Σ_{v crosses} (enc_κ(v) + bytes_κ(v)/B + dec_κ(v)) + Σ_C c, and the codec
    of one crossing tensor appears in its own term only. So for every E,
    min_κ L(E, κ) = Σ_E e + Σ_{v crosses} m(v) + Σ_C c  with  m(v) = min_k (enc_k + bytes_k/B
    + dec_k), which is L(E) of DESIGN §4 with t(v) := m(v). The min cut with capacity m(v) on
    v's transfer arc therefore minimises L over cuts and codecs together, and its codecs are the
    arg-min of each m(v). (`tests/test_codec_planning.py` checks it against brute force over
    cuts x codecs on random DAGs.)
    """
    _check_inputs(g, bandwidth_bps, workers)
    solver = _solver(g, codecs, solver)
    spb = 8.0 / bandwidth_bps
    edge = solver.solve(1.0, spb, 1.0)
    return make_plan(g, edge, bandwidth_bps, "dsl", workers, _codec_plan(solver, 1.0, spb, 1.0))


def dsh(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1, *, codecs: Codecs = "lossless",
        grid: int = 9, span_log2: float = 8.0, max_rounds: int = 12,
        solver: CutSolver | None = None) -> Plan:
    """DADS heavy load: minimise the pipeline bottleneck max(T_e, T_t, T_c / k).

    The paper's Algorithm 2, with its printed defects avoided: a bounded log-spaced grid of
    scaling factors (edge × α, cloud × γ/k, transfer × 1) around the best point found, narrowed
    each round while the best improves; the best cut (not the last) is returned, every candidate
    judged with the unscaled times. The grid's centre α = γ = 1 is DSL on (e, t, c/k), whose
    bottleneck is at most 3 × optimal, so the result is a 3-approximation; plain DSL is a seed
    too, so DSH never has a worse bottleneck than DSL. With codecs, each scaled solve also
    picks each crossing tensor's codec under the same weights (encode × α, decode × γ/k).
    """
    _check_inputs(g, bandwidth_bps, workers)
    if grid < 1:
        raise ValueError("grid must be >= 1")
    solver = _solver(g, codecs, solver)
    spb = 8.0 / bandwidth_bps
    Candidate = tuple[frozenset[str], tuple[tuple[str, str], ...]]
    seen: dict[Candidate, Prediction] = {}

    def candidate(a: float, gw: float) -> Candidate:
        edge = solver.solve(a, spb, gw)
        chosen = _codec_plan(solver, a, spb, gw) or {}
        return edge, tuple(sorted((v, chosen[v]) for v in dag.transfer(g, edge) if v in chosen))

    def score(cand: Candidate) -> Prediction:
        if cand not in seen:
            seen[cand] = evaluate(g, cand[0], bandwidth_bps, workers, dict(cand[1]))
        return seen[cand]

    # Seeds: DSL on (e, t, c/k), the 3-approximation, and plain DSL on (e, t, c), so that DSH
    # is never worse than the latency plan whatever k is.
    best_cand = candidate(1.0, 1.0 / workers)
    best, centre, span, solves = score(best_cand), (0.0, 0.0), span_log2, 2
    plain = candidate(1.0, 1.0)
    if _better(score(plain), best, "throughput"):
        best, best_cand = score(plain), plain
    offsets = np.linspace(-1.0, 1.0, grid) if grid > 1 else np.zeros(1)
    for _ in range(max_rounds):
        improved = False
        round_best = centre
        for da in offsets:
            for dg in offsets:
                la, lg = centre[0] + da * span, centre[1] + dg * span
                cand = candidate(2.0**la, 2.0**lg / workers)
                solves += 1
                pred = score(cand)
                if _better(pred, best, "throughput"):
                    best, best_cand, round_best, improved = pred, cand, (la, lg), True
        if not improved:
            break
        centre, span = round_best, span / 2
    return make_plan(g, best_cand[0], bandwidth_bps, "dsh", workers,
                     dict(best_cand[1]) if solver.has_codecs else None, solves=solves,
                     distinct_cuts=len(seen))


def exact_throughput(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1, *,
                     codecs: Codecs = "lossless", time_limit_s: float = 120.0) -> Plan:
    """The throughput-optimal cut (and codecs), by an integer program solved with HiGHS (scipy).

    x_v = 1 when v runs on the edge; y_vk = 1 when v's tensor crosses in encoding k, with
    Σ_k y_vk >= x_v - x_w for every consumer w; minimise z subject to
    z >= Σ e x + Σ enc y,  z >= Σ bytes y / B,  z >= (Σ c (1 - x) + Σ dec y) / k,
    closure x_u >= x_w. Raw only, y_v is one variable per node, as without codecs.
    """
    from scipy.optimize import Bounds, LinearConstraint, milp
    from scipy.sparse import coo_array

    _check_inputs(g, bandwidth_bps, workers)
    names = allowed(g, codecs)
    nodes = list(g)
    n = len(nodes)
    index = {v: i for i, v in enumerate(nodes)}
    options = [encodings(g, v, names) for v in nodes]
    first = np.cumsum([0] + [len(o) for o in options])  # y_v's columns: n + first[i] ...
    e = np.array([g.nodes[v]["edge_time_s"] for v in nodes])
    c = np.array([g.nodes[v]["cloud_time_s"] for v in nodes]) / workers
    flat = [opt for o in options for opt in o]
    t = np.array([o.bytes for o in flat]) * 8.0 / bandwidth_bps
    enc = np.array([o.encode_s for o in flat])
    dec = np.array([o.decode_s for o in flat]) / workers
    scale = max(e.max(initial=0), c.max(initial=0), t.max(initial=0), enc.max(initial=0),
                dec.max(initial=0)) or 1.0
    e, c, t, enc, dec = e / scale, c / scale, t / scale, enc / scale, dec / scale
    m = len(flat)
    z = n + m  # variables: x (n), y (m), z
    rows, cols, vals, ub = [], [], [], []

    def row(entries: list[tuple[int, float]], upper: float) -> None:
        r = len(ub)
        for col, val in entries:
            rows.append(r)
            cols.append(col)
            vals.append(val)
        ub.append(upper)

    def ys(i: int) -> range:
        return range(n + first[i], n + first[i + 1])

    for u, w in g.edges:
        iu, iw = index[u], index[w]
        row([(iw, 1.0), (iu, -1.0)], 0.0)  # closure: x_w <= x_u
        row([(iu, 1.0), (iw, -1.0)] + [(j, -1.0) for j in ys(iu)], 0.0)  # Σ y_u >= x_u - x_w
    row([(i, e[i]) for i in range(n)] + [(n + j, enc[j]) for j in range(m)] + [(z, -1.0)], 0.0)
    row([(n + j, t[j]) for j in range(m)] + [(z, -1.0)], 0.0)
    row([(i, -c[i]) for i in range(n)] + [(n + j, dec[j]) for j in range(m)] + [(z, -1.0)],
        -float(c.sum()))
    a = coo_array((vals, (rows, cols)), shape=(len(ub), z + 1)).tocsr()
    lower = np.zeros(z + 1)
    for v in g.graph["inputs"]:
        lower[index[v]] = 1.0
    upper = np.ones(z + 1)
    upper[z] = np.inf
    integrality = np.zeros(z + 1)
    integrality[:n] = 1
    if m > n:  # a choice among encodings: y must be whole (a blend could beat every choice)
        integrality[n:z] = 1
    cost = np.zeros(z + 1)
    cost[z] = 1.0
    options_ = {"time_limit": time_limit_s, "mip_rel_gap": 1e-9}
    res = milp(cost, constraints=LinearConstraint(a, -np.inf, np.array(ub)),
               integrality=integrality, bounds=Bounds(lower, upper), options=options_)
    if res.x is None:
        raise RuntimeError(f"exact throughput solver failed: {res.message}")
    edge = dag.ancestors_cut(g, {nodes[i] for i in range(n) if res.x[i] > 0.5})
    chosen = None
    if m > n:
        chosen = {nodes[i]: options[i][int(np.argmax(res.x[n + first[i]: n + first[i + 1]]))].name
                  for i in range(n)}
    return make_plan(g, edge, bandwidth_bps, "exact", workers, chosen,
                     optimal=res.status == 0, solver_status=str(res.message))


# --- baselines -------------------------------------------------------------------------------


def _fastest(g: nx.DiGraph, bandwidth_bps: float, codecs: Codecs) -> dict[str, str] | None:
    """Each node's lowest-latency encoding at this bandwidth (None: raw only)."""
    names = allowed(g, codecs)
    if not names:
        return None
    spb = 8.0 / bandwidth_bps
    return {v: min(encodings(g, v, names), key=lambda e: e.seconds(spb)).name for v in g}


def edge_only(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1, *,
              codecs: Codecs = "lossless") -> Plan:
    _check_inputs(g, bandwidth_bps, workers)
    return make_plan(g, g.nodes, bandwidth_bps, "edge_only", workers)


def cloud_only(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1, *,
               codecs: Codecs = "lossless") -> Plan:
    """The raw input crosses, in its best allowed codec (a frame codec, e.g. PNG or JPEG)."""
    _check_inputs(g, bandwidth_bps, workers)
    return make_plan(g, dag.inputs_of(g), bandwidth_bps, "cloud_only", workers,
                     _fastest(g, bandwidth_bps, codecs))


def neurosurgeon(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1, *,
                 codecs: Codecs = "lossless") -> Plan:
    """The chain view: the best single cut point along the graph's topological (layer) order.

    Each prefix is judged by its true cost (every tensor that crosses), so this is the strongest
    chain-view planner; what it cannot do is put parallel branches on different sides.
    """
    _check_inputs(g, bandwidth_bps, workers)
    order = dag.layer_order(g)
    inputs = set(dag.inputs_of(g))
    fastest = _fastest(g, bandwidth_bps, codecs)
    spb = 8.0 / bandwidth_bps
    cross = {v: encoding(g, v, (fastest or {}).get(v, RAW)).seconds(spb) for v in g}
    edge: set[str] = set()
    cloud_succ = {v: g.out_degree(v) for v in g}
    edge_s, cloud_s, sent = 0.0, sum(d["cloud_time_s"] for _, d in g.nodes(data=True)), 0.0
    best, best_len = None, 0
    for i, v in enumerate(order, start=1):
        edge.add(v)
        edge_s += g.nodes[v]["edge_time_s"]
        cloud_s -= g.nodes[v]["cloud_time_s"]
        if cloud_succ[v]:
            sent += cross[v]
        for u in g.predecessors(v):
            cloud_succ[u] -= 1
            if cloud_succ[u] == 0:
                sent -= cross[u]
        if i < len(inputs):
            continue
        latency = edge_s + sent + max(cloud_s, 0.0)
        if best is None or latency < best:
            best, best_len = latency, i
    return make_plan(g, order[:best_len], bandwidth_bps, "neurosurgeon", workers, fastest)


def brute_force(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1,
                objective: str = "latency", *, codecs: Codecs = "lossless") -> Plan:
    """Every valid cut, with every combination of its crossing tensors' codecs, judged
    exactly; small graphs only (a clear error otherwise)."""
    _check_inputs(g, bandwidth_bps, workers)
    if objective not in ("latency", "throughput"):
        raise ValueError("objective is 'latency' or 'throughput'")
    if len(g) > BRUTE_FORCE_MAX_NODES:
        raise CostGraphError(
            f"brute force enumerates every cut: refused for {len(g)} nodes "
            f"(at most {BRUTE_FORCE_MAX_NODES}); use dsl, dsh or exact instead"
        )
    names = allowed(g, codecs)
    best_edge, best, best_codecs, count = None, None, None, 0
    for edge in dag.closed_sets(g):
        crossing = dag.transfer(g, edge)
        for combo in itertools.product(*(encodings(g, v, names) for v in crossing)):
            count += 1
            if count > BRUTE_FORCE_MAX_CUTS:
                raise CostGraphError(f"brute force gave up after {BRUTE_FORCE_MAX_CUTS} cuts "
                                     "and codecs; use dsl, dsh or exact")
            chosen = {v: e.name for v, e in zip(crossing, combo, strict=True)}
            pred = evaluate(g, edge, bandwidth_bps, workers, chosen)
            if _better(pred, best, objective):
                best, best_edge, best_codecs = pred, edge, chosen
    assert best_edge is not None
    return make_plan(g, best_edge, bandwidth_bps, "brute", workers,
                     best_codecs if names else None, objective=objective)


def edgent(g: nx.DiGraph, bandwidth_bps: float, latency_goal_s: float, workers: int = 1, *,
           codecs: Codecs = "lossless") -> Plan | None:
    """Edgent's Algorithm 1: the most accurate early exit whose minimum-latency cut meets the
    latency goal, with that cut; None when no exit meets it.

    Exact: for each exit (most accurate first), DSL on the sub-DAG the exit needs is that exit's
    minimum latency over every cut (and codec), so the first exit it brings within the goal is
    the most accurate one that any cut could bring within it. (`tests/test_exits.py` checks it
    against brute force over exits x cuts on random DAGs.)
    """
    _check_inputs(g, bandwidth_bps, workers)
    if not (math.isfinite(latency_goal_s) or latency_goal_s == math.inf) or latency_goal_s <= 0:
        raise CostGraphError(f"the latency goal must be > 0 s, got {latency_goal_s!r}")
    marked = dag.exits(g)
    if not marked:
        raise CostGraphError("the cost graph marks no early exit (node attribute 'exit')")
    for node, accuracy in marked:
        sub = dag.needed_by(g, node)
        plan = dsl(sub, bandwidth_bps, workers, codecs=codecs)
        if plan.predicted.latency_s <= latency_goal_s:
            return replace(plan, algorithm="edgent", exit=node,
                           extra={"accuracy": accuracy, "latency_goal_s": latency_goal_s})
    return None


def fastest_exit(g: nx.DiGraph, bandwidth_bps: float, workers: int = 1, *,
                 codecs: Codecs = "lossless") -> Plan:
    """The exit with the lowest latency (its DSL plan): what to run when none meets the goal."""
    plans = [replace(dsl(dag.needed_by(g, v), bandwidth_bps, workers, codecs=codecs),
                     algorithm="edgent", exit=v, extra={"accuracy": acc})
             for v, acc in dag.exits(g)]
    return min(plans, key=lambda p: (p.predicted.latency_s, -p.extra["accuracy"]))


ALGORITHMS = {
    "dsl": dsl,
    "dsh": dsh,
    "exact": exact_throughput,
    "neurosurgeon": neurosurgeon,
    "edge_only": edge_only,
    "cloud_only": cloud_only,
    "brute": brute_force,
}


def solve(g: nx.DiGraph, algorithm: str, bandwidth_bps: float, workers: int = 1,
          codecs: Codecs = "lossless") -> Plan:
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}: one of {', '.join(ALGORITHMS)}")
    return ALGORITHMS[algorithm](g, bandwidth_bps, workers, codecs=codecs)
