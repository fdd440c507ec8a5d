"""The edge agent's decisions about a frame in flight, as pure functions of an injected clock.

Kept apart from the service (sockets, tasks) so that retries and deadlines are unit-tested with
synthetic times: which error is worth another try and after how long, which frames have run out
of time, which plan a frame runs under (`common.planning.partition.supersedes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from common.errors import DadsError

__all__ = ["RETRY_BACKOFF_S", "MAX_ATTEMPTS", "retry_delay", "expired", "Schedule", "percentile"]

RETRY_BACKOFF_S = 0.05
MAX_ATTEMPTS = 5


def retry_delay(retryable: bool, attempts: int, now: float, deadline: float) -> float | None:
    """Seconds to wait before sending a refused frame again, or None: give it up (reported).

    Only errors the sender may retry (a plan not yet known at a worker, a full broker), at most
    MAX_ATTEMPTS sends, with exponential backoff, and never past the frame's deadline.
    """
    delay = RETRY_BACKOFF_S * 2 ** (attempts - 1)
    if retryable and attempts < MAX_ATTEMPTS and now + delay < deadline:
        return delay
    return None


def expired(deadlines: Iterable[tuple[int, float]], now: float) -> list[int]:
    """The frames (request ids) whose deadline has passed: each is reported dropped."""
    return [rid for rid, deadline in deadlines if now > deadline]


@dataclass(frozen=True)
class Schedule:
    """A setting that changes at given seconds into the stream: `wifi,3g@15,cat1@30`.

    For demos and benchmarks that tell a story (the uplink drops, the load jumps) on one
    machine; a plain value is a schedule with one step. Times are seconds since the stream
    started and must increase; the first value holds from 0.
    """

    steps: tuple[tuple[float, float], ...]  # (from second, value), sorted

    @classmethod
    def parse(cls, text: str, value: Callable[[str], float]) -> Schedule:
        steps: list[tuple[float, float]] = []
        for i, part in enumerate(p.strip() for p in str(text).split(",")):
            item, _, at = part.partition("@")
            try:
                start = float(at) if at else 0.0
            except ValueError:
                raise DadsError(f"schedule {text!r}: {at!r} is not a number of seconds") from None
            if (i == 0 and start != 0.0) or (i > 0 and (not at or start <= steps[-1][0])):
                raise DadsError(f"schedule {text!r}: write VALUE,VALUE@SECONDS,... with the "
                                "seconds increasing (the first value holds from 0)")
            steps.append((start, value(item)))
        return cls(tuple(steps))

    def at(self, seconds: float) -> float:
        current = self.steps[0][1]
        for start, value in self.steps:
            if seconds < start:
                break
            current = value
        return current

    @property
    def changes(self) -> tuple[float, ...]:
        return tuple(start for start, _ in self.steps[1:])


def percentile(values: Iterable[float], p: float, empty: float = 0.0) -> float:
    """The p-th percentile (nearest rank) of `values`; `empty` when there are none."""
    ordered = sorted(values)
    if not ordered:
        return empty
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]
