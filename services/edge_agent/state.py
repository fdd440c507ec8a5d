"""The edge agent's decisions about a frame in flight, as pure functions of an injected clock.

Kept apart from the service (sockets, tasks) so that retries and deadlines are unit-tested with
synthetic times: which error is worth another try and after how long, which frames have run out
of time, which plan a frame runs under (`common.planning.partition.supersedes`).
"""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["RETRY_BACKOFF_S", "MAX_ATTEMPTS", "retry_delay", "expired"]

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
