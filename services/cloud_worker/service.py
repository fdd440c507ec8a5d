"""The cloud worker.

Connects to the broker's backend (DEALER), announces itself, heartbeats, and answers requests.
A request is served in a task of its own, so the receive loop keeps hearing the broker (and the
heartbeat keeps flowing) however long the compute takes. For each request it finds the plan by
its key (epoch, plan_id) (plans arrive over the planner's PUB socket and are kept, a few at a
time, so frames sent under an earlier plan, or an earlier planner, still finish), builds the cloud
part once per plan, checks that the tensors are exactly those the plan's cut sends, runs it off
the event loop and answers with the top classes (and the raw output when asked). Anything it
cannot serve gets an explicit error reply, never a wrong answer.

A middle tier (Scission: `--tier edge --next-broker ...`) is a worker too: for a plan over
tiers it runs its tier's nodes and sends what crosses the next link to the next tier's broker,
as an edge would (an edge key of its own), then relays the answer back. A plan that ends at
its tier (nothing placed later) it answers itself.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass, replace
from typing import Any

import torch
import zmq

from common.errors import DadsError
from common.model import codecprofile
from common.model.graph import ModelGraph
from common.model.hosting import host_model, remeasure, top_k
from common.model.models import synthetic_frame
from common.model.split import CloudPart, StagePart, cloud_part, stage_part
from common.planning import dag
from common.planning.costgraph import describe_mismatch
from common.planning.partition import Plan
from common.planning.profile import scaled
from common.runtime import config
from common.runtime.metrics import WorkerMetrics
from common.runtime.security import Keys, from_options
from common.runtime.service import Service, run_service, sent_first, setup_logging
from common.runtime.tensorwire import CodecStat, from_frames, to_frames
from common.runtime.transport import Channel, Envelope
from common.runtime.wire import (
    CloudProfile,
    ErrorCode,
    ErrorReply,
    Heartbeat,
    PlanMsg,
    Ready,
    Request,
    Result,
    WireError,
    clip,
)

__all__ = ["CloudWorker", "add_arguments", "main"]

log = logging.getLogger("cloud_worker")
PLANS_KEPT = 1024  # plans are small; many edges each have a few live ones
PARTS_KEPT = 32  # built parts, by cut: edges with the same cut share one
PLAN_WAIT_S = 3.0  # the planner republishes its live plans every second


@dataclass
class _Served:
    plan: Plan
    part: CloudPart | None = None  # a StagePart when this tier forwards


def stage_of(plan: Plan, tier: str, needed: frozenset[str]
             ) -> tuple[frozenset[str], frozenset[str] | None]:
    """What a worker of `tier` runs for `plan`: (the nodes run before it, the nodes run up to
    and on it) -- None when it answers (the plan places nothing after it; every tier of a
    two-tier plan answers). Raises ValueError when the plan does not pass through this tier."""
    if not plan.tiers:
        return frozenset(plan.edge_nodes), None
    if tier not in plan.tiers[1:]:
        raise ValueError(f"plan {plan.plan_id} runs on {', '.join(plan.tiers)}; this worker's "
                         f"tier is {tier!r} (--tier)")
    i = plan.tiers.index(tier)
    upto = plan.upto(i) if i < len(plan.tiers) - 1 else None
    return plan.upto(i - 1), (None if upto is None or needed <= upto else upto)


class CloudWorker(Service):
    name = "cloud_worker"
    # the answers finished while draining (close) are still queued when the socket closes:
    # closing at once dropped one under load, and its frame waited out its deadline
    close_linger_ms = 2000

    def __init__(self, args: argparse.Namespace) -> None:
        super().__init__(WorkerMetrics(), from_options(args.keys, args.insecure, "worker"),
                         args.metrics_port, args.metrics_host)
        self.args = args
        self.worker = args.id or f"{socket.gethostname()}-{os.getpid()}"
        self.plans: OrderedDict[tuple[int, int], _Served] = OrderedDict()
        self.parts: OrderedDict[tuple, CloudPart] = OrderedDict()
        self.epoch = 0  # the newest planner epoch seen: a new one gets our profile at once
        self.broker_seen = 0.0
        self.serving: set[asyncio.Task[None]] = set()
        self.profile_sent = ""  # the digest of the profile last handed to the planner
        self._receiver: asyncio.Task[None] | None = None
        self._new_plan = asyncio.Event()
        self.next: Channel | None = None  # the next tier's broker (a middle tier)
        self.forwarded: dict[int, asyncio.Future[Envelope]] = {}
        self._next_id = 0

    # -- setup --
    def _load(self) -> ModelGraph:
        hosted = host_model(self.args)
        self.device, self.profile = hosted.device, hosted.profile
        if self.args.slowdown > 1:  # the planner must see the emulated device, not this one
            self.profile = scaled(self.profile, 1.0 / self.args.slowdown)
        if self.args.codec_frames > 0:  # decode times on this machine (sizes are the edge's)
            frames = [(synthetic_frame(i, hosted.shape),) for i in range(self.args.codec_frames)]
            self.profile = replace(self.profile,
                                   codecs=codecprofile.measure(hosted.graph, frames))
        return hosted.graph

    async def start(self) -> None:
        a = self.args
        log.info("worker %s loading %s", self.worker, a.model)
        self.graph = await self.compute(self._load)
        log.info("model %s ready on %s, fingerprint %s", a.model, self.device,
                 self.graph.fingerprint[:12])
        self.plan_sub = self.open(zmq.SUB, a.plans, bind=False, server="planner")
        self.telemetry = self.open(zmq.DEALER, a.telemetry, bind=False, server="planner")
        self._connect()
        if a.next_broker:
            keys = (None if self.keys is None else
                    Keys.load(a.next_keys or a.keys, "edge", a.next_key_name))
            self.next = Channel.open(zmq.DEALER, a.next_broker, bind=False, keys=keys,
                                     server="broker")
            self.channels.append(self.next)
            log.info("tier %s: forwards to the next tier's broker %s", a.tier, a.next_broker)
        self._measuring = (asyncio.create_task(self._measure_profile())
                           if self.profile.predicted else None)

    def tasks(self) -> dict[str, Coroutine[Any, Any, None]]:
        out = {"plans": self.receive(self.plan_sub, {PlanMsg: self._on_plan}),
               "heartbeat": self.every(1.0, self._heartbeat),
               "profile": self.every(5.0, self._publish_profile)}
        if self.next is not None:
            out["next tier"] = self.receive(self.next, {Result: self._on_answer,
                                                        ErrorReply: self._on_answer})
        return out

    async def close(self) -> None:
        """A stop (SIGTERM: a scale-down, an eviction; Ctrl-C) finishes the requests in hand
        and answers them, up to --drain seconds, before the socket closes: taking no new one
        meanwhile (what the broker dispatches after it is re-queued when the link drops)."""
        if self.serving:
            if self._receiver is not None:
                self._receiver.cancel()
            log.info("stopping: finishing %d request(s) in hand first (up to %.0f s)",
                     len(self.serving), self.args.drain)
            _, late = await asyncio.wait(set(self.serving), timeout=self.args.drain)
            if late:
                log.warning("stopping: %d request(s) not finished in %.0f s are left to the "
                            "broker to re-queue", len(late), self.args.drain)
        tasks = [*self.serving, *([self._receiver] if self._receiver else []),
                 *([self._measuring] if getattr(self, "_measuring", None) else [])]
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await super().close()

    def _connect(self) -> None:
        """(Re)open the broker socket and its receive loop; Ready goes out on the next beat."""
        if self._receiver is not None:
            self._receiver.cancel()
            self.forget(self.dealer)
        self.dealer = self.open(zmq.DEALER, self.args.broker, bind=False,
                                identity=self.worker.encode(), server="broker")
        self._receiver = asyncio.create_task(
            self.receive(self.dealer, {Request: self._on_request, Heartbeat: self._on_heartbeat},
                         refused=self._refused), name="broker")
        self._receiver.add_done_callback(self._task_done)  # if it dies, liveness reconnects
        self.broker_seen = time.monotonic()
        self._ready_sent = False

    # -- loops --
    async def _heartbeat(self) -> None:
        if time.monotonic() - self.broker_seen > self.args.broker_liveness:
            log.warning("no word from the broker for %.0f s: reconnecting", self.args.broker_liveness)
            self._connect()
        if not self._ready_sent:
            await self.dealer.send(Ready(self.worker, self.graph.fingerprint, str(self.device)))
            self._ready_sent = True
        else:
            await self.dealer.send(Heartbeat(self.worker, time.time()))

    async def _publish_profile(self) -> None:
        try:
            await self.telemetry.send(CloudProfile(self.worker, self.graph.fingerprint,
                                                   self.profile.to_json(), self.args.tier),
                                      nowait=True)
        except zmq.ZMQError:
            return  # not connected (yet): the next beat tries again
        self.profile_sent = self.profile.digest

    async def _measure_profile(self) -> None:
        """Serve on the predicted profile while the real one is measured, then publish it."""
        log.info("no cached profile: the planner gets a predicted one while this one is measured")
        await sent_first(lambda: self.profile_sent == self.profile.digest)
        try:
            self.profile = await asyncio.to_thread(remeasure, self.profile, self.graph,
                                                   self.device, self.args, self.args.slowdown)
        except Exception:
            log.exception("profiling failed: the planner keeps the predicted profile")
            return
        log.info("profile measured (%.1f ms a frame): the planner gets it", self.profile.total_s * 1e3)
        await self._publish_profile()

    async def _on_plan(self, env: Envelope) -> None:
        msg: PlanMsg = env.msg  # type: ignore[assignment]
        try:
            plan = Plan.from_json(msg.plan)
        except (KeyError, TypeError, ValueError):
            self.metrics.errors.labels(ErrorCode.SCHEMA).inc()
            return
        if plan.epoch > self.epoch:  # a (re)started planner: tell it what we are now
            self.epoch = plan.epoch
            await self._publish_profile()
        if plan.fingerprint == self.graph.fingerprint and plan.key not in self.plans:
            self.plans[plan.key] = _Served(plan)
            while len(self.plans) > PLANS_KEPT:
                self.plans.popitem(last=False)
            self.metrics.plans_cached.set(len(self.plans))
            self._new_plan.set()  # wake requests that came before their plan
            self._new_plan = asyncio.Event()
            log.info("plan %d (%s): %d edge nodes, %d crossing", plan.plan_id, plan.algorithm,
                     len(plan.edge_nodes), len(plan.transfer))

    async def _refused(self, exc: WireError) -> None:
        log.warning("bad message from the broker: %s", exc)

    def _on_heartbeat(self, env: Envelope) -> None:
        self.broker_seen = time.monotonic()

    def _on_request(self, env: Envelope) -> None:
        """Served off this loop: it must keep hearing the broker while the compute runs."""
        self.broker_seen = time.monotonic()
        task = asyncio.create_task(self._serve(env))
        self.serving.add(task)
        task.add_done_callback(self._task_done)

    def _task_done(self, task: asyncio.Task[None]) -> None:
        """A request served, or the receive loop ended: a failure is logged, never silent."""
        self.serving.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("task %s failed", task.get_name(), exc_info=task.exception())

    # -- serving --
    async def _reply_error(self, req: Request, code: str, message: str, retry: bool = False) -> None:
        self.metrics.errors.labels(code).inc()
        self.metrics.requests.labels("refused").inc()
        await self.dealer.send(ErrorReply(req.request_id, code, message, retry))

    async def _serve(self, env: Envelope) -> None:
        req: Request = env.msg  # type: ignore[assignment]
        t0 = time.perf_counter()
        if req.fingerprint != self.graph.fingerprint:
            await self._reply_error(req, ErrorCode.FINGERPRINT,
                                    f"worker {self.worker} serves {self.args.model} with fingerprint "
                                    f"{self.graph.fingerprint}, the edge {clip(req.fingerprint, 40)}"
                                    f": {describe_mismatch(self.graph.fingerprint, req.fingerprint)}")
            return
        served = await self._plan_for((req.plan_epoch, req.plan_id))
        if served is None:
            await self._reply_error(req, ErrorCode.UNKNOWN_PLAN,
                                    f"plan {req.plan_epoch}:{req.plan_id} is not known here (yet)",
                                    retry=True)
            return
        if served.part is None:
            plan = served.plan
            key = (plan.edge_nodes, plan.tiers, plan.tier_nodes, plan.exit)
            served.part = self.parts.get(key)
            if served.part is None:
                t = time.perf_counter()
                try:
                    served.part = await self.compute(self._build, plan)
                except (DadsError, ValueError) as exc:  # not this tier's plan, or not a cut
                    await self._reply_error(req, ErrorCode.UNKNOWN_PLAN, str(exc))
                    return
                self.metrics.split_build.observe(time.perf_counter() - t)
                self.parts[key] = served.part
                while len(self.parts) > PARTS_KEPT:
                    self.parts.popitem(last=False)
            self.parts.move_to_end(key)
        got = [(m.name, m.dtype, m.shape) for m in req.tensors]
        if got != served.part.wire_frames:
            want = served.part.wire_frames
            first = next((i for i, (a, b) in enumerate(zip(got, want, strict=False)) if a != b),
                         min(len(got), len(want)))
            await self._reply_error(
                req, ErrorCode.BAD_TENSORS,
                f"plan {req.plan_id} takes {len(want)} tensor(s), the request has {len(got)}; "
                f"first difference at #{first}: expected "
                f"{clip(want[first] if first < len(want) else None, 120)}, "
                f"got {clip(got[first] if first < len(got) else None, 120)}")
            return
        stats: list[CodecStat] = []
        try:
            output = await self.compute(self._run, served.part, req, env.frames, stats)
        except WireError as exc:  # a tensor that does not decode to what its header declares
            await self._reply_error(req, exc.code, str(exc))
            return
        except Exception as exc:  # a per-request failure: answer it, keep serving
            log.exception("request %d failed", req.request_id)
            await self._reply_error(req, ErrorCode.INTERNAL, f"{type(exc).__name__}: {exc}")
            return
        for codec, raw, encoded, seconds in stats:
            self.metrics.codec_bytes.labels(codec, "raw").inc(raw)
            self.metrics.codec_bytes.labels(codec, "encoded").inc(encoded)
            self.metrics.codec_time.labels(codec).observe(seconds)
        if isinstance(served.part, StagePart):
            await self._forward(req, served.part, output, t0)
            return
        classes, scores = top_k(output)
        outputs, frames = ((), [])
        if req.want_output:
            outs = output if isinstance(output, (tuple, list)) else (output,)
            outputs, frames = to_frames([f"output{i}" for i in range(len(outs))], list(outs))
        cloud_s = time.perf_counter() - t0
        self.metrics.stage.labels("cloud").observe(cloud_s)
        self.metrics.requests.labels("served").inc()
        await self.dealer.send(Result(req.request_id, req.frame_id, req.plan_id, self.worker,
                                      classes, scores, cloud_s, outputs=outputs,
                                      exit=served.plan.exit), frames)

    def _build(self, plan: Plan) -> CloudPart:
        """This tier's part of a plan: the rest of the model, or (a middle tier with more
        placed after it) its stage, which forwards."""
        exit = plan.exit or None
        needed = frozenset(self.graph.nodes if exit is None else dag.needed_by(self.graph.dag, exit))
        before, upto = stage_of(plan, self.args.tier, needed)
        if upto is None:
            return cloud_part(self.graph, before, exit)
        if self.next is None:
            raise DadsError(f"plan {plan.plan_id} places nodes after tier {self.args.tier!r}, "
                            "and this worker has no --next-broker to send them to")
        return stage_part(self.graph, before, upto, exit)

    async def _forward(self, req: Request, part: StagePart, tensors: Any, t0: float) -> None:
        """Send this tier's crossing tensors to the next tier and relay its answer (or its
        error: the edge retries what may be retried) back, within the edge's deadline."""
        assert self.next is not None
        metas, frames = to_frames(part.send_names, list(tensors))
        self._next_id += 1
        rid, left = self._next_id, max(0.1, req.deadline_s - (time.perf_counter() - t0))
        answer: asyncio.Future[Envelope] = asyncio.get_running_loop().create_future()
        self.forwarded[rid] = answer
        try:
            await self.next.send(Request(rid, req.frame_id, req.plan_id, req.fingerprint, metas,
                                         time.time(), left, req.want_output, req.attempt,
                                         req.plan_epoch), frames)
            env = await asyncio.wait_for(answer, left)
        except (TimeoutError, zmq.ZMQError) as exc:
            await self._reply_error(req, ErrorCode.DEADLINE, f"tier {self.args.tier}: the next "
                                    f"tier did not answer ({type(exc).__name__})", retry=True)
            return
        finally:
            self.forwarded.pop(rid, None)
        msg = env.msg
        if isinstance(msg, ErrorReply):
            await self._reply_error(req, ErrorCode.label(msg.code),
                                    f"next tier: {clip(msg.message, 400)}", msg.retry)
            return
        assert isinstance(msg, Result)
        took = time.perf_counter() - t0
        self.metrics.stage.labels("cloud").observe(took)
        self.metrics.requests.labels("forwarded").inc()
        await self.dealer.send(replace(msg, request_id=req.request_id, plan_id=req.plan_id,
                                       worker=clip(f"{self.worker}>{msg.worker}", 200),
                                       cloud_s=took), env.frames)

    def _on_answer(self, env: Envelope) -> None:
        """The next tier's answer to a forwarded request (a late or unknown one is dropped)."""
        answer = self.forwarded.get(env.msg.request_id)  # type: ignore[union-attr]
        if answer is not None and not answer.done():
            answer.set_result(env)

    async def _plan_for(self, key: tuple[int, int]) -> _Served | None:
        """The plan a request names. One newer than every plan here is on its way (a worker
        that just joined, or a request that overtook the plan's publication): wait for it a
        little rather than refuse it. An older one, evicted or never seen, is refused now."""
        deadline = time.monotonic() + PLAN_WAIT_S
        while (served := self.plans.get(key)) is None:
            left = deadline - time.monotonic()
            if left <= 0 or (self.plans and key < max(self.plans)):
                return None
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._new_plan.wait(), left)
        return served

    def _run(self, part: CloudPart, req: Request, frames: list, stats: list[CodecStat]) -> object:
        t0 = time.perf_counter()
        tensors = [t.to(self.device) for t in from_frames(req.tensors, frames, stats)]
        with torch.no_grad():
            out = part(*tensors)
        out = type(out)(o.cpu() for o in out) if isinstance(out, (tuple, list)) else out.cpu()
        if self.args.slowdown > 1:  # emulate a slower device: stretch the compute time
            time.sleep((self.args.slowdown - 1) * (time.perf_counter() - t0))
        return out


def add_arguments(p: argparse.ArgumentParser) -> None:
    config.add_security_arguments(p)
    config.add_model_arguments(p)
    config.add_planner_arguments(p)
    p.add_argument("--broker", default=config.endpoint("DADS_BROKER_HOST", "DADS_BACKEND_PORT"),
                   help="broker backend (env DADS_BROKER_HOST, DADS_BACKEND_PORT)")
    p.add_argument("--id", default="", help="worker name (default host-pid)")
    p.add_argument("--tier", default=config.env("DADS_TIER"),
                   help="this worker's tier in a plan over tiers (Scission), e.g. edge or cloud "
                   "(env DADS_TIER, default cloud)")
    p.add_argument("--next-broker", default=config.env("DADS_NEXT_BROKER"), metavar="ENDPOINT",
                   help="a middle tier: the next tier's broker frontend, where this tier sends "
                   "what crosses the next link, e.g. tcp://cloud:5555 (env DADS_NEXT_BROKER)")
    p.add_argument("--next-keys", default=config.env("DADS_NEXT_KEYS") or None, metavar="DIR",
                   help="keys toward the next tier (default --keys): an edge key and the next "
                   "broker's public key (env DADS_NEXT_KEYS)")
    p.add_argument("--next-key-name", default=config.env("DADS_NEXT_KEY_NAME"), metavar="NAME",
                   help="the edge key this tier uses toward the next, e.g. edge-relay "
                   "(env DADS_NEXT_KEY_NAME; default edge)")
    p.add_argument("--metrics-port", type=int,
                   default=int(config.env("DADS_METRICS_PORT") or 9103), help="default 9103")
    p.add_argument("--drain", type=float, default=20.0, metavar="S",
                   help="on SIGTERM or Ctrl-C, finish the requests in hand for up to S seconds "
                   "before closing (default 20; Kubernetes: below terminationGracePeriodSeconds)")
    p.add_argument("--broker-liveness", type=float, default=3.0, metavar="S",
                   help="reconnect when the broker is silent this long (default 3 s)")
    p.add_argument("--slowdown", type=float, default=1.0, metavar="F",
                   help="emulate a device F times slower than this one (default 1)")


def main(args: argparse.Namespace) -> int:
    setup_logging("cloud_worker")
    return run_service(CloudWorker(args).run)
