"""The planner's decisions as plain functions of what it has seen (no sockets, no clock).

Kept apart from the service so that the policy — which cost graph, which bandwidth, when to
change plan — is testable with synthetic inputs.
"""

from __future__ import annotations

import math
import statistics
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import networkx as nx

from common.errors import CostGraphError
from common.planning import costgraph, dag, partition
from common.planning.probe import BandwidthEstimator
from common.planning.profile import Profile
from common.planning.regime import Regime, RegimeState

__all__ = ["Calibration", "EdgeSlot", "merge_cloud_profiles", "cost_graph", "should_switch",
           "PlanBook", "check_control"]

T = TypeVar("T")


@dataclass
class Calibration:
    """Measured / predicted stage times, smoothed; applied to the cost graph's times.

    A segment of layers does not take the sum of its per-layer times (fusion, caching, the
    runtime's own overhead), a cached profile may have been measured on a busy host, a device
    throttles or its host gets busy: the runtime measures what the stages really take, and the
    planner scales its edge and cloud times by the observed ratio. The factor applied moves
    only when the ratio has left a dead band around it (hysteresis: noise in the measurements
    must not rebuild the cost graph and flap the plan), and stays within `bounds`.
    """

    alpha: float = 0.3
    min_predicted_s: float = 0.002  # stages shorter than this say more about noise
    min_samples: int = 3
    bounds: tuple[float, float] = (0.05, 20.0)
    dead_band: float = 0.15  # the applied factor follows the ratio once they differ this much
    ratio: dict[str, float] = field(default_factory=lambda: {"edge": 1.0, "cloud": 1.0})
    samples: dict[str, int] = field(default_factory=lambda: {"edge": 0, "cloud": 0})
    applied: dict[str, float] = field(default_factory=lambda: {"edge": 1.0, "cloud": 1.0})
    #: the plan in force's frames' time beyond its stages (queues, hops), smoothed: added to
    #: its predicted latency, not to the cost graph (a queue is the load's, not a cut's)
    wait_s: float = 0.0
    wait_samples: int = 0
    wait_alpha: float = 0.5  # each report is already a median over seconds (the edge's)

    def observe(self, stage: str, measured_s: float, predicted_s: float) -> None:
        """One measurement of a stage against the profile's own (uncalibrated) prediction."""
        if measured_s <= 0 or predicted_s < self.min_predicted_s:
            return
        r = measured_s / predicted_s
        self.ratio[stage] += self.alpha * (r - self.ratio[stage]) if self.samples[stage] else (
            r - self.ratio[stage])
        self.samples[stage] += 1
        if self.samples[stage] >= self.min_samples and not (
                1 - self.dead_band <= self.ratio[stage] / self.applied[stage] <= 1 + self.dead_band):
            lo, hi = self.bounds
            self.applied[stage] = min(max(self.ratio[stage], lo), hi)

    def observe_wait(self, measured_s: float) -> None:
        """One median wait of the plan in force's frames (the edge's telemetry)."""
        if measured_s < 0:
            return
        self.wait_s += self.wait_alpha * (measured_s - self.wait_s) if self.wait_samples else (
            measured_s - self.wait_s)
        self.wait_samples += 1

    def forget_wait(self) -> None:
        """A new plan, or a new link: its frames' wait is its own (a cut to the edge leaves the
        broker's queue behind, a faster link the frames queued behind it), measured afresh."""
        self.wait_s, self.wait_samples = 0.0, 0

    def factor(self, stage: str) -> float:
        return self.applied[stage]

    def residual(self, stage: str) -> float:
        """Measured / what the planner now predicts (the profile's times scaled by the factor):
        1 when the cost model has caught up with the measurements."""
        return self.ratio[stage] / self.applied[stage]


@dataclass
class EdgeSlot:
    """What the planner knows of one edge agent, and the plan it publishes for it: each edge
    has its own model, uplink, camera rate and load regime (the pool is what they share)."""

    name: str
    dag: nx.DiGraph | None = None  # with `profile`, from the edge's EdgeProfile
    profile: Profile | None = None
    seen: float = 0.0  # monotonic time of its last message
    estimator: BandwidthEstimator = field(default_factory=BandwidthEstimator)
    telemetry: Any = None  # its last Telemetry
    calibration: Calibration = field(default_factory=Calibration)
    regime: RegimeState = field(default_factory=RegimeState)
    plan: partition.Plan | None = None
    force_bps: float = 0.0  # an operator's rate for this edge alone (0: none)
    demand: float = 0.0  # worker-s/s its latency plan asks of the pool at its arrival rate
    repin: bool = False  # a pin or goal changed: its next plan is published whatever it predicts
    planned_bps: float = 0.0  # the bandwidth its last plan was made with
    graph_key: tuple | None = None
    graph: tuple[nx.DiGraph, Any] | None = None  # its cost graph and CutSolver
    codecs: frozenset[str] = frozenset()  # those its cost graph may use
    solving: Any = None  # the solve in flight (a future)
    contradicted: dict[str, float] = field(default_factory=dict)  # stage -> since (-1: said)
    plan_factors: tuple[float, float] = (1.0, 1.0)  # the calibration its plan was made with


def merge_cloud_profiles(profiles: list[Profile]) -> Profile:
    """One cloud profile from several workers: the per-node median."""
    first = profiles[0]
    if len(profiles) == 1:
        return first
    times = {v: statistics.median(p.node_times_s[v] for p in profiles) for v in first.node_times_s}
    codecs: dict[str, dict[str, dict[str, Any]]] = {}
    for p in profiles:  # decode times: the median of the workers that measured each
        for v, row in p.codecs.items():
            for name, c in row.items():
                codecs.setdefault(v, {}).setdefault(name, {**c, "decode_s": []})["decode_s"].append(
                    c["decode_s"])
    for row in codecs.values():
        for c in row.values():
            c["decode_s"] = statistics.median(c["decode_s"])
    return Profile(first.model, first.fingerprint, first.device, first.input_shapes, times,
                   statistics.median(p.total_s for p in profiles), first.warmup, first.repeats,
                   codecs=codecs)


def cost_graph(dag: nx.DiGraph, edge: Profile, cloud: Profile, calibration: Calibration) -> nx.DiGraph:
    g = costgraph.build(dag, edge, cloud)
    fe, fc = calibration.factor("edge"), calibration.factor("cloud")
    g.graph["calibration"] = (fe, fc)  # what a plan made on it was scaled by
    if fe != 1.0 or fc != 1.0:
        for _, d in g.nodes(data=True):
            d["edge_time_s"] *= fe
            d["cloud_time_s"] *= fc
    return g


def should_switch(current: partition.Plan | None, candidate: partition.Plan, g: nx.DiGraph,
                  bandwidth_bps: float, workers: int, regime: Regime, threshold: float) -> bool:
    """Change plan only for a predicted gain above `threshold` (no flapping between near-ties)."""
    if current is None or current.fingerprint != candidate.fingerprint:
        return True
    if current.exit != candidate.exit:
        return True  # another exit: another accuracy, not a near-tie of latencies
    if set(current.edge_nodes) == set(candidate.edge_nodes) and current.codecs == candidate.codecs:
        return False
    if current.exit:
        g = dag.needed_by(g, current.exit)
    try:
        now = partition.evaluate(g, current.edge_nodes, bandwidth_bps, workers, current.codecs)
    except CostGraphError:  # its codecs are no longer in the cost graph
        return True
    new = candidate.predicted
    if regime is Regime.HEAVY:
        return new.bottleneck_s < now.bottleneck_s * (1 - threshold)
    return new.latency_s < now.latency_s * (1 - threshold)


@dataclass
class PlanBook(Generic[T]):
    """The plans one planner run issued: their identity, and the live set it republishes.

    Frames still in flight may name any recent plan, and a worker that joined late (or
    restarted) must be able to serve them: so the last `max_live` plans are republished, not
    only the current one. The book is bounded whatever happens.
    """

    epoch: int
    max_live: int = 4  # per edge
    next_id: int = 1
    live: OrderedDict[tuple[int, int], T] = field(default_factory=OrderedDict)
    owner: dict[tuple[int, int], str] = field(default_factory=dict)  # key -> its edge

    def issue(self, plan: partition.Plan, now: float) -> partition.Plan:
        stamped = plan.stamped(self.next_id, now, self.epoch)
        self.next_id += 1
        return stamped

    def publish(self, key: tuple[int, int], item: T, edge: str = "") -> None:
        """Record (or refresh) what is published for the plan `key` of `edge`; that edge's
        oldest falls out past `max_live`."""
        self.live[key] = item
        self.live.move_to_end(key)
        self.owner[key] = edge
        mine = [k for k in self.live if self.owner.get(k) == edge]
        for old in mine[: max(0, len(mine) - self.max_live)]:
            del self.live[old]
            self.owner.pop(old, None)

    def drop(self, edge: str) -> None:
        """Withdraw an edge's plans (it left)."""
        for key in [k for k, e in self.owner.items() if e == edge]:
            self.live.pop(key, None)
            del self.owner[key]

    def items(self) -> list[T]:
        """The newest plans first: a new subscriber applies its edge's current plan and then
        ignores the older ones (they do not supersede it), while workers cache them all."""
        return list(reversed(self.live.values()))


def check_control(force_bandwidth_bps: float | None, algorithm: str | None,
                  latency_goal_s: float | None = None) -> None:
    """Refuse operator settings no planning tick could use (raise ValueError, nothing changes)."""
    if latency_goal_s is not None and not (math.isfinite(latency_goal_s) and latency_goal_s >= 0):
        raise ValueError(f"the latency goal must be finite and >= 0 s (0: none), "
                         f"not {latency_goal_s}")
    if force_bandwidth_bps is not None and not (
            math.isfinite(force_bandwidth_bps) and force_bandwidth_bps >= 0):
        raise ValueError(f"bandwidth must be a finite rate >= 0 (0: the probe's), "
                         f"not {force_bandwidth_bps}")
    if algorithm is not None and algorithm != "auto" and algorithm not in partition.ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r}: auto or one of "
                         f"{', '.join(partition.ALGORITHMS)}")
