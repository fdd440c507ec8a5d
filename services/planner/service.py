"""The planner service.

PULL (bind) takes edge profiles (the model DAG + edge times), cloud profiles (from every worker),
edge telemetry, broker stats and operator controls; PUB (bind) publishes versioned plans and
republishes the live ones (the last few) every second so late joiners catch up. A plan is named
by (epoch, id): the epoch is this run's start time, so a restarted planner's plans supersede the
old ones everywhere and never collide with them. A message that cannot be used is counted,
logged (bounded) and dropped; nothing a peer sends stops the inbox. Each tick it rebuilds the cost
graph when its inputs changed, reads the bandwidth (operator override, else the probe's estimate,
else the configured initial value), decides the load regime (DSL light, DSH heavy, k = workers
ready) and publishes a new plan id only when the predicted gain beats the threshold.

With `--tiers device,edge,cloud` (Scission) it places the model over the chain of tiers
instead: the edge agent is the first tier, the workers of each later tier (their `--tier`) the
others; the first link's rate is the probe's, the later ones are `--links`. Each tick solves the
layered minimum cut (`common.planning.tiers`) for the lowest latency; a placement pinned by an
operator (`Control.edge_nodes` + `tier_nodes`) replaces it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

import networkx as nx
import zmq

from common.codec.codecs import LOSSY
from common.codec.codecs import NAMES as CODEC_NAMES
from common.errors import DadsError
from common.planning import costgraph, dag, fidelity, partition, pool, tiers
from common.planning.costgraph import describe_mismatch
from common.planning.mincut import CutSolver
from common.planning.profile import Profile
from common.planning.regime import (
    Hysteresis,
    Regime,
    RegimeState,
    decide,
    decide_exit,
    decide_tiers,
)
from common.planning.units import format_bandwidth, parse_bandwidth, parse_duration
from common.runtime import config
from common.runtime.metrics import PlannerMetrics
from common.runtime.security import from_options
from common.runtime.service import Service, run_service, setup_logging
from common.runtime.transport import Envelope
from common.runtime.wire import (
    BrokerStats,
    CloudProfile,
    Control,
    ControlReply,
    EdgeProfile,
    PlanMsg,
    Telemetry,
    clip,
)
from services.planner.state import (
    Calibration,
    EdgeSlot,
    PlanBook,
    check_control,
    cost_graph,
    merge_cloud_profiles,
    should_switch,
)

__all__ = ["Planner", "add_arguments", "main"]

log = logging.getLogger("planner")
CLOUD_PROFILE_TTL_S = 30.0
#: who may send what to the planner's inbox (roles of security.ROLES)
SENDERS: dict[type, tuple[str, ...]] = {
    EdgeProfile: ("edge",), Telemetry: ("edge",), CloudProfile: ("worker",),
    BrokerStats: ("broker",), Control: ("operator",),
}
MAX_WORKERS = 4096  # cloud profiles kept at most (one per worker name; expired ones pruned)
MAX_EDGES = 256  # edges planned for at most (the longest silent makes room)
MAX_EDGE_NAME = 128
LEAVE_SHARED = 0.7  # joint plans end when the edges' own plans would use less of the pool
PROFILE_TRUSTED = 1.5  # a calibration factor beyond this (either way) contradicts the profile
PROFILE_CONTRADICTED_S = 30.0  # ... and this long is said: the profile should be re-measured


@dataclass(frozen=True)
class _Answer:
    """An applied Control waiting for the tick that plans with it."""

    peer: bytes | None
    control_id: int
    controls: int  # the planner's control count once it was applied


class Planner(Service):
    name = "planner"

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(PlannerMetrics(), from_options(args.keys, args.insecure, "planner"),
                         args.metrics_port, args.metrics_host)
        self.args = args
        self.initial_bps = parse_bandwidth(args.initial_bandwidth)
        self.budget = fidelity.parse(args.fidelity)
        self.wanted = fidelity.parse_codecs(args.codecs, CODEC_NAMES)
        fidelity.check(self.budget, self.wanted, bool(args.fidelity_table), LOSSY)
        self.fidelity_table = (fidelity.load_table(args.fidelity_table)
                               if args.fidelity_table else None)
        try:
            self.latency_goal_s = parse_duration(args.latency_goal) if args.latency_goal else 0.0
        except ValueError as exc:
            raise DadsError(f"--latency-goal: {exc}") from None
        self.force_bps = 0.0
        self.pin_algorithm: str | None = None  # operator pins (Control), else the regime decides
        self.pin_cut: frozenset[str] | None = None
        self.edges: dict[str, EdgeSlot] = {}  # by name: bounded (MAX_EDGES), expiring
        self.clouds: dict[str, tuple[float, Profile]] = {}
        self.tier_of: dict[str, str] = {}  # worker -> its tier (plans over tiers)
        self.tiers, self.links_bps = _tier_chain(args.tiers, args.links)
        self.pin_tiers: tuple[tuple[str, ...], ...] | None = None
        self.tier_wait = ""  # the tier a plan over tiers waits for (logged once)
        self.workers_ready: int | None = None
        self.cfg = Hysteresis(min_dwell_s=args.dwell)
        self.book: PlanBook[PlanMsg] = PlanBook(epoch=int(time.time() * 1000))
        self.shared = False  # the edges' plans are chosen together (the pool is contended)
        self.controls = 0  # operator controls taken so far
        self.answers: list[_Answer] = []  # applied controls, answered once their plans are made
        self.pin_error = ""  # why the last tick dropped a pin (a pending answer says it)
        self.replan = asyncio.Event()  # news that should not wait for the next tick

    async def start(self) -> None:
        self.pub = self.open(zmq.PUB, self.args.plans, bind=True, domain="planner-out")
        # a ROUTER, not a PULL: an operator's Control is answered (ControlReply) to its sender
        self.inbox = self.open(zmq.ROUTER, self.args.telemetry, bind=True, domain="planner-in")
        log.info("plans on %s, telemetry on %s", self.pub.endpoint, self.inbox.endpoint)

    def tasks(self) -> dict[str, Coroutine[Any, Any, None]]:
        take = {kind: self._take for kind in SENDERS}
        return {"inbox": self.receive(self.inbox, take, senders=SENDERS),
                "tick": self.every(self.args.tick, self._tick, wake=self.replan),
                "republish": self.every(1.0, self._republish)}

    # -- the edges --
    def _slot(self, name: str, now: float) -> EdgeSlot:
        """The edge's slot, made on first word from it; the longest silent goes when full."""
        slot = self.edges.get(name)
        if slot is None:
            if not name or len(name) > MAX_EDGE_NAME:  # a key in a dict and a metric label
                raise DadsError(f"an edge name is 1 to {MAX_EDGE_NAME} characters, not "
                                f"{len(name)}")
            while len(self.edges) >= MAX_EDGES:
                self._forget(min(self.edges.values(), key=lambda e: e.seen).name, "make room")
            calibration = Calibration() if self.args.calibrate else Calibration(min_samples=10**9)
            slot = self.edges[name] = EdgeSlot(name, calibration=calibration)
            self.metrics.edges.set(len(self.edges))
        slot.seen = now
        return slot

    def _forget(self, name: str, why: str) -> None:
        slot = self.edges.pop(name, None)
        if slot is None:
            return
        log.info("edge %s %s: its plans are withdrawn", clip(name, 64), why)
        self.book.drop(name)
        self.metrics.forget_edge(name)
        self.metrics.edges.set(len(self.edges))
        self._set_wanted()

    def _expire(self, now: float) -> None:
        for slot in list(self.edges.values()):
            if now - slot.seen > self.args.edge_ttl:
                self._forget(slot.name, f"silent for {self.args.edge_ttl:.0f} s: expired")

    # -- inputs --
    def _take(self, env: Envelope) -> None:
        """One input; whatever in it cannot be used raises, and `receive` counts and logs it."""
        msg, now = env.msg, time.monotonic()
        if isinstance(msg, EdgeProfile):
            dag = nx.node_link_graph(msg.graph, directed=True, multigraph=False, edges="edges")
            profile = Profile.from_json(msg.profile)
            profile.check(msg.fingerprint)
            if dag.graph.get("fingerprint") != msg.fingerprint:
                raise DadsError("the edge's graph and profile disagree on the fingerprint")
            costgraph.build(dag, profile, profile)  # refuse now what would fail every tick
            slot = self._slot(msg.sender, now)
            if slot.profile is None or slot.profile.fingerprint != msg.fingerprint:
                log.info("edge profile of %s from %s (%d nodes, fingerprint %s)",
                         clip(msg.model, 64), clip(msg.sender, 64), len(dag),
                         clip(msg.fingerprint, 32))
                others = {p.fingerprint for _, p in self.clouds.values()}
                if others and msg.fingerprint not in others:
                    log.warning("no worker serves the edge's model: %s",
                                describe_mismatch(msg.fingerprint, others.pop()))
            before = slot.profile is not None and slot.profile.predicted
            if slot.profile is None or slot.profile.digest != profile.digest:
                self.replan.set()  # a new edge (or a new profile) is planned at once
            slot.dag, slot.profile = dag, profile
            self._profile_news(f"edge {clip(msg.sender, 64)}", before, profile)
        elif isinstance(msg, CloudProfile):
            profile = Profile.from_json(msg.profile)
            profile.check(msg.fingerprint)
            if msg.worker not in self.clouds:
                log.info("cloud profile from %s (%s)", clip(msg.worker, 64), clip(profile.device.name, 64))
                served = {e.profile.fingerprint for e in self.edges.values() if e.profile}
                if served and msg.fingerprint not in served:
                    log.warning("worker %s serves another model than the edges: %s",
                                clip(msg.worker, 64),
                                describe_mismatch(served.pop(), msg.fingerprint))
            before = msg.worker in self.clouds and self.clouds[msg.worker][1].predicted
            self.clouds[msg.worker] = (now, profile)
            self.tier_of[msg.worker] = msg.tier
            self._prune_clouds(now)
            self._profile_news(f"worker {clip(msg.worker, 64)}", before, profile)
        elif isinstance(msg, Telemetry):
            slot = self._slot(msg.sender, now)
            slot.telemetry = msg
            self._link_news(slot, msg, now)
            self._calibrate(slot, msg)
        elif isinstance(msg, BrokerStats):
            if msg.workers_ready != self.workers_ready and self.workers_ready is not None:
                log.info("the pool has %d worker(s) now (was %d): replanning",
                         msg.workers_ready, self.workers_ready)
                self.replan.set()  # a pool that grew or shrank changes DSH and the regime now
            self.workers_ready = msg.workers_ready
        elif isinstance(msg, Control):
            self._operator(env)

    def _profile_news(self, who: str, was_predicted: bool, profile: Profile) -> None:
        """Say when a predicted profile is planned with, and when a measured one replaces it."""
        if profile.predicted and not was_predicted:
            log.info("%s has not profiled yet: planning with its predicted profile", who)
        elif was_predicted and not profile.predicted:
            log.info("%s measured its profile: it replaces the predicted one", who)
        self.metrics.profiles_predicted.labels("edge").set(
            sum(bool(e.profile and e.profile.predicted) for e in self.edges.values()))
        self.metrics.profiles_predicted.labels("cloud").set(
            sum(p.predicted for _, p in self.clouds.values()))

    def _prune_clouds(self, now: float) -> None:
        for worker, (seen, _) in list(self.clouds.items()):
            if now - seen >= CLOUD_PROFILE_TTL_S:
                del self.clouds[worker]
        while len(self.clouds) > MAX_WORKERS:  # a flood of made-up names: the oldest go
            del self.clouds[min(self.clouds, key=lambda w: self.clouds[w][0])]
        for worker in set(self.tier_of) - set(self.clouds):
            del self.tier_of[worker]

    def _operator(self, env: Envelope) -> None:
        """A Control, answered: refused at once with the reason, or applied and answered after
        the next tick (which runs at once) with the plans it made."""
        msg = env.msg
        assert isinstance(msg, Control)
        try:
            self._control(msg)
        except (ValueError, DadsError) as exc:
            self._answer(env.peer, msg.control_id, False, str(exc))
            raise  # counted and logged as bad input, as before
        self.answers.append(_Answer(env.peer, msg.control_id, self.controls))
        self.pin_error = ""
        self.replan.set()

    def _answer(self, peer: bytes | None, control_id: int, applied: bool, detail: str,
                plans: tuple[str, ...] = ()) -> None:
        if peer is None:
            return
        try:  # never waits: the inbox's loop is this one
            self.inbox.blocking().send(ControlReply(control_id, applied, clip(detail, 400), plans),
                                      to=peer)
        except zmq.ZMQError:  # the operator is gone (or its queue is full): nothing to tell
            log.info("an operator left before its control was answered")

    def _answer_controls(self, ticked_after: int) -> None:
        """Answer each applied control this tick has planned for (it began after the control)."""
        due = [a for a in self.answers if a.controls <= ticked_after]
        if not due:
            return
        self.answers = [a for a in self.answers if a.controls > ticked_after]
        plans = tuple(
            f"{clip(slot.name, 64)}: plan {slot.plan.plan_id} (epoch {slot.plan.epoch}), "
            f"{slot.plan.algorithm}, {len(slot.plan.edge_nodes)} node(s) on the edge"
            for slot in self.edges.values() if slot.plan is not None)
        for a in due:
            if self.pin_error:
                self._answer(a.peer, a.control_id, False, f"pin dropped: {self.pin_error}")
            else:
                self._answer(a.peer, a.control_id, True,
                             "applied" if plans else "applied; no edge has been planned for yet",
                             plans)

    def _control(self, msg: Control) -> None:
        check_control(msg.force_bandwidth_bps, msg.algorithm, msg.latency_goal_s)
        if msg.edge and msg.edge not in self.edges:
            raise ValueError(f"no edge named {msg.edge!r} (known: "
                             f"{', '.join(sorted(self.edges)[:8]) or 'none yet'})")
        known = [slot.dag for slot in self.edges.values() if slot.dag is not None]
        if msg.latency_goal_s and known and not any(dag.exits(g) for g in known):
            raise ValueError("a latency goal chooses among early exits, and no edge's model has "
                             "one (e.g. digits_exits with weights from `dads train-exits`)")
        self.controls += 1
        for slot in self.edges.values():
            if msg.edge_nodes and slot.dag is not None and (not msg.edge or slot.name == msg.edge):
                dag.check_cut(slot.dag, msg.edge_nodes)  # refuse it now, not at every tick
        if (msg.tier_nodes is not None and msg.edge_nodes  # an empty cut unpins: no tiers needed
                and len(msg.tier_nodes) != max(0, len(self.tiers) - 2)):
            raise ValueError(f"a placement over {len(self.tiers)} tiers pins the nodes of "
                             f"{max(0, len(self.tiers) - 2)} middle tier(s), not "
                             f"{len(msg.tier_nodes)} (planner --tiers)")
        if msg.force_bandwidth_bps is not None:
            if msg.edge:
                self.edges[msg.edge].force_bps = msg.force_bandwidth_bps
            else:
                self.force_bps = msg.force_bandwidth_bps
            log.info("operator: bandwidth %s%s", format_bandwidth(msg.force_bandwidth_bps)
                     if msg.force_bandwidth_bps else "from the probe again",
                     f" for edge {clip(msg.edge, 64)}" if msg.edge else "")
        if msg.latency_goal_s is not None:
            self.latency_goal_s = msg.latency_goal_s
            self._repin()  # a new goal: a new choice of exit at the next tick
            log.info("operator: latency goal %s", f"{msg.latency_goal_s * 1e3:g} ms"
                     if msg.latency_goal_s else "none (the most accurate exit)")
        if msg.algorithm is not None:
            self.pin_algorithm = None if msg.algorithm == "auto" else msg.algorithm
            self._repin()
            log.info("operator: algorithm %s", self.pin_algorithm or "by load regime (auto)")
        if msg.edge_nodes is not None:
            self.pin_cut = frozenset(msg.edge_nodes) or None
            self.pin_tiers = msg.tier_nodes if self.pin_cut else None
            self._repin()
            log.info("operator: %s", f"cut pinned ({len(self.pin_cut)} nodes on the edge)"
                     if self.pin_cut else "cut unpinned")

    def _repin(self) -> None:
        for slot in self.edges.values():
            slot.repin = True

    def _link_news(self, slot: EdgeSlot, t: Telemetry, now: float) -> None:
        """Transfers into the edge's estimator; a stalled transfer's bound beside it. A step, or
        an estimate 1.5x away from the one the plan in force was made with, re-plans at once."""
        est = slot.estimator
        was_bounded = est.bounded(now)
        for nbytes, seconds in t.samples:
            if est.add(nbytes, seconds, now):
                slot.calibration.forget_wait()
                self.metrics.bandwidth_steps.inc()
                log.info("bandwidth step: the uplink of %s now measures %s (transfers: %s)",
                         clip(slot.name, 64), format_bandwidth(est.bps or 0.0),
                         ", ".join(f"{b} B in {s * 1e3:.0f} ms" for b, s in t.samples[-4:]))
        if t.stalled_bytes > 0 and t.stalled_s > 0:
            est.bound(t.stalled_bytes, t.stalled_s, now)
        else:
            est.unstalled(now)
        bounded, bw = est.bounded(now), self._bandwidth(slot, now)
        if bounded and not was_bounded:
            log.info("a transfer of %d B has been on the uplink of %s for %.2f s: planning for at "
                     "most %s until transfers show the link's rate", t.stalled_bytes,
                     clip(slot.name, 64), t.stalled_s, format_bandwidth(bw))
        self.metrics.bandwidth_bounded.set(
            sum(e.estimator.bounded(now) for e in self.edges.values()))
        if slot.planned_bps and not slot.planned_bps / 1.5 <= bw <= slot.planned_bps * 1.5:
            self.replan.set()

    def _calibrate(self, slot: EdgeSlot, t: Telemetry) -> None:
        if slot.plan is None or t.plan_id != slot.plan.plan_id:
            return
        cal = slot.calibration
        e, c = slot.plan_factors  # the plan's prediction / these: the profiles' own times
        pred = slot.plan.predicted
        if pred.edge_s:
            cal.observe("edge", t.edge_s, pred.edge_s / e)
        if pred.cloud_s and slot.plan.transfer:
            cal.observe("cloud", t.cloud_s, pred.cloud_s / c)
        if t.wait_s > 0:  # 0: none of the plan's frames answered yet
            cal.observe_wait(t.wait_s)
        for stage in ("edge", "cloud"):
            self.metrics.calibration.labels(slot.name, stage).set(cal.residual(stage))
        self._contradicted(slot, time.monotonic())

    def _contradicted(self, slot: EdgeSlot, now: float) -> None:
        """A profile its own measurements contradict for long (a cache filled while the host
        was busy, a device since throttled): said once, plainly, with what to do; the planner
        plans with the calibrated times meanwhile."""
        for stage in ("edge", "cloud"):
            factor = slot.calibration.factor(stage)
            off = not 1 / PROFILE_TRUSTED <= factor <= PROFILE_TRUSTED
            since = slot.contradicted.get(stage)
            if not off:
                slot.contradicted.pop(stage, None)
                self.metrics.profile_contradicted.labels(slot.name, stage).set(0)
            elif since is None:
                slot.contradicted[stage] = now
            elif now - since >= PROFILE_CONTRADICTED_S and since > 0:
                who = f"edge {clip(slot.name, 64)}" if stage == "edge" else "the workers"
                prof = slot.profile if stage == "edge" else next(
                    (p for _, p in self.clouds.values()), None)
                taken = "" if prof is None else (
                    f"; it was measured {time.strftime('%Y-%m-%d %H:%M', time.localtime(prof.created_at))}"
                    + (f" with the host at load {prof.host_load:.2f} per CPU"
                       if prof.host_load is not None else ""))
                log.warning("the %s profile of %s is %.2fx off what its frames take (for %.0f s)%s:"
                            " planning with the measured times; re-measure it (`dads profile`, "
                            "or delete its file in the profile cache, DADS_CACHE, and restart)",
                            stage, who, factor, now - since, taken)
                self.metrics.profile_contradicted.labels(slot.name, stage).set(1)
                slot.contradicted[stage] = -1.0  # said once

    # -- deciding --
    def _bandwidth(self, slot: EdgeSlot, now: float) -> float:
        if slot.force_bps or self.force_bps:
            return slot.force_bps or self.force_bps
        rate = slot.estimator.estimate(now)
        return rate * 8.0 if rate else self.initial_bps

    def _workers(self) -> int:
        return max(1, self.workers_ready if self.workers_ready is not None else len(self.clouds))

    def _cost_graph(self, slot: EdgeSlot) -> tuple[nx.DiGraph, CutSolver] | None:
        if slot.dag is None or slot.profile is None:
            return None
        edge = slot.profile
        self._prune_clouds(time.monotonic())
        clouds = sorted((w, p) for w, (_, p) in self.clouds.items()
                        if p.fingerprint == edge.fingerprint)
        if not clouds:
            return None
        cal = slot.calibration
        key = (edge.digest, tuple((w, p.digest) for w, p in clouds), cal.factor("edge"),
               cal.factor("cloud"))
        if key != slot.graph_key:
            g = cost_graph(slot.dag, edge, merge_cloud_profiles([p for _, p in clouds]), cal)
            names = fidelity.select(costgraph.codec_names(g), costgraph.codec_names(g, lossy=True),
                                    self.wanted, self.budget, self.fidelity_table,
                                    edge.fingerprint)
            if names != slot.codecs:
                log.info("codecs a plan for %s may use (%s, fidelity %s): %s", clip(slot.name, 64),
                         self.args.codecs, self.budget, ", ".join(sorted(names))
                         or "none (raw tensors)")
            slot.codecs = names
            slot.graph, slot.graph_key = (g, CutSolver(g, names)), key
        return slot.graph

    async def _tick(self) -> None:
        controls = self.controls
        try:
            await self._plan_all()
        finally:
            self._answer_controls(controls)

    async def _plan_all(self) -> None:
        self._expire(time.monotonic())
        if self.tiers:
            for slot in list(self.edges.values()):
                await self._tick_tiers(slot)
        else:
            decided = []
            for slot in list(self.edges.values()):
                got = await self._decide(slot)
                if got is not None:
                    decided.append(got)
            self._want_workers(decided)
            if (len(decided) > 1 and self.pin_cut is None and self.pin_algorithm is None
                    and not self.args.independent):
                decided = await self._share(decided)
            for slot, g, bw, k, decision, cand, reason in decided:
                self._issue(slot, g, bw, k, decision, cand, reason)
        if any(slot.plan is not None and slot.plan.created_at >= time.time() - self.args.tick
               for slot in self.edges.values()):
            await self._republish()

    async def _off_loop(self, slot: EdgeSlot, solve: Callable[..., Any], *args: Any) -> Any:
        """`solve(*args)` in the executor, bounded by --solve-timeout, so the inbox and the
        republishing go on while it runs; one at a time per edge. None while the edge's last
        solve is still running (slow or stuck: not a second one) or after a timeout (logged,
        counted; the plan in force stays)."""
        if slot.solving is not None and not slot.solving.done():
            return None
        slot.solving = asyncio.get_running_loop().run_in_executor(None, solve, *args)
        try:
            return await asyncio.wait_for(asyncio.shield(slot.solving), self.args.solve_timeout)
        except TimeoutError:
            log.error("planning took over %.0f s; the plan in force stays (--solve-timeout)",
                      self.args.solve_timeout)
            self.metrics.errors.labels("solve_timeout").inc()
            return None

    async def _decide(self, slot: EdgeSlot) -> tuple | None:
        """One edge's candidate plan this tick: its regime's (or the operator's pin)."""
        built = self._cost_graph(slot)
        if built is None:
            return None
        g, solver = built
        bw = slot.planned_bps = self._bandwidth(slot, time.monotonic())
        t = slot.telemetry
        fps = t.arrival_fps if t else 0.0
        queue = t.queue_depth if t else 0
        k = self._workers()
        controls = self.controls  # an operator control during the solve makes its result stale
        solved = await self._off_loop(
            slot, _solve, g, solver, bw, fps, k, queue, time.monotonic(), slot.regime, self.cfg,
            self.pin_cut, self.pin_algorithm, slot.codecs, self.latency_goal_s)
        if solved is None:
            return None
        decision, slot.regime, cand, reason, pin_error = solved
        if self.controls != controls:
            return None  # solved for settings the operator has changed since: re-plan next tick
        if pin_error:  # e.g. a pinned cut of another model
            log.error("pin dropped: %s", pin_error)
            self.pin_error = str(pin_error)
            self.metrics.errors.labels("bad_input").inc()
            self.pin_cut = self.pin_algorithm = None
        return slot, g, bw, k, decision, cand, reason

    def _want_workers(self, decided: list[tuple]) -> None:
        """`dads_pool_workers_wanted`: what an autoscaler (HPA, KEDA, compose --scale) acts on.
        Each edge's demand is its arrival rate times its latency plan's (DSL's, or its exit's)
        cloud time per frame, calibrated; the pool that serves the sum at most `leave_heavy`
        busy keeps every edge on its latency plan. Not the plan in force: under heavy load that
        has moved work off a pool too small, which would hide the need."""
        for slot, _, _, _, decision, _, _ in decided:
            fps = slot.telemetry.arrival_fps if slot.telemetry else 0.0
            slot.demand = fps * getattr(decision, "dsl", decision.plan).predicted.cloud_s
        self._set_wanted()

    def _set_wanted(self) -> None:
        demand = sum(slot.demand for slot in self.edges.values())
        self.metrics.pool_workers_wanted.set(pool.workers_wanted(demand, self.cfg.leave_heavy))

    async def _share(self, decided: list[tuple]) -> list[tuple]:
        """Several edges, one pool: while their own plans would ask more of the pool than it
        has (enter above HEADROOM x workers, leave below LEAVE_SHARED x workers), the plans are
        chosen together (`pool.share`: the least worst latency within capacity)."""
        k = self._workers()
        own = sum((s.telemetry.arrival_fps if s.telemetry else 0.0) * cand.predicted.cloud_s
                  for s, _, _, _, _, cand, _ in decided)
        self.metrics.pool_demand.set(own / k)
        was = self.shared
        self.shared = own > pool.HEADROOM * k if not was else own > LEAVE_SHARED * k
        if self.shared != was:
            log.info("the edges' own plans ask %.2f worker-s/s of %d worker(s): %s", own, k,
                     "choosing their plans together" if self.shared else "each plans alone again")
        if not self.shared:
            return decided
        loads, opts = [], {}
        for slot, g, bw, *_ in decided:
            fps = slot.telemetry.arrival_fps if slot.telemetry else 0.0
            loads.append(pool.EdgeLoad(slot.name, g, bw, fps))
            opts[slot.name] = pool.options(g, bw, slot.graph[1] if slot.graph else None)
        joint = await asyncio.get_running_loop().run_in_executor(None, pool.share, loads, opts, k)
        self.metrics.pool_demand.set(joint.demand / k)
        out = []
        for slot, g, bw, k_, decision, _, _ in decided:
            o = joint.choice[slot.name]
            cand = partition.make_plan(g, o.edge_nodes, bw, "shared", k_, dict(o.codecs) or None)
            out.append((slot, g, bw, k_, decision, cand, joint.reason))
        return out

    def _issue(self, slot: EdgeSlot, g: nx.DiGraph, bw: float, k: int, decision: Any,
               cand: partition.Plan, reason: str) -> None:
        """Publish the edge's candidate when it beats the plan in force (or was pinned)."""
        cand = replace(cand, edge=slot.name)
        pinned, slot.repin = slot.repin, False
        self.metrics.bandwidth.labels(slot.name).set(bw / 8.0)
        fps = slot.telemetry.arrival_fps if slot.telemetry else 0.0
        self.metrics.arrival_rate.labels(slot.name).set(fps)
        self.metrics.workers.set(k)
        self.metrics.regime_heavy.labels(slot.name).set(
            1 if decision.regime is Regime.HEAVY or self.shared else 0)
        now_shared = slot.plan is not None and slot.plan.algorithm == "shared"
        joint = cand.algorithm == "shared"  # the pool's choice: taken as it is, when it differs
        if (pinned or joint != now_shared
                or (joint and slot.plan is not None
                    and set(cand.edge_nodes) != set(slot.plan.edge_nodes))
                or (not joint and should_switch(slot.plan, cand, g, bw, k, decision.regime,
                                                self.args.threshold))):
            slot.plan = self.book.issue(cand, time.time())
            slot.plan_factors = g.graph.get("calibration", (1.0, 1.0))
            slot.calibration.forget_wait()
            self.metrics.plan_changes.inc()
            log.info("plan %d: %s for %s, %d/%d nodes on the edge, %d tensor(s) (%d B) cross; "
                     "bandwidth %s, %.2f fps, %d worker(s); predicted latency %.1f ms, %.2f fps; "
                     "%s", slot.plan.plan_id, slot.plan.algorithm, clip(slot.name, 64),
                     len(slot.plan.edge_nodes), len(g), len(slot.plan.transfer),
                     slot.plan.transfer_bytes, format_bandwidth(bw), fps, k,
                     slot.plan.predicted.latency_s * 1e3, slot.plan.predicted.throughput_fps,
                     reason)
        assert slot.plan is not None
        current = _evaluate(g, slot.plan, bw, k)
        self.metrics.load_factor.labels(slot.name).set(fps * current.bottleneck_s)
        self._in_force(slot, current, str(decision.regime), bw, reason)

    def _in_force(self, slot: EdgeSlot, predicted: partition.Prediction, regime: str, bw: float,
                  reason: str) -> None:
        """The edge's plan in force: its metrics, and its place in the republished set."""
        plan = slot.plan
        assert plan is not None
        if not plan.tiers:  # over tiers, the edge's "wait" holds the middle tiers' times too
            predicted = predicted.waiting(slot.calibration.wait_s)
        self.metrics.plan_id.set(plan.plan_id)
        self.metrics.plan.info({"plan_id": str(plan.plan_id), "algorithm": plan.algorithm,
                                "regime": regime})
        for stage, value in (("edge", predicted.edge_s), ("transfer", predicted.transfer_s),
                             ("cloud", predicted.cloud_s), ("wait", predicted.wait_s)):
            self.metrics.predicted.labels(slot.name, stage).set(value)
        self.metrics.edge_latency.labels(slot.name).set(predicted.latency_s)
        # republished with what it predicts now (the estimate and the calibration move on; the
        # edge's admission follows the prediction): the same key, the same cut
        self.book.publish(plan.key, PlanMsg(replace(plan, predicted=predicted).to_json(), regime,
                                            bw, reason), slot.name)

    def _tier_problem(self, slot: EdgeSlot, bw: float) -> tiers.TierProblem | None:
        """Today's placement problem for an edge: its times, each later tier's (its workers'
        profiles merged), the links' rates, the codecs its first link may use (the policy's, as
        for two tiers); None while a tier has no worker."""
        if slot.dag is None or slot.profile is None:
            return None
        edge = slot.profile
        self._prune_clouds(time.monotonic())
        times = [edge.node_times_s]
        for name in self.tiers[1:]:
            mine = [p for w, (_, p) in sorted(self.clouds.items())
                    if self.tier_of.get(w) == name and p.fingerprint == edge.fingerprint]
            if not mine:
                if self.tier_wait != name:
                    log.info("no worker of tier %s yet (--tier %s): no plan over tiers", name, name)
                self.tier_wait = name
                return None
            times.append(merge_cloud_profiles(mine).node_times_s)
        self.tier_wait = ""
        graph = self._cost_graph(slot)  # its nodes' codecs, measured on the edge's frames
        if graph is None:
            return None
        return tiers.TierProblem(graph[0], self.tiers, tuple(times), (bw, *self.links_bps),
                                 codecs=slot.codecs)

    async def _tick_tiers(self, slot: EdgeSlot) -> None:
        """Scission on the running system: this edge's placement over the tiers for its load
        (`regime.decide_tiers`: latency while the slowest stage keeps up, throughput under heavy
        load; solved off the loop) or the pinned one, published when it beats the plan in force
        by the threshold (in latency, or in its slowest stage under heavy load)."""
        bw = slot.planned_bps = self._bandwidth(slot, time.monotonic())
        problem = self._tier_problem(slot, bw)
        if problem is None:
            return
        k = max(1, sum(1 for w in self.clouds if self.tier_of.get(w) == self.tiers[-1]))
        regime, reason = Regime.LIGHT, f"placement over {'->'.join(self.tiers)}"
        try:
            if self.pin_cut is not None:
                pinned = partition.Plan("pinned", "", tuple(self.pin_cut), (), _NO_PREDICTION,
                                        bw, tier_nodes=self.pin_tiers or ())
                best, algorithm = tiers.placement_of(problem, pinned), "pinned"
            else:
                t, controls = slot.telemetry, self.controls
                solved = await self._off_loop(
                    slot, decide_tiers, problem, t.arrival_fps if t else 0.0, k, slot.regime,
                    time.monotonic(), t.queue_depth if t else 0, self.cfg)
                if solved is None:
                    return
                decision, slot.regime = solved
                if self.controls != controls:
                    return  # solved for settings the operator has changed since
                best, regime, reason = decision.placement, decision.regime, decision.reason
                algorithm = "tiers" if regime is Regime.LIGHT else "tiers_dsh"
        except (DadsError, ValueError) as exc:
            log.error("pin dropped: %s", exc)
            self.metrics.errors.labels("bad_input").inc()
            self.pin_cut = self.pin_tiers = None
            return
        cand = replace(tiers.to_plan(problem, best, algorithm, k), edge=slot.name)
        repin, slot.repin = slot.repin, False
        current = None
        if slot.plan is not None and slot.plan.tiers == self.tiers:
            with contextlib.suppress(DadsError, ValueError):
                current = tiers.placement_of(problem, slot.plan)

        def score(x: tiers.Placement) -> float:
            return tiers.bottleneck_s(problem, x, k) if regime is Regime.HEAVY else x.latency_s

        if (repin or current is None or slot.plan is None
                or slot.plan.fingerprint != cand.fingerprint
                or (slot.plan.algorithm != algorithm and best.tier_of != current.tier_of)
                or score(best) < score(current) * (1 - self.args.threshold)):
            slot.plan = self.book.issue(cand, time.time())
            slot.plan_factors = (1.0, 1.0)  # tiers plan on the profiles as they are
            self.metrics.plan_changes.inc()
            log.info("plan %d: %s over %s for %s, nodes per tier %s, bytes per link %s (first "
                     "link: %s); links %s; predicted latency %.1f ms, %.2f fps; %s",
                     slot.plan.plan_id, algorithm, "->".join(self.tiers), clip(slot.name, 64),
                     [len(best.nodes_on(t)) for t in range(len(self.tiers))],
                     list(best.link_bytes), ", ".join(sorted(set(best.codecs.values()))) or "raw",
                     ", ".join(format_bandwidth(b) for b in problem.bandwidths_bps),
                     best.latency_s * 1e3, cand.predicted.throughput_fps, reason)
        self.metrics.bandwidth.labels(slot.name).set(bw / 8.0)
        self.metrics.workers.set(k)
        self.metrics.regime_heavy.labels(slot.name).set(1 if regime is Regime.HEAVY else 0)
        self._in_force(slot, slot.plan.predicted, str(regime), bw, reason)

    async def _republish(self) -> None:
        for msg in self.book.items():
            with contextlib.suppress(zmq.ZMQError):
                await self.pub.send(msg, nowait=True)


_NO_PREDICTION = partition.Prediction(0.0, 0.0, 0.0, 0.0, 0.0)


def _solve(g: nx.DiGraph, solver: CutSolver, bw: float, fps: float, k: int, queue: int,
           now: float, regime: RegimeState, cfg: Hysteresis, pin_cut: frozenset[str] | None,
           pin_algorithm: str | None, codecs: frozenset[str] = frozenset(),
           latency_goal_s: float = 0.0) -> tuple[Any, RegimeState, partition.Plan, str, str]:
    """One planning decision (pure: runs in a worker thread): the regime's plan (an early-exit
    model: Edgent's exit and cut for the latency goal), or the pin's; a pin that cannot be used
    is reported (last item) and the regime's plan kept."""
    if dag.exits(g):
        decision = decide_exit(g, bw, fps, latency_goal_s, k, codecs)
    else:
        decision, regime = decide(g, bw, fps, k, regime, now, queue, cfg, solver)
    cand, reason = decision.plan, decision.reason
    try:
        if pin_cut is not None:
            cand = partition.make_plan(g, pin_cut, bw, "pinned", k,
                                       solver.choice(1.0, 8.0 / bw, 1.0) if codecs else None)
            reason = "operator pinned this cut"
        elif pin_algorithm is not None:
            cand = partition.solve(g, pin_algorithm, bw, k, codecs)
            reason = f"operator pinned {pin_algorithm}"
    except (DadsError, ValueError) as exc:
        return decision, regime, decision.plan, decision.reason, str(exc)
    return decision, regime, cand, reason, ""


def _evaluate(g: nx.DiGraph, plan: partition.Plan, bw: float, k: int) -> partition.Prediction:
    """The plan in force under today's cost graph (raw, if its codecs are no longer listed;
    an exit's plan on the nodes that exit needs)."""
    g = dag.needed_by(g, plan.exit) if plan.exit else g
    try:
        return partition.evaluate(g, plan.edge_nodes, bw, k, plan.codecs)
    except DadsError:
        return partition.evaluate(g, plan.edge_nodes, bw, k)


def _tier_chain(names: str | None, links: str | None) -> tuple[tuple[str, ...], tuple[float, ...]]:
    """--tiers and --links: the tiers in data-flow order, the rates of the links after the first
    (the edge's uplink is probed); () for a plain edge-and-pool planner."""
    chain = tuple(t.strip() for t in (names or "").split(",") if t.strip())
    if not chain:
        return (), ()
    if len(chain) < 3 or len(set(chain)) != len(chain):
        raise DadsError("--tiers: three or more distinct tiers in data-flow order, e.g. "
                        "device,edge,cloud (two tiers are the plain planner)")
    try:
        rates = tuple(parse_bandwidth(x) for x in (links or "").split(",") if x.strip())
    except ValueError as exc:
        raise DadsError(f"--links: {exc}") from None
    if len(rates) != len(chain) - 2:
        raise DadsError(f"--links: {len(chain) - 2} rate(s) for the links after the first "
                        f"(the first, {chain[0]}->{chain[1]}, is probed), e.g. 1gbit")
    return chain, rates


def add_arguments(p: argparse.ArgumentParser) -> None:
    config.add_security_arguments(p)
    p.add_argument("--plans", default=config.endpoint("", "DADS_PLAN_PORT", bind=True),
                   help="bind address publishing plans (env DADS_BIND_HOST, DADS_PLAN_PORT)")
    p.add_argument("--telemetry", default=config.endpoint("", "DADS_TELEMETRY_PORT", bind=True),
                   help="bind address taking profiles and telemetry (env DADS_TELEMETRY_PORT)")
    p.add_argument("--initial-bandwidth", default=config.env("DADS_INITIAL_BANDWIDTH"),
                   metavar="RATE", help="assumed before any measurement (env DADS_INITIAL_BANDWIDTH)")
    p.add_argument("--threshold", type=float, default=0.05,
                   help="change plan only for a predicted gain above this fraction (0.05)")
    p.add_argument("--tick", type=float, default=0.5, metavar="S", help="decide every S s (0.5)")
    p.add_argument("--dwell", type=float, default=5.0, metavar="S",
                   help="stay at least S s in a load regime before leaving it (5)")
    p.add_argument("--solve-timeout", type=float, default=10.0, metavar="S",
                   help="give up a planning solve after S s and keep the plan in force (10)")
    p.add_argument("--codecs", default=config.env("DADS_CODECS"), metavar="auto|none|LIST",
                   help="codecs a plan may use: auto (all the fidelity policy allows; default), "
                   "none (raw tensors), or a list, e.g. png,zstd (env DADS_CODECS)")
    p.add_argument("--fidelity", default=config.env("DADS_FIDELITY"), metavar="POLICY",
                   help="what codecs may trade: lossless (bit-exact results; default), any, "
                   "top1:0.99 or error:0.01, measured in --fidelity-table (env DADS_FIDELITY)")
    p.add_argument("--fidelity-table", default=config.env("DADS_FIDELITY_TABLE") or None,
                   metavar="FILE", help="each codec's fidelity on this model, from `dads codecs "
                   "MODEL --images DIR --out FILE` (env DADS_FIDELITY_TABLE)")
    p.add_argument("--latency-goal", default=config.env("DADS_LATENCY_GOAL") or None,
                   metavar="DURATION", help="an early-exit model: the most accurate exit whose "
                   "best cut meets this, e.g. 200ms (env DADS_LATENCY_GOAL)")
    p.add_argument("--tiers", default=config.env("DADS_TIERS") or None, metavar="LIST",
                   help="place the model over a chain of tiers (Scission), e.g. device,edge,cloud:"
                   " the edge agent is the first, workers say theirs with --tier (env DADS_TIERS)")
    p.add_argument("--links", default=config.env("DADS_LINKS") or None, metavar="RATES",
                   help="with --tiers: the rates of the links after the first, e.g. 1gbit (the "
                   "first is probed) (env DADS_LINKS)")
    p.add_argument("--independent", action="store_true",
                   help="plan each edge alone, blind to the others' use of the pool (the "
                   "baseline of bench.many_edges)")
    p.add_argument("--edge-ttl", type=float, default=30.0, metavar="S",
                   help="forget an edge (and withdraw its plans) silent this long (30)")
    p.add_argument("--calibrate", action=argparse.BooleanOptionalAction,
                   default=config.env("DADS_CALIBRATE") != "0",
                   help="scale each edge's cost model by its measured / predicted edge and "
                   "cloud times, with hysteresis (default on; env DADS_CALIBRATE=0 turns it off)")
    p.add_argument("--metrics-port", type=int,
                   default=int(config.env("DADS_METRICS_PORT") or 9102), help="default 9102")


def main(args: argparse.Namespace) -> int:
    setup_logging("planner")
    return run_service(Planner(args).run)
