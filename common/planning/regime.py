"""Load regime (DESIGN §4, DADS Algorithm 3): light → DSL, heavy → DSH, overloaded → say so.

Light load means every stage of the DSL plan finishes before the next frame arrives:
Q · max(edge_s, transfer_s, cloud_s / k) < 1. The decision is a pure function of the observations
and the previous state, with hysteresis (separate thresholds to enter and to leave heavy load, a
queue that says "heavy" whatever the estimate, a minimum dwell time), so the planner neither
flaps nor needs a clock of its own: `now` is passed in.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from dataclasses import dataclass
from enum import StrEnum

import networkx as nx

from common.planning import partition, tiers
from common.planning.mincut import CutSolver

__all__ = ["Regime", "Hysteresis", "RegimeState", "Decision", "TierDecision", "next_regime",
           "decide", "decide_tiers"]


class Regime(StrEnum):
    LIGHT = "light"
    HEAVY = "heavy"


@dataclass(frozen=True)
class Hysteresis:
    enter_heavy: float = 1.0  # load factor Q·bottleneck(DSL) at or above which we go heavy
    leave_heavy: float = 0.8  # ... and at or below which we come back to light
    queue_high: int = 4  # frames waiting at the edge: heavy, whatever the estimate says
    min_dwell_s: float = 5.0  # time in a regime before leaving it

    def __post_init__(self) -> None:
        if not 0 < self.leave_heavy <= self.enter_heavy:
            raise ValueError("need 0 < leave_heavy <= enter_heavy")


@dataclass(frozen=True)
class RegimeState:
    regime: Regime = Regime.LIGHT
    since: float = -math.inf


@dataclass(frozen=True)
class Decision:
    regime: Regime
    plan: partition.Plan  # the plan to run: DSL (light) or DSH (heavy)
    dsl: partition.Plan
    load_factor: float  # Q · bottleneck of the plan chosen; >= 1 means it cannot keep up
    overloaded: bool
    reason: str


def next_regime(
    state: RegimeState, load_factor: float, queue_depth: int, now: float, cfg: Hysteresis
) -> RegimeState:
    """The regime after one observation (load factor of the DSL plan, frames queued)."""
    if now - state.since < cfg.min_dwell_s:
        return state
    if state.regime is Regime.LIGHT:
        if load_factor >= cfg.enter_heavy or queue_depth >= cfg.queue_high:
            return RegimeState(Regime.HEAVY, now)
    elif load_factor <= cfg.leave_heavy and queue_depth < cfg.queue_high:
        return RegimeState(Regime.LIGHT, now)
    return state


def decide_exit(g: nx.DiGraph, bandwidth_bps: float, fps: float, latency_goal_s: float,
                workers: int = 1, codecs: Collection[str] | str = "lossless") -> Decision:
    """Edgent: the most accurate early exit whose best cut meets the latency goal (none given:
    the most accurate exit); if none meets it, the fastest exit, and say so."""
    goal = latency_goal_s if latency_goal_s > 0 else math.inf
    plan = partition.edgent(g, bandwidth_bps, goal, workers, codecs=codecs)
    if plan is not None:
        reason = (f"exit {plan.exit} ({plan.extra['accuracy']:.1%} accurate): the most accurate "
                  + ("exit" if goal == math.inf else f"within the {goal * 1e3:.0f} ms goal"))
    else:
        plan = partition.fastest_exit(g, bandwidth_bps, workers, codecs=codecs)
        reason = (f"no exit meets the {goal * 1e3:.0f} ms goal at this bandwidth: the fastest, "
                  f"exit {plan.exit} ({plan.predicted.latency_s * 1e3:.0f} ms, "
                  f"{plan.extra['accuracy']:.1%} accurate)")
    factor = fps * plan.predicted.bottleneck_s
    return Decision(Regime.LIGHT, plan, plan, factor, factor >= 1.0, reason)


def decide(
    g: nx.DiGraph,
    bandwidth_bps: float,
    fps: float,
    workers: int = 1,
    state: RegimeState | None = None,
    now: float = 0.0,
    queue_depth: int = 0,
    cfg: Hysteresis | None = None,
    solver: CutSolver | None = None,
) -> tuple[Decision, RegimeState]:
    """DADS Algorithm 3 with hysteresis: solve DSL; under heavy load solve DSH; flag overload."""
    if not (math.isfinite(fps) and fps >= 0):
        raise ValueError(f"frame rate must be finite and >= 0, got {fps!r}")
    cfg = cfg or Hysteresis()
    solver = solver or CutSolver(g)
    light = partition.dsl(g, bandwidth_bps, workers, solver=solver)
    factor = fps * light.predicted.bottleneck_s
    state = next_regime(state or RegimeState(), factor, queue_depth, now, cfg)
    if state.regime is Regime.LIGHT:
        return Decision(state.regime, light, light, factor, factor >= 1.0,
                        f"light load: DSL's slowest stage takes {factor:.0%} of the frame interval"
                        ), state
    heavy = partition.dsh(g, bandwidth_bps, workers, solver=solver)
    heavy_factor = fps * heavy.predicted.bottleneck_s
    overloaded = heavy_factor >= 1.0
    if overloaded:
        reason = (f"overloaded: even DSH's slowest stage takes {heavy_factor:.0%} of the frame "
                  f"interval; lower the rate to {heavy.predicted.throughput_fps:.3g} fps or add "
                  "cloud workers")
    else:
        reason = f"heavy load: DSH keeps up at {heavy_factor:.0%} of the frame interval"
    return Decision(state.regime, heavy, light, heavy_factor, overloaded, reason), state


@dataclass(frozen=True)
class TierDecision:
    regime: Regime
    placement: tiers.Placement  # the latency placement (light) or the throughput one (heavy)
    load_factor: float  # Q · bottleneck of the placement chosen; >= 1: it cannot keep up
    overloaded: bool
    reason: str


def decide_tiers(p: tiers.TierProblem, fps: float, workers: int = 1,
                 state: RegimeState | None = None, now: float = 0.0, queue_depth: int = 0,
                 cfg: Hysteresis | None = None) -> tuple[TierDecision, RegimeState]:
    """Algorithm 3 over tiers: the latency placement (`tiers.solve`) while its slowest stage (a
    tier, the last shared by `workers`, or a link) keeps up with the camera; under heavy load
    (the same hysteresis) the throughput placement (`tiers.max_throughput`)."""
    if not (math.isfinite(fps) and fps >= 0):
        raise ValueError(f"frame rate must be finite and >= 0, got {fps!r}")
    cfg = cfg or Hysteresis()
    light = tiers.solve(p)
    factor = fps * tiers.bottleneck_s(p, light, workers)
    state = next_regime(state or RegimeState(), factor, queue_depth, now, cfg)
    if state.regime is Regime.LIGHT:
        return TierDecision(state.regime, light, factor, factor >= 1.0,
                            f"light load: the slowest stage takes {factor:.0%} of the frame "
                            "interval"), state
    heavy = tiers.max_throughput(p, workers)
    heavy_factor = fps * tiers.bottleneck_s(p, heavy, workers)
    overloaded = heavy_factor >= 1.0
    reason = (f"overloaded: even the throughput placement's slowest stage takes "
              f"{heavy_factor:.0%} of the frame interval; lower the rate to "
              f"{1.0 / tiers.bottleneck_s(p, heavy, workers):.3g} fps or add workers"
              if overloaded else
              f"heavy load: the throughput placement keeps up at {heavy_factor:.0%} of the frame "
              "interval")
    return TierDecision(state.regime, heavy, heavy_factor, overloaded, reason), state
