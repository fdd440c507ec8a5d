"""The broker's async shell over `BrokerState`: sockets, heartbeats, metrics.

frontend ROUTER (bind) <- edge agents (DEALER); backend ROUTER (bind) <- workers (DEALER).
Requests pass through without their tensors being copied or decoded; only headers are checked.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import time
from collections.abc import Coroutine
from typing import Any

import zmq

from common.runtime import config
from common.runtime.metrics import BrokerMetrics
from common.runtime.security import Keys, from_options
from common.runtime.service import Service, run_service, setup_logging
from common.runtime.transport import Channel, Envelope
from common.runtime.wire import (
    BrokerStats,
    ErrorCode,
    ErrorReply,
    Heartbeat,
    Probe,
    ProbeAck,
    Ready,
    Request,
    Result,
    WireError,
    clip,
    encode,
)
from services.broker.state import Action, Answer, BrokerState, Dispatch, Forward

__all__ = ["Broker", "add_arguments", "main"]

log = logging.getLogger("broker")


class Broker(Service):
    name = "broker"

    def __init__(self, frontend: str, backend: str, planner: str | None, metrics_port: int,
                 heartbeat_s: float = 1.0, liveness_s: float = 3.0, max_queue: int = 256,
                 dispatch_timeout_s: float = 60.0, keys: Keys | None = None,
                 metrics_host: str = "0.0.0.0") -> None:
        super().__init__(BrokerMetrics(), keys, metrics_port, metrics_host)
        self.frontend, self.backend, self.planner = frontend, backend, planner
        self.heartbeat_s = heartbeat_s
        self.state = BrokerState(liveness_s=liveness_s, max_queue=max_queue,
                                 dispatch_timeout_s=dispatch_timeout_s)

    async def start(self) -> None:
        self.front = self.open(zmq.ROUTER, self.frontend, bind=True, domain="edge")
        self.back = self.open(zmq.ROUTER, self.backend, bind=True, domain="worker")
        self.stats = self.open(zmq.PUSH, self.planner, bind=False, server="planner") \
            if self.planner else None
        log.info("frontend %s, backend %s", self.front.endpoint, self.back.endpoint)

    def tasks(self) -> dict[str, Coroutine[Any, Any, None]]:
        return {
            "frontend": self.receive(self.front, {Request: self._on_request, Probe: self._on_probe,
                                                  Heartbeat: _ignore},
                                     other=self._on_unexpected, refused=self._refused),
            "backend": self.receive(self.back, {Ready: self._on_ready, Result: self._on_reply,
                                                ErrorReply: self._on_reply,
                                                Heartbeat: self._on_heartbeat},
                                    refused=self._refused_worker),
            "tick": self.every(self.heartbeat_s, self._tick),
        }

    # -- from edges --
    async def _on_request(self, env: Envelope) -> None:
        msg: Request = env.msg  # type: ignore[assignment]
        self.metrics.requests.labels("received").inc()
        await self._act(self.state.on_request(env.peer, msg.request_id, msg.deadline_s, env.raw,
                                              time.monotonic()))

    async def _on_probe(self, env: Envelope) -> None:
        msg: Probe = env.msg  # type: ignore[assignment]
        await self._send(self.front, ProbeAck(msg.probe_id, msg.nbytes), env.peer)

    async def _on_unexpected(self, env: Envelope) -> None:
        self.metrics.errors.labels("unexpected").inc()
        await self._send(self.front, ErrorReply(-1, ErrorCode.MALFORMED,
                         f"the broker's frontend takes no {type(env.msg).__name__}"), env.peer)

    async def _refused(self, exc: WireError) -> None:
        log.warning("refused a message: %s", exc)
        await self._send(self.front, ErrorReply(-1, exc.code, str(exc)), getattr(exc, "peer", None))

    # -- from workers --
    async def _refused_worker(self, exc: WireError) -> None:
        log.warning("bad message from a worker: %s", exc)

    def _seen(self, env: Envelope) -> tuple[bytes, bool, float]:
        now = time.monotonic()
        assert env.peer is not None
        return env.peer, self.state.on_seen(env.peer, now), now

    async def _on_ready(self, env: Envelope) -> None:
        msg: Ready = env.msg  # type: ignore[assignment]
        worker, _, now = self._seen(env)
        log.info("worker %s ready (%s, %s)", clip(msg.worker, 64), clip(msg.device, 32),
                 clip(msg.fingerprint, 12))
        await self._act(self.state.on_ready(worker, now))

    async def _on_heartbeat(self, env: Envelope) -> None:
        worker, known, now = self._seen(env)
        if not known:  # a heartbeat from a worker we had declared dead: take it back
            log.info("worker %r is back", worker)
            await self._act(self.state.on_ready(worker, now))

    async def _on_reply(self, env: Envelope) -> None:
        msg: Result | ErrorReply = env.msg  # type: ignore[assignment]
        worker, _, now = self._seen(env)
        if isinstance(msg, ErrorReply):
            self.metrics.errors.labels(ErrorCode.label(msg.code)).inc()
        for action in self.state.on_reply(worker, msg.request_id, now):
            if isinstance(action, Forward):
                p = action.pending
                parts = env.raw
                if isinstance(msg, Result):  # stamp the time it waited here
                    waited = dataclasses.replace(msg, queue_s=p.dispatched_at - p.received_at)
                    parts = encode(waited, env.frames)
                self.metrics.requests.labels("answered").inc()
                with contextlib.suppress(zmq.ZMQError):  # the edge may be gone
                    await self.front.send_raw(parts, to=action.edge)
            else:
                await self._act([action])

    async def _tick(self) -> None:
        now = time.monotonic()
        for worker in list(self.state.workers):
            with contextlib.suppress(zmq.ZMQError):
                await self.back.send(Heartbeat("broker", time.time()), to=worker, nowait=True)
        before = set(self.state.workers)
        await self._act(self.state.on_tick(now))
        for gone in before - set(self.state.workers):
            log.warning("worker %r stopped heartbeating: removed, its request re-queued", gone)
        self.metrics.workers_ready.set(self.state.ready)
        self.metrics.queue_depth.labels("broker").set(len(self.state.queue))
        self.metrics.queue_depth.labels("in_flight").set(self.state.in_flight)
        if self.stats is not None:
            with contextlib.suppress(zmq.ZMQError):
                await self.stats.send(BrokerStats(self.state.ready, len(self.state.queue),
                                                  self.state.in_flight), nowait=True)

    # -- actions --
    async def _act(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Dispatch):
                try:
                    await self.back.send_raw(a.pending.raw, to=a.worker)
                except zmq.ZMQError:  # vanished between heartbeats: treat as dead now
                    w = self.state.workers.get(a.worker)
                    if w is not None:
                        w.last_seen = float("-inf")
                    continue
                self.metrics.requests.labels("dispatched").inc()
                if a.pending.attempts:
                    self.metrics.requests.labels("requeued").inc()
                self.metrics.queue_wait.observe(a.pending.dispatched_at - a.pending.received_at)
            elif isinstance(a, Answer):
                self.metrics.errors.labels(a.code).inc()
                await self._send(self.front, ErrorReply(a.request_id, a.code, a.message, a.retry),
                                 a.edge)

    async def _send(self, ch: Channel, msg: ErrorReply | ProbeAck, peer: bytes | None) -> None:
        if peer is None:
            return
        with contextlib.suppress(zmq.ZMQError):
            await ch.send(msg, to=peer)


def add_arguments(p: argparse.ArgumentParser) -> None:
    config.add_security_arguments(p)
    p.add_argument("--frontend", default=config.endpoint("", "DADS_FRONTEND_PORT", bind=True),
                   help="bind address for edge agents (env DADS_BIND_HOST, DADS_FRONTEND_PORT)")
    p.add_argument("--backend", default=config.endpoint("", "DADS_BACKEND_PORT", bind=True),
                   help="bind address for workers (env DADS_BACKEND_PORT)")
    p.add_argument("--planner", default=config.endpoint("DADS_PLANNER_HOST", "DADS_TELEMETRY_PORT"),
                   help="planner telemetry address, for worker counts ('' to disable)")
    p.add_argument("--metrics-port", type=int,
                   default=int(config.env("DADS_METRICS_PORT") or 9101), help="default 9101")
    p.add_argument("--liveness", type=float, default=3.0, metavar="S",
                   help="a worker silent this long is dead (default 3 s)")
    p.add_argument("--max-queue", type=int, default=256, help="requests waiting at most (256)")
    p.add_argument("--dispatch-timeout", type=float, default=60.0, metavar="S",
                   help="re-queue a request a live worker has not answered in S s (default 60)")


def main(args: argparse.Namespace) -> int:
    setup_logging("broker")
    broker = Broker(args.frontend, args.backend, args.planner or None, args.metrics_port,
                    liveness_s=args.liveness, max_queue=args.max_queue,
                    dispatch_timeout_s=args.dispatch_timeout,
                    keys=from_options(args.keys, args.insecure, "broker"),
                    metrics_host=args.metrics_host)
    return run_service(broker.run)


def _ignore(env: Envelope) -> None:
    """An edge's heartbeat: its connection is alive; nothing to do."""
