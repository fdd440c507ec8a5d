"""The broker's worker table and request queue as a pure state machine.

Events in (`on_*(..., now)`), actions out; the async shell performs the actions. No sockets, no
clock: tests drive it with synthetic events and times.

- Workers announce themselves (Ready) and then heartbeat; a worker silent for `liveness_s` is
  dead: its in-flight request goes back to the front of the queue (retried up to `max_attempts`
  times, then answered with an error), so no frame is lost silently.
- Requests wait in one FIFO per edge, served round robin: each idle worker (the one that has
  waited longest) takes the head of the next edge's queue, so an edge that floods the broker
  delays the others by at most one request per turn, not by its whole backlog. The total is
  bounded; when it is full, the edge with the longest queue gives way (its newest request is
  answered "overloaded, retry"), unless the newcomer's edge is that long already (then the
  newcomer is refused): a flood takes what is left, never what the others need.
- A request still queued past its deadline is answered with an error instead of being run late.
- A dispatched request has a deadline too (`dispatch_timeout_s`): a worker that keeps
  heartbeating but never answers (hung compute, a wedged device) loses the request, which is
  re-queued for another worker; the hung worker gets nothing new until it answers the old one.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from common.runtime.wire import ErrorCode

__all__ = ["Pending", "Dispatch", "Answer", "Forward", "BrokerState", "Action"]


@dataclass
class Pending:
    edge: bytes
    request_id: int
    raw: list[Any]  # the request as received: forwarded without re-encoding
    received_at: float
    deadline: float
    attempts: int = 0
    dispatched_at: float = 0.0
    tag: str = ""  # who asked, in words the metrics may use (the edge's key name)


@dataclass(frozen=True)
class Dispatch:
    worker: bytes
    pending: Pending


@dataclass(frozen=True)
class Answer:
    """An error reply to an edge (the request will not be served)."""

    edge: bytes
    request_id: int
    code: str
    message: str
    retry: bool = False
    tag: str = ""


@dataclass(frozen=True)
class Forward:
    """A worker's reply goes back to the edge that asked."""

    edge: bytes
    pending: Pending


Action = Dispatch | Answer | Forward


@dataclass
class _Worker:
    last_seen: float
    busy: Pending | None = None
    abandoned: bool = False  # `busy` timed out here and went elsewhere; the worker owes an answer


@dataclass
class BrokerState:
    liveness_s: float = 3.0
    max_queue: int = 256
    max_attempts: int = 3
    dispatch_timeout_s: float = 60.0
    workers: OrderedDict[bytes, _Worker] = field(default_factory=OrderedDict)
    idle: deque[bytes] = field(default_factory=deque)
    queues: dict[bytes, deque[Pending]] = field(default_factory=dict)  # per edge, non-empty
    turn: deque[bytes] = field(default_factory=deque)  # edges with requests waiting, in turn

    # -- queries --
    @property
    def ready(self) -> int:
        return len(self.workers)

    @property
    def waiting(self) -> int:
        return sum(len(q) for q in self.queues.values())

    @property
    def in_flight(self) -> int:
        return sum(1 for w in self.workers.values() if w.busy is not None and not w.abandoned)

    # -- events --
    def on_ready(self, worker: bytes, now: float) -> list[Action]:
        """A worker (re)registered: if it was busy, that request is lost with its old session."""
        actions: list[Action] = []
        old = self.workers.get(worker)
        if old is not None and old.busy is not None and not old.abandoned:
            actions += self._requeue(old.busy, now)
        if worker in self.idle:
            self.idle.remove(worker)
        self.workers[worker] = _Worker(last_seen=now)
        self.idle.append(worker)
        return actions + self._dispatch(now)

    def on_seen(self, worker: bytes, now: float) -> bool:
        """Any message from a worker proves it alive; False if we do not know it (re-register)."""
        w = self.workers.get(worker)
        if w is None:
            return False
        w.last_seen = now
        return True

    def on_request(self, edge: bytes, request_id: int, deadline_s: float, raw: list[Any],
                   now: float, tag: str = "") -> list[Action]:
        actions: list[Action] = []
        if self.waiting >= self.max_queue:
            longest = max(self.queues, key=lambda e: len(self.queues[e]))
            if len(self.queues[longest]) <= len(self.queues.get(edge, ())):
                return [Answer(edge, request_id, ErrorCode.OVERLOADED,
                               f"broker queue full ({self.max_queue} waiting, this edge's the "
                               f"longest)", retry=True, tag=tag)]
            gone = self.queues[longest].pop()  # the flood's newest gives way
            if not self.queues[longest]:
                self._forget(longest)
            actions.append(Answer(gone.edge, gone.request_id, ErrorCode.OVERLOADED,
                                  f"broker queue full ({self.max_queue} waiting): made room for "
                                  f"another edge", retry=True, tag=gone.tag))
        self._queue(edge).append(Pending(edge, request_id, raw, now, now + deadline_s, tag=tag))
        return actions + self._dispatch(now)

    def on_reply(self, worker: bytes, request_id: int, now: float) -> list[Action]:
        """A worker answered (result or error): forward it, and give the worker more work."""
        w = self.workers.get(worker)
        if w is None or w.busy is None or w.busy.request_id != request_id:
            return []  # a late answer for a request already re-queued: the retry will answer
        pending, abandoned = w.busy, w.abandoned
        w.busy, w.abandoned, w.last_seen = None, False, now
        self.idle.append(worker)
        forward: list[Action] = [] if abandoned else [Forward(pending.edge, pending)]
        return forward + self._dispatch(now)

    def on_tick(self, now: float) -> list[Action]:
        actions: list[Action] = []
        for worker, w in list(self.workers.items()):
            if now - w.last_seen > self.liveness_s:
                del self.workers[worker]
                if worker in self.idle:
                    self.idle.remove(worker)
                if w.busy is not None and not w.abandoned:
                    actions += self._requeue(w.busy, now)
            elif w.busy is not None and not w.abandoned \
                    and now - w.busy.dispatched_at > self.dispatch_timeout_s:
                w.abandoned = True  # alive but not answering: the request goes elsewhere
                actions += self._requeue(w.busy, now)
        for edge, queue in list(self.queues.items()):
            kept: deque[Pending] = deque()
            for p in queue:
                if now > p.deadline:
                    actions.append(Answer(p.edge, p.request_id, ErrorCode.DEADLINE,
                                          "deadline passed while waiting for a worker",
                                          tag=p.tag))
                else:
                    kept.append(p)
            if kept:
                self.queues[edge] = kept
            else:
                self._forget(edge)
        return actions + self._dispatch(now)

    # -- internals --
    def _requeue(self, pending: Pending, now: float) -> list[Action]:
        pending.attempts += 1
        if pending.attempts >= self.max_attempts:
            return [Answer(pending.edge, pending.request_id, ErrorCode.WORKER_LOST,
                           f"worker lost {pending.attempts} times; giving up", tag=pending.tag)]
        self._queue(pending.edge).appendleft(pending)  # first of its edge, its edge first
        self.turn.remove(pending.edge)
        self.turn.appendleft(pending.edge)
        return []

    def _queue(self, edge: bytes) -> deque[Pending]:
        queue = self.queues.get(edge)
        if queue is None:
            queue = self.queues[edge] = deque()
            self.turn.append(edge)
        return queue

    def _forget(self, edge: bytes) -> None:
        del self.queues[edge]
        self.turn.remove(edge)

    def _dispatch(self, now: float) -> list[Action]:
        actions: list[Action] = []
        while self.turn and self.idle:
            edge = self.turn.popleft()
            queue = self.queues[edge]
            pending = queue.popleft()
            if queue:
                self.turn.append(edge)  # its next request waits for the others' turns
            else:
                del self.queues[edge]
            worker = self.idle.popleft()
            self.workers[worker].busy = pending
            pending.dispatched_at = now
            actions.append(Dispatch(worker, pending))
        return actions
