"""The broker's shell over `BrokerState`: sockets, heartbeats, metrics — as one poll loop.

frontend ROUTER (bind) <- edge agents (DEALER); backend ROUTER (bind) <- workers (DEALER).
Requests pass through without their tensors being copied or decoded; only headers are checked.

Why a poll loop in a thread and not asyncio receive loops like the other services: the broker
does nothing but move messages, and every message pays the asyncio socket's futures and loop
callbacks on the way in and on the way out, several times the cost of the ZeroMQ calls and of
the header checks together (bench.transport: a minimal broker of each kind in the same run). So
the sockets are opened, guarded (CURVE, ZAP, handshake monitors) and closed by the `Service`
skeleton as everywhere, and driven by one thread that polls both, reads what has arrived in
batches and writes it on without waiting (`Channel.blocking`). Messages still go through
`Service.deliver`: the same checks and counting as every other receive loop. The loop's own
heartbeat tick sets `dads_event_loop_beat_timestamp_seconds`, so the healthcheck proves the
forwarding thread alive, not only the asyncio loop beside it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Coroutine
from typing import Any

import zmq

from common.runtime import config
from common.runtime.metrics import BrokerMetrics, Tally
from common.runtime.security import Keys, from_options
from common.runtime.service import Service, run_service, setup_logging, supervise
from common.runtime.transport import Blocking, Envelope
from common.runtime.wire import (
    BrokerStats,
    ErrorCode,
    ErrorReply,
    Heartbeat,
    Kind,
    Message,
    Probe,
    ProbeAck,
    Ready,
    Request,
    WireError,
    clip,
    peek_reply,
)
from services.broker.state import Action, Answer, BrokerState, Dispatch, Forward

__all__ = ["Broker", "add_arguments", "main"]

log = logging.getLogger("broker")

BATCH = 64  # messages read from one socket before the other gets its turn
POLL_MS = 100  # the longest the loop sleeps: how soon it sees `stop`


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
        self.tally = Tally()  # counts per message, into the counters at each tick or idle loop
        requests = self.metrics.requests  # children looked up once, off the per-message path
        self._received, self._dispatched, self._answered, self._requeued = (
            requests.labels(e) for e in ("received", "dispatched", "answered", "requeued"))
        self._undeliverable = self.metrics.errors.labels("undeliverable")
        self._per_edge: dict[tuple[str, str], Any] = {}  # (edge, event) -> counter child

    async def start(self) -> None:
        front = self.open(zmq.ROUTER, self.frontend, bind=True, domain="edge")
        back = self.open(zmq.ROUTER, self.backend, bind=True, domain="worker")
        stats = self.open(zmq.DEALER, self.planner, bind=False, server="planner") \
            if self.planner else None
        log.info("frontend %s, backend %s", front.endpoint, back.endpoint)
        self.front, self.back = front.blocking(), back.blocking()
        self.stats = stats.blocking() if stats is not None else None

    def tasks(self) -> dict[str, Coroutine[Any, Any, None]]:
        return {"forward": self._forward()}

    async def supervise(self, tasks: list[asyncio.Task[Any]]) -> int:
        return await supervise(self.stop, tasks, self.log)  # the poll loop beats, not asyncio

    async def _forward(self) -> None:
        """The poll loop in its own thread; cancelled, it is told to stop and waited for."""
        halt = threading.Event()
        done = asyncio.get_running_loop().run_in_executor(None, self._poll, halt)
        try:
            await asyncio.shield(done)
        finally:
            halt.set()
            await asyncio.wait({done})

    def _poll(self, halt: threading.Event) -> None:
        front = {Request: self._on_request, Probe: self._on_probe, Heartbeat: _ignore}
        back = {Ready: self._on_ready, Heartbeat: self._on_heartbeat}  # replies: `_relay`
        poller = zmq.Poller()
        poller.register(self.front.sock, zmq.POLLIN)
        poller.register(self.back.sock, zmq.POLLIN)
        next_tick = time.monotonic()
        while not halt.is_set():
            now = time.monotonic()
            if now >= next_tick:
                self._tick(now)
                next_tick = now + self.heartbeat_s
            ready = dict(poller.poll(0 if self.tally.counts else
                                     int(min(POLL_MS, max(0.0, next_tick - now) * 1e3))))
            if not ready:  # a pause in the traffic: the counts go out now, then wait
                self.tally.flush()
                continue
            if self.back.sock in ready:  # answers first: they free workers for the requests
                for parts in self.back.drain(BATCH):
                    if not self._relay(parts):
                        self.deliver(self.back.ch, parts, back, refused=self._refused_worker)
            if self.front.sock in ready:
                for parts in self.front.drain(BATCH):
                    self.deliver(self.front.ch, parts, front, other=self._on_unexpected,
                                 refused=self._refused)

    # -- from edges --
    def _on_request(self, env: Envelope) -> None:
        msg: Request = env.msg  # type: ignore[assignment]
        edge = self._edge_name(env)
        self.tally.add(self._received)
        self._count(edge, "received")
        self._act(self.state.on_request(env.peer, msg.request_id, msg.deadline_s, env.raw,
                                         time.monotonic(), tag=edge))

    def _edge_name(self, env: Envelope) -> str:
        """The edge as a metric label: its key's name (bounded: only keys in the directory are
        admitted), never anything the peer chose."""
        if self.keys is None:
            return "insecure"
        return self.keys.name_of(env.user) or "unknown"

    def _count(self, edge: str, event: str) -> None:
        child = self._per_edge.get((edge, event))
        if child is None:
            child = self._per_edge[(edge, event)] = self.metrics.edge_requests.labels(edge, event)
        self.tally.add(child)

    def _on_probe(self, env: Envelope) -> None:
        msg: Probe = env.msg  # type: ignore[assignment]
        self._send(self.front, ProbeAck(msg.probe_id, msg.nbytes), env.peer)

    def _on_unexpected(self, env: Envelope) -> None:
        self.metrics.errors.labels("unexpected").inc()
        self._send(self.front, ErrorReply(-1, ErrorCode.MALFORMED,
                   f"the broker's frontend takes no {type(env.msg).__name__}"), env.peer)

    def _refused(self, exc: WireError) -> None:
        log.warning("refused a message: %s", exc)
        self._send(self.front, ErrorReply(-1, exc.code, str(exc)), getattr(exc, "peer", None))

    # -- from workers --
    def _refused_worker(self, exc: WireError) -> None:
        log.warning("bad message from a worker: %s", exc)

    def _seen(self, env: Envelope) -> tuple[bytes, bool, float]:
        now = time.monotonic()
        assert env.peer is not None
        return env.peer, self.state.on_seen(env.peer, now), now

    def _on_ready(self, env: Envelope) -> None:
        msg: Ready = env.msg  # type: ignore[assignment]
        worker, _, now = self._seen(env)
        log.info("worker %s ready (%s, %s)", clip(msg.worker, 64), clip(msg.device, 32),
                 clip(msg.fingerprint, 12))
        self._act(self.state.on_ready(worker, now))

    def _on_heartbeat(self, env: Envelope) -> None:
        worker, known, now = self._seen(env)
        if not known:  # a heartbeat from a worker we had declared dead: take it back
            log.info("worker %r is back", worker)
            self._act(self.state.on_ready(worker, now))

    def _relay(self, parts: list[Any]) -> bool:
        """A worker's reply, forwarded on its kind and request id (`wire.peek_reply`: the edge
        validates it whole); False for anything else, which goes through `deliver`."""
        reply = peek_reply(parts[1:3])
        if reply is None:
            return False
        worker, now = parts[0].bytes, time.monotonic()
        self.state.on_seen(worker, now)
        if reply.kind is Kind.ERROR:
            self.metrics.errors.labels(ErrorCode.label(reply.header.get("code"))).inc()
        for action in self.state.on_reply(worker, reply.request_id, now):
            if isinstance(action, Forward):
                p = action.pending
                parts = parts[1:]
                if reply.kind is Kind.RESULT:  # stamp the time it waited here
                    parts = [parts[0], reply.stamped(queue_s=p.dispatched_at - p.received_at),
                             *parts[2:]]
                try:
                    self.front.send_raw(parts, to=action.edge)
                    self.tally.add(self._answered)
                    self._count(p.tag, "answered")
                except zmq.ZMQError:  # the edge is gone (or not reading): its retry will ask again
                    self._undeliverable.inc()
            else:
                self._act([action])
        return True

    def _tick(self, now: float) -> None:
        self.metrics.loop_beat.set_to_current_time()
        self.tally.flush()
        for worker in list(self.state.workers):
            with contextlib.suppress(zmq.ZMQError):  # gone: its liveness runs out below
                self.back.send(Heartbeat("broker", time.time()), to=worker)
        before = set(self.state.workers)
        self._act(self.state.on_tick(now))
        for gone in before - set(self.state.workers):
            log.warning("worker %r stopped heartbeating: removed, its request re-queued", gone)
        self.metrics.workers_ready.set(self.state.ready)
        self.metrics.queue_depth.labels("broker").set(self.state.waiting)
        self.metrics.queue_depth.labels("in_flight").set(self.state.in_flight)
        if self.stats is not None:
            self._send(self.stats, BrokerStats(self.state.ready, self.state.waiting,
                                               self.state.in_flight), None)

    # -- actions --
    def _act(self, actions: list[Action]) -> None:
        for a in actions:
            if isinstance(a, Dispatch):
                try:
                    self.back.send_raw(a.pending.raw, to=a.worker)
                except zmq.ZMQError:  # vanished between heartbeats: treat as dead now
                    w = self.state.workers.get(a.worker)
                    if w is not None:
                        w.last_seen = float("-inf")
                    continue
                self.tally.add(self._dispatched)
                if a.pending.attempts:
                    self.tally.add(self._requeued)
                self.metrics.queue_wait.observe(a.pending.dispatched_at - a.pending.received_at)
            elif isinstance(a, Answer):
                self.metrics.errors.labels(a.code).inc()
                self._count(a.tag, a.code)
                self._send(self.front, ErrorReply(a.request_id, a.code, a.message, a.retry),
                           a.edge)

    def _send(self, ch: Blocking, msg: Message, peer: bytes | None) -> None:
        """A message of the broker's own; one that cannot go now is dropped (it is advisory, or
        the peer is gone), never waited for."""
        if ch.ch.routed and peer is None:
            return
        try:
            ch.send(msg, to=peer)
        except zmq.ZMQError:
            self._undeliverable.inc()


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
