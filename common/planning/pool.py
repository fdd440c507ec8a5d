"""Many edges, one pool: per-edge cuts that share the cloud workers.

Each edge i has its cost graph g_i, uplink b_i and frame rate f_i. A cut E_i gives that edge a
per-frame latency L_i = e_i + t_i + c_i (DESIGN §4) and gives the pool a demand of f_i · c_i
worker-seconds per second. With k workers the pool keeps up while Σ_i f_i c_i ≤ ρ k (ρ < 1 is
headroom: a pool run at 100% queues without bound); each edge's own stages must keep up with its
camera too, f_i · max(e_i, t_i) ≤ 1. Independent DSL plans ignore the sum: every edge sends its
work to the pool, which is right while the pool is idle and wrong once the edges together
overload it. `share` chooses the cuts together, minimising the worst edge's latency within the
pool's capacity.

**Options.** Each edge's candidate cuts (`options`): the minimum cut under a price λ on cloud
time, i.e. DSL with the cloud's times weighted 1 + λ, for λ on a log grid from 0 (DSL itself) up
to where the cut is all on the edge; the same with the price on the edge's compute or on its
link instead (cuts that keep a fast camera up); plus edge-only. Every price gives a point on the lower
convex hull of (latency, cloud demand), so the options are the efficient trades of latency for
pool time that a minimum cut can find; those another option beats on latency, cloud time and
the edge's own bottleneck at once are dropped. (`all_options`: every cut, small graphs.)

**Selection, exact over the options.** The optimal worst latency L* is one of the options'
latencies. For a bound L, each edge takes its option of least cloud demand among those with
latency ≤ L that keep its own stages up; the bound is feasible iff the demands fit ρ k, and
feasibility is monotone in L, so a binary search over the sorted option latencies finds L*.
Then the edges below L* are improved greedily (the largest latency saved per unit of pool time
first) while the pool still fits. With `all_options` the worst latency is the exact optimum
over all edges' cuts (`brute_force` checks it on small instances); with `options` it is exact
over the hull points, a heuristic whose gap `bench.many_edges` measures.

Pure functions; no I/O.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import networkx as nx

from common.planning import dag, partition
from common.planning.mincut import CutSolver

__all__ = ["EdgeLoad", "Option", "SharedPlan", "options", "all_options", "share",
           "least_overload", "independent", "brute_force", "HEADROOM",
           "workers_wanted"]

#: the pool's share of its capacity a shared plan may use (a queue at 100% grows without bound)
HEADROOM = 0.9
PRICES = (0.0, *(2.0**j for j in range(-4, 15)))


@dataclass(frozen=True)
class EdgeLoad:
    """One edge as the pool sees it: its cost graph, uplink and camera rate."""

    name: str
    g: nx.DiGraph
    bandwidth_bps: float
    fps: float


@dataclass(frozen=True)
class Option:
    edge_nodes: frozenset[str]
    latency_s: float
    cloud_s: float  # one frame on one worker
    own_s: float  # the edge's own bottleneck: max(edge compute, transfer)
    codecs: tuple[tuple[str, str], ...] = ()

    def demand(self, fps: float) -> float:
        """Worker-seconds per second this edge asks of the pool."""
        return fps * self.cloud_s

    def keeps_up(self, fps: float) -> bool:
        return fps * self.own_s <= 1.0 + 1e-12


@dataclass(frozen=True)
class SharedPlan:
    choice: dict[str, Option]
    worst_latency_s: float
    demand: float  # worker-seconds per second, all edges
    capacity: float  # HEADROOM x workers
    overloaded: bool  # no choice keeps the pool (or some edge's own stages) within bounds
    reason: str


def _option(g: nx.DiGraph, edge: frozenset[str], bw: float,
            codecs: Mapping[str, str] | None = None) -> Option:
    p = partition.evaluate(g, edge, bw, 1, codecs)
    crossing = set(dag.transfer(g, edge))
    chosen = tuple(sorted((v, c) for v, c in (codecs or {}).items() if v in crossing))
    return Option(edge, p.latency_s, p.cloud_s, max(p.edge_s, p.transfer_s), chosen)


def _key(o: Option) -> tuple[float, float, float]:
    return (o.latency_s, o.cloud_s, o.own_s)


def _hull(found: Iterable[Option]) -> list[Option]:
    """The options no other beats on latency, cloud time and the edge's own bottleneck at
    once (each matters: the worst latency, the pool, the edge keeping up), by latency."""
    items = sorted(found, key=_key)
    out = []
    for o in items:
        k = _key(o)
        beaten = any(all(a <= b for a, b in zip(_key(p), k, strict=True)) and _key(p) != k
                     for p in items)
        if not beaten and (not out or _key(out[-1]) != k):
            out.append(o)
    return out


def options(g: nx.DiGraph, bandwidth_bps: float, solver: CutSolver | None = None) -> list[Option]:
    """The cuts a price on cloud time gives (DSL at price 0), and edge-only; by latency."""
    solver = solver or CutSolver(g)
    spb = 8.0 / bandwidth_bps
    seen: dict[frozenset[str], Option] = {}
    weights = [(1.0, spb, 1.0 + p) for p in PRICES]  # pool time priced: toward the edge
    # and the edge's own stages priced (its compute, its link): what keeps a camera up
    weights += [(1.0 + p, spb, 1.0) for p in PRICES[1:]] + [(1.0, spb * (1.0 + p), 1.0)
                                                             for p in PRICES[1:]]
    for a, b, c in weights:
        cut = solver.solve(a, b, c)
        if cut not in seen:
            codecs = solver.choice(a, b, c) if solver.has_codecs else None
            seen[cut] = _option(g, cut, bandwidth_bps, codecs)
    everything = frozenset(g.nodes)
    seen.setdefault(everything, _option(g, everything, bandwidth_bps))
    return _hull(seen.values())


def all_options(g: nx.DiGraph, bandwidth_bps: float) -> list[Option]:
    """Every cut (exponential: small graphs, for checking `options`)."""
    return _hull(_option(g, cut, bandwidth_bps) for cut in dag.closed_sets(g))


def _cheapest(opts: list[Option], fps: float, bound: float) -> Option | None:
    """The least-demand option within the latency bound that keeps the edge's stages up."""
    fit = [o for o in opts if o.latency_s <= bound + 1e-12 and o.keeps_up(fps)]
    return min(fit, key=lambda o: (o.cloud_s, o.latency_s)) if fit else None


def share(loads: list[EdgeLoad], opts: Mapping[str, list[Option]], workers: float,
          headroom: float = HEADROOM) -> SharedPlan:
    """Each edge's cut: the least worst latency within the pool's capacity (module doc).
    `workers` may be fractional: a pool's capacity in workers' time."""
    if not workers > 0:
        raise ValueError("the pool needs a worker")
    capacity = headroom * workers
    fps = {x.name: x.fps for x in loads}
    beyond = {x.name: min(opts[x.name], key=lambda o, f=x.fps: (f * o.own_s, o.demand(f),
                                                                o.latency_s))
              for x in loads if not any(o.keeps_up(x.fps) for o in opts[x.name])}
    if beyond:  # no plan keeps up with these cameras: their fastest, the rest share what is left
        return _past_themselves(loads, opts, workers, headroom, beyond)

    def pick(bound: float) -> dict[str, Option] | None:
        out = {}
        for x in loads:
            o = _cheapest(opts[x.name], x.fps, bound)
            if o is None:
                return None
            out[x.name] = o
        return out

    def demand(choice: Mapping[str, Option]) -> float:
        return sum(o.demand(fps[n]) for n, o in choice.items())

    bounds = sorted({o.latency_s for x in loads for o in opts[x.name]})
    lo, hi = 0, len(bounds)
    while lo < hi:  # the least bound whose cheapest choice fits the pool
        mid = (lo + hi) // 2
        choice = pick(bounds[mid])
        if choice is not None and demand(choice) <= capacity + 1e-12:
            hi = mid
        else:
            lo = mid + 1
    if lo == len(bounds):  # nothing keeps up: the least overload, and say so
        load, choice = least_overload(loads, opts, capacity)
        worst = max((o.latency_s for o in choice.values()), default=0.0)
        return SharedPlan(choice, worst, demand(choice), capacity, True,
                          f"overloaded: the best the pool and the edges can do runs at "
                          f"{load:.0%} of what keeps up (about {1 / load:.0%} of the frames "
                          f"answered); add workers or lower the rates")
    choice = pick(bounds[lo])
    assert choice is not None
    worst = bounds[lo]
    choice = _improve(choice, opts, fps, capacity - demand(choice), worst)
    return SharedPlan(choice, max(o.latency_s for o in choice.values()) if choice else 0.0,
                      demand(choice), capacity, False,
                      f"shared pool: worst edge {worst * 1e3:.1f} ms at "
                      f"{demand(choice) / workers:.0%} of {workers:g} worker(s)")


def _past_themselves(loads: list[EdgeLoad], opts: Mapping[str, list[Option]], workers: float,
                     headroom: float, beyond: dict[str, Option]) -> SharedPlan:
    """Edges no plan keeps up with (their own stages too slow for their cameras, pool or not)
    get their fastest plan; the others share what the pool has left."""
    fps = {x.name: x.fps for x in loads}
    left = headroom * workers - sum(o.demand(fps[n]) for n, o in beyond.items())
    rest = [x for x in loads if x.name not in beyond]
    choice = dict(beyond)
    why = f"edge(s) {', '.join(sorted(beyond)[:5])} cannot keep up whatever the plan: their fastest"
    if rest and left > 0:
        sub = share(rest, opts, left / headroom, headroom)
        choice.update(sub.choice)
        why += f"; the others: {sub.reason}"
    elif rest:
        choice.update({x.name: min(opts[x.name], key=lambda o, f=x.fps: (o.demand(f), o.latency_s))
                       for x in rest})
        why += "; they fill the pool, the others ask it least"
    return SharedPlan(choice, max(o.latency_s for o in choice.values()),
                      sum(o.demand(fps[n]) for n, o in choice.items()), headroom * workers, True,
                      "overloaded: " + why)


def least_overload(loads: list[EdgeLoad], opts: Mapping[str, list[Option]], capacity: float
                   ) -> tuple[float, dict[str, Option]]:
    """When nothing keeps up: the choice with the least overload ρ, the larger of the pool's
    demand over its capacity and every edge's own fps · bottleneck (ρ frames arrive for every
    one that can be served). For a bound r on the edges' own load each edge takes its least
    cloud demand S(r) among the options within r; S falls as r grows and changes only at the
    options' own loads r_1 < ... < r_m, so ρ* = min_j max(r_j, S(r_j) / capacity) over the j
    where that stays below r_{j+1}: exact over the options."""
    rates = {x.name: x.fps for x in loads}
    levels = sorted({x.fps * o.own_s for x in loads for o in opts[x.name]})
    best: tuple[float, dict[str, Option]] | None = None
    for j, r in enumerate(levels):
        choice = {}
        for x in loads:
            fit = [o for o in opts[x.name] if x.fps * o.own_s <= r + 1e-15]
            if not fit:
                break
            choice[x.name] = min(fit, key=lambda o, f=x.fps: (o.demand(f), o.latency_s))
        else:
            s = sum(o.demand(rates[n]) for n, o in choice.items())
            rho = max(r, s / capacity)
            nxt = levels[j + 1] if j + 1 < len(levels) else math.inf
            if rho < nxt + 1e-15 and (best is None or rho < best[0] - 1e-15):
                best = (rho, choice)
    assert best is not None  # the largest level admits every option
    return best


def _improve(choice: dict[str, Option], opts: Mapping[str, list[Option]],
             fps: Mapping[str, float], spare: float, worst: float) -> dict[str, Option]:
    """Spend the pool's spare time on the edges' latencies: each step takes the upgrade that
    saves the most latency per unit of pool time, never above the worst latency."""
    choice = dict(choice)
    while True:
        best, best_rate = None, 0.0
        for n, cur in choice.items():
            for o in opts[n]:
                if o.latency_s >= cur.latency_s - 1e-15 or not o.keeps_up(fps[n]):
                    continue
                extra = o.demand(fps[n]) - cur.demand(fps[n])
                if extra > spare + 1e-12:
                    continue
                rate = (cur.latency_s - o.latency_s) / max(extra, 1e-12)
                if rate > best_rate:
                    best, best_rate = (n, o, extra), rate
        if best is None:
            return choice
        n, o, extra = best
        choice[n], spare = o, spare - max(extra, 0.0)


def independent(loads: list[EdgeLoad], solvers: Mapping[str, CutSolver] | None = None
                ) -> dict[str, Option]:
    """What each edge's own DSL gives, blind to the others (the baseline)."""
    out = {}
    for x in loads:
        solver = (solvers or {}).get(x.name) or CutSolver(x.g)
        cut = solver.solve(1.0, 8.0 / x.bandwidth_bps, 1.0)
        out[x.name] = _option(x.g, cut, x.bandwidth_bps)
    return out


def brute_force(loads: list[EdgeLoad], opts: Mapping[str, list[Option]], workers: float,
                headroom: float = HEADROOM) -> float:
    """The least worst latency over every combination of the edges' options (small only);
    inf when none fits."""
    best = math.inf
    for combo in itertools.product(*(opts[x.name] for x in loads)):
        if any(not o.keeps_up(x.fps) for o, x in zip(combo, loads, strict=True)):
            continue
        if sum(o.demand(x.fps) for o, x in zip(combo, loads, strict=True)) > headroom * workers + 1e-12:
            continue
        best = min(best, max((o.latency_s for o in combo), default=0.0))
    return best



def workers_wanted(demand: float, utilisation: float) -> int:
    """Cloud workers for `demand` worker-seconds per second (the edges' arrival rates times
    their latency plans' cloud time per frame) at most `utilisation` busy: the regime's
    leave-heavy threshold, so that with this many no edge leaves its latency plan for load.
    0 for no demand (an autoscaler's minimum keeps a worker for the first frames)."""
    if not (math.isfinite(demand) and demand > 0):
        return 0
    return math.ceil(demand / utilisation - 1e-9)
