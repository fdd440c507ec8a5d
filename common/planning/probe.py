"""The uplink bandwidth estimate: the planner's view of the link (DESIGN §1, issue: probe).

Samples are (bytes, seconds) of real transfers, measured by the edge with a FIFO link model (a
transfer starts when both it was sent and the previous one finished; it ends when the result's
round trip, less the cloud's and the broker's reported times, says it arrived), plus small
active probes when no traffic flows. The estimate is the median rate of the last few samples,
so one outlier (the first transfer of a new TCP connection in slow start, a request that met a
busy worker) cannot push the planner into a plan the link does not call for.

A median alone follows a step of the link only once half its window has seen it: at 3G, where a
transfer takes a second, that was 9 s from wifi→3g to the new plan on the test bed. So a change
test runs beside it: `step_samples` transfers in a row, each more than `step_factor` away from
the estimate in the same direction and within `step_factor` of each other, are a step, and the
window restarts from them. Noise inside the band, or outliers that disagree with each other,
never trigger it; a step is followed after two transfers instead of four.

A step down can leave no transfer to finish for a long time (at cat1 a 150 KB frame takes 9 s,
and the frames behind it wait). So the edge also reports the transfer on the link once it has
taken several times what the estimate predicts: its bytes over the time so far bound the rate
from above (the true rate is lower still). A bound is not a sample: it is not the link's rate,
and it tightens while the transfer lasts. So it is held beside the window (`bound`), and the
estimate is the lower of the two: the planner can plan for the slower link a fraction of a
second after a step down, long before any transfer through it has finished, and follows the
bound down as it tightens, also between reports (a transfer still stuck a second later bounds
the link tighter still). A finished transfer as slow as the bound renews it. It lets go when
the window has caught up (a step), when a finished transfer shows the link faster than the bound
(the stall was something else), or once the edge has said for `hold_s` that nothing is stuck
(`unstalled`). Silence is not such a report: the edge's telemetry crosses the same uplink, and
behind a stuck frame on a deep-buffered link (tc's tbf, a cellular modem) it arrives seconds
late; a bound that lapsed for want of reports brought the window's old median back, and a plan
that sent the next frame into the slow link.
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
    step_factor: float = 2.5  # a sample this far from the estimate (either way) may be a step
    step_samples: int = 2  # this many such samples in a row, agreeing, are one
    rates: deque[float] = field(default_factory=deque)
    samples: int = 0
    steps: int = 0  # steps detected so far (the planner exports it)
    hold_s: float = 3.0  # a bound the edge has reported nothing stuck for this long is dropped
    _pending: list[float] = field(default_factory=list)
    # the bound: (bytes, seconds on the link when reported, reported at; None: a measured rate
    # of bytes/seconds, which does not tighten with time)
    _bound: tuple[float, float, float | None] | None = None
    _clear_since: float | None = None  # the first report since the bound's renewal: none stuck

    def add(self, nbytes: float, seconds: float, now: float | None = None) -> bool:
        """Take one transfer (reported at `now`); True when it completed a step (the window
        restarted)."""
        if nbytes < self.min_bytes or seconds <= 0:
            return False
        rate = nbytes / seconds  # bytes/s
        self.samples += 1
        stepped = self._change_test(rate)
        if stepped:
            self.rates = deque(self._pending)
            self._pending = []
            self.steps += 1
        else:
            self.rates.append(rate)
        while len(self.rates) > self.window:
            self.rates.popleft()
        live = self._live_bound(now) if now is not None else (
            None if self._bound is None else self._rate(self._bound, self._bound[2] or 0.0))
        if live is None or stepped or rate > self.step_factor * live:
            # lapsed, or the window has caught up, or the link was never that slow
            self._bound = self._clear_since = None
        else:  # a finished transfer as slow as the bound guessed: the bound holds (renewed)
            # at its measured rate, until the window has the samples to step to it; else it
            # would lapse between two slow transfers (nothing on the link stalls against the
            # bound's own rate) and the window's old median would come back. Measured, not the
            # bound's own: a bound that tightened while the reports were late went past it
            self._bound = (rate, 1.0, None)
            self._clear_since = None
        return stepped

    def bound(self, nbytes: float, seconds: float, now: float) -> None:
        """A transfer of `nbytes` still on the link after `seconds`, reported at `now`: the
        link is at most that fast, and slower still the longer it stays there: until a report
        says nothing is stuck, the bound tightens with the time since (the report that it is
        through crosses a link that is then free, so it comes at once; those that it is still
        stuck queue behind it). A live bound only tightens (the same transfer, later; the next
        one stuck behind it starts looser and says nothing new) and is renewed by each report;
        finished transfers, not stalled ones, say when the link is faster again."""
        if nbytes >= self.min_bytes and seconds > 0:
            live = self._live_bound(now)
            if live is None or nbytes / seconds <= live:
                self._bound = (nbytes, seconds, now)
            self._clear_since = None

    def unstalled(self, now: float) -> None:
        """The edge reports no transfer stuck on the link (its telemetry, at `now`)."""
        if self._bound is not None and self._clear_since is None:
            self._clear_since = now

    def estimate(self, now: float) -> float | None:
        """Bytes/s to plan with at `now`: the window's median, or a live bound below it."""
        rate, live = self.bytes_per_second, self._live_bound(now)
        return rate if live is None else live if rate is None else min(rate, live)

    def bounded(self, now: float) -> bool:
        """Whether a bound, not the window, sets the estimate at `now`."""
        rate, live = self.bytes_per_second, self._live_bound(now)
        return live is not None and (rate is None or live < rate)

    def _live_bound(self, now: float) -> float | None:
        """The bound's rate at `now`, unless the edge has reported nothing stuck for
        `hold_s` (it stops tightening at that first report)."""
        if self._bound is None:
            return None
        if self._clear_since is not None:
            if now - self._clear_since > self.hold_s:
                return None
            now = self._clear_since
        return self._rate(self._bound, now)

    @staticmethod
    def _rate(bound: tuple[float, float, float | None], now: float) -> float:
        nbytes, seconds, at = bound
        return nbytes / (seconds + (max(now - at, 0.0) if at is not None else 0.0))

    def _change_test(self, rate: float) -> bool:
        current, f = self.bytes_per_second, self.step_factor
        if current is None or len(self.rates) < self.step_samples or current / f <= rate <= current * f:
            self._pending = []
            return False
        if self._pending and not (
            (rate > current) == (self._pending[0] > current)  # the same direction
            and max(rate, *self._pending) <= f * min(rate, *self._pending)):  # and agreeing
            self._pending = []
        self._pending.append(rate)
        return len(self._pending) >= self.step_samples

    def reset(self) -> None:
        self.rates.clear()
        self._pending = []
        self._bound = self._clear_since = None
        self.samples = 0

    @property
    def bytes_per_second(self) -> float | None:
        """The window's median; none from one transfer alone: the first, a probe while every
        service of a small host was still loading its model, measured 1.65 Mbit/s of a
        5.85 Mbit/s link, and the camera computed everything for 3 s (the planner keeps its
        initial rate until a second transfer)."""
        return statistics.median(self.rates) if len(self.rates) >= 2 else None

    @property
    def bps(self) -> float | None:
        rate = self.bytes_per_second
        return None if rate is None else rate * 8.0


@dataclass
class LinkClock:
    """FIFO model of the uplink at the edge: turns (sent, arrived) times into transfer samples."""

    base_rtt_s: float = 0.0
    _free_at: float = field(default=0.0)

    def elapsed(self, sent_at: float, now: float) -> float:
        """Seconds a transfer sent at `sent_at`, not yet arrived, has had the link so far."""
        return max(now - max(sent_at, self._free_at) - self.base_rtt_s, 0.0)

    def transfer(self, sent_at: float, arrived_at: float) -> float:
        """Seconds the link spent on a transfer sent at `sent_at` that arrived at `arrived_at`."""
        start = max(sent_at, self._free_at)
        self._free_at = max(self._free_at, arrived_at)
        return max(arrived_at - start - self.base_rtt_s, 0.0)
