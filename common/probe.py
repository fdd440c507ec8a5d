"""The uplink bandwidth estimate: the planner's view of the link (DESIGN §1, issue: probe).

Samples are (bytes, seconds) of real transfers, measured by the edge with a FIFO link model (a
transfer starts when both it was sent and the previous one finished; it ends when the result's
round trip, less the cloud's and the broker's reported times, says it arrived), plus small
active probes when no traffic flows. The estimate is the minimum of a fast and a slow EWMA of
the per-sample rates: a drop shows within a few samples, a rise is believed more slowly, and a
single lucky sample cannot push the planner into a plan the link cannot carry.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["BandwidthEstimator", "LinkClock"]


@dataclass
class BandwidthEstimator:
    fast_alpha: float = 0.5
    slow_alpha: float = 0.15
    min_bytes: int = 4096  # smaller transfers say more about latency than about bandwidth
    fast: float | None = None
    slow: float | None = None
    samples: int = 0

    def add(self, nbytes: float, seconds: float) -> None:
        if nbytes < self.min_bytes or seconds <= 0:
            return
        rate = nbytes / seconds  # bytes/s
        self.fast = rate if self.fast is None else self.fast + self.fast_alpha * (rate - self.fast)
        self.slow = rate if self.slow is None else self.slow + self.slow_alpha * (rate - self.slow)
        self.samples += 1

    def reset(self) -> None:
        self.fast = self.slow = None
        self.samples = 0

    @property
    def bytes_per_second(self) -> float | None:
        if self.fast is None or self.slow is None:
            return None
        return min(self.fast, self.slow)

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
