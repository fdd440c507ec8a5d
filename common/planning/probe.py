"""The uplink bandwidth estimate: the planner's view of the link (DESIGN §1, issue: probe).

Samples are (bytes, seconds) of real transfers, measured by the edge with a FIFO link model (a
transfer starts when both it was sent and the previous one finished; it ends when the result's
round trip, less the cloud's and the broker's reported times, says it arrived), plus small
active probes when no traffic flows. The estimate is the median rate of the last few samples:
a real change of the link shows once half the window has seen it (a few transfers), while a
couple of outliers — the first transfers of a new TCP connection in slow start, a request that
met a busy worker — cannot push the planner into a plan the link does not call for.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field

__all__ = ["BandwidthEstimator", "LinkClock"]


@dataclass
class BandwidthEstimator:
    window: int = 7
    min_bytes: int = 4096  # smaller transfers say more about latency than about bandwidth
    rates: deque[float] = field(default_factory=deque)
    samples: int = 0

    def add(self, nbytes: float, seconds: float) -> None:
        if nbytes < self.min_bytes or seconds <= 0:
            return
        self.rates.append(nbytes / seconds)  # bytes/s
        while len(self.rates) > self.window:
            self.rates.popleft()
        self.samples += 1

    def reset(self) -> None:
        self.rates.clear()
        self.samples = 0

    @property
    def bytes_per_second(self) -> float | None:
        return statistics.median(self.rates) if self.rates else None

    @property
    def bps(self) -> float | None:
        rate = self.bytes_per_second
        return None if rate is None else rate * 8.0


@dataclass
class LinkClock:
    """FIFO model of the uplink at the edge: turns (sent, arrived) times into transfer samples."""

    base_rtt_s: float = 0.0
    _free_at: float = field(default=0.0)

    def transfer(self, sent_at: float, arrived_at: float) -> float:
        """Seconds the link spent on a transfer sent at `sent_at` that arrived at `arrived_at`."""
        start = max(sent_at, self._free_at)
        self._free_at = max(self._free_at, arrived_at)
        return max(arrived_at - start - self.base_rtt_s, 0.0)
