"""`make demo` (`dads up --story`): what the system is for, told on one machine in about a minute.

The script is derived from this machine's profile of the model (`script_for`), not written for
one machine: the bandwidth map of the emulated edge and the cloud (DSL's best cut for every
rate) gives the rates where the best plan changes, so the uplink steps to a rate inside each of
its segments (fast: the pool computes; slow: the camera does) and back, and a last phase raises
the camera's rate beyond what one worker takes (the pool's workers share the frames).
The user watches the planner move the cut, live on the edge's status line; at the end a
summary per phase says what the planner should have done and what it did (time to adapt, plan
changes after settling, p95 latency against the planner's own prediction, frames shed), and
whether the story held; and a timeline picture: per-frame latency, frames per second, the uplink
against the planner's estimate, with plan and regime changes marked.

The recorder only reads: the edge's per-frame JSON lines and the planner's /metrics, polled.
"""

from __future__ import annotations

import json
import math
import statistics
import threading
import time
import urllib.request
from dataclasses import asdict, dataclass
from math import nan
from pathlib import Path
from typing import Any, Self

import networkx as nx

from common.planning import bwmap, partition
from common.planning.units import format_bandwidth, parse_bandwidth
from services.edge_agent.results import read_results
from services.edge_agent.state import Schedule, percentile

__all__ = ["Phase", "Script", "script_for", "Recorder", "PlannerRecorder", "Story",
           "first_capture"]

PHASE_S = 12.0
FAST_FLOOR_BPS = 18.9e6  # the fast phases' uplink at least (wifi)
SETTLE_S = 4.0  # a phase is judged from this long after its step (the planner adapts first)
TRACK_UP_S = 3.0  # the estimate within 2x of a faster uplink in this long
TRACK_DOWN_S = 1.5  # ... of a slower one, once knowable: a frame sent after the step (within a
# frame interval) has been on the link long enough for its rate so far to be within 2x
PROBE_BYTES = 64 * 1024  # the largest probe: what crosses when no frame does
CALIBRATED_S = 10.0  # the planner's stage predictions within [0.67, 1.5] of the measured by then


@dataclass(frozen=True)
class Phase:
    start_s: float
    bandwidth_bps: float
    fps: float
    expect: str  # "edge": the whole model on the camera; "cloud": the pool computes; "pool": the
    # camera beyond one worker's rate, the pool's workers share it
    edge_nodes: int  # DSL's cut at this rate: nodes on the camera (of `nodes`)
    nodes: int
    predicted_s: float  # DSL's latency at this rate


@dataclass(frozen=True)
class Script:
    phases: tuple[Phase, ...]
    seconds: float

    @property
    def uplink(self) -> str:
        """The uplink as a schedule (`--uplink`): its rate at each step."""
        return _schedule([(p.start_s, f"{p.bandwidth_bps / 1e6:.3g}mbit") for p in self.phases])

    @property
    def fps(self) -> str:
        """The camera's rate as a schedule (`--fps`)."""
        return _schedule([(p.start_s, f"{p.fps:g}") for p in self.phases])

    def describe(self) -> str:
        rows = []
        for i, p in enumerate(self.phases):
            end = self.phases[i + 1].start_s if i + 1 < len(self.phases) else self.seconds
            rows.append(f"  {p.start_s:4.0f}-{end:3.0f} s  {format_bandwidth(p.bandwidth_bps):>13}"
                        f"  {p.fps:4.1f} fps  expect {_EXPECT[p.expect]}")
        return "\n".join(rows)


def _schedule(steps: list[tuple[float, str]]) -> str:
    """VALUE,VALUE@SECOND,...: only where the value changes."""
    out: list[str] = []
    last = None
    for at, value in steps:
        if value != last:
            out.append(value if not out else f"{value}@{at:g}")
            last = value
    return ",".join(out)


_EXPECT = {"edge": "the whole model on the camera (DSL)",
           "cloud": "the pool computes (DSL cut)",
           "pool": "beyond one worker: the pool's workers share the frames"}


def script_for(g: nx.DiGraph, workers: int = 2, phase_s: float = PHASE_S) -> Script:
    """The story for this cost graph (the emulated camera's times and the pool's, as measured
    here): a fast uplink, then a rate inside each slower segment of DSL's bandwidth map (at most
    two), fast again, and a last phase on the fast uplink beyond one worker. The first phases'
    frame rate keeps every one of their plans at most half busy (so each phase's plan is DSL's);
    the last phase's is 1.5 times what one worker takes of the fast plan's cloud part (with two
    workers or more, still light load for the pool; on a busy host, heavy)."""
    segments = bwmap.bandwidth_map(g).segments  # by increasing bandwidth
    top = segments[-1]
    fast_cut = partition.evaluate(g, top.edge_nodes, max(top.min_bps * 8, FAST_FLOOR_BPS))
    pool_fps = float(max(2, math.ceil(1.5 / max(fast_cut.cloud_s, 1e-3))))
    fast = max(FAST_FLOOR_BPS, 8 * top.min_bps,  # the link must carry the last phase twice over
               2.0 * pool_fps * top.transfer_bytes * 8)
    slow = []
    for seg in reversed(segments[:-1][-2:]):  # the next slower segments, at most two
        lo = max(seg.min_bps, seg.max_bps / 8)
        slow.append((math.sqrt(lo * seg.max_bps), seg))
    rates = [(fast, top), *slow, (fast, top)]
    busiest = max(partition.evaluate(g, seg.edge_nodes, bps).bottleneck_s for bps, seg in rates)
    light_fps = float(min(2.0, math.floor(0.5 / busiest * 10) / 10)) or 0.1
    phases = []
    for i, (bps, seg) in enumerate([*rates, (fast, top)]):
        last = i == len(rates)
        pred = partition.evaluate(g, seg.edge_nodes, bps)
        expect = "pool" if last else ("edge" if not seg.transfer else "cloud")
        phases.append(Phase(i * phase_s, bps, pool_fps if last else light_fps, expect,
                            len(seg.edge_nodes), len(g), pred.latency_s))
    return Script(tuple(phases), len(phases) * phase_s)


def script_here(model: str, edge_slowdown: float, workers: int) -> Script:
    """The story for `model` on this machine: its profile here (cached; measured on one thread,
    as `dads up` runs every service), the camera's scaled by the emulated slowdown."""
    from common.model.graph import trace
    from common.model.models import input_shape_for, load_served, synthetic_frame
    from common.model.profiler import cached_profile
    from common.planning import costgraph
    from common.planning.profile import scaled

    shape = input_shape_for(model)
    graph = trace(load_served(model), synthetic_frame(0, shape), name=model)
    here = cached_profile(graph, "cpu", threads=1, progress=False)
    edge = scaled(here, 1.0 / edge_slowdown) if edge_slowdown > 1 else here
    return script_for(costgraph.build(graph.dag, edge, here), workers)


def script_of(uplink: str, fps: str, seconds: float) -> Script:
    """A script given as schedules (`dads up --uplink ... --fps ...`): its phases expect
    nothing in particular (the summary reports them; nothing is judged but the bounds)."""
    up, rate = Schedule.parse(uplink, parse_bandwidth), Schedule.parse(fps, float)
    starts = sorted({0.0, *up.changes, *rate.changes})
    return Script(tuple(Phase(t, up.at(t), rate.at(t), "", 0, 0, 0.0) for t in starts), seconds)


@dataclass(frozen=True)
class Sample:
    at: float  # wall time
    bandwidth_bps: float
    heavy: bool
    plan_id: int
    predicted_s: float = 0.0  # the planner's latency prediction for the plan in force
    calibration: tuple[float, float] = (1.0, 1.0)  # measured / predicted: edge, cloud stage


class Recorder:
    """A thread that records while a `with` block runs: `step()` (override) waits for one
    observation, at most about `stopping` allows, and records it."""

    def __init__(self, name: str) -> None:
        self.stopping = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopping.set()
        self._thread.join(5)

    def _run(self) -> None:
        while not self.stopping.is_set():
            self.step()

    def step(self) -> None:
        raise NotImplementedError


class PlannerRecorder(Recorder):
    """The planner's estimate, regime and plan id, read from its /metrics every `period_s`."""

    def __init__(self, url: str, period_s: float = 0.25) -> None:
        super().__init__("planner-recorder")
        self.url = url
        self.period_s = period_s
        self.samples: list[Sample] = []

    def step(self) -> None:
        if self.stopping.wait(self.period_s):
            return
        try:
            with urllib.request.urlopen(self.url, timeout=2) as r:  # noqa: S310 - loopback
                values = _gauges(r.read().decode())
        except OSError:
            return  # not up yet, or gone
        if "dads_plan_id" in values:
            self.samples.append(Sample(
                time.time(), values.get("dads_bandwidth_estimate_bytes_per_second", 0) * 8,
                values.get("dads_regime_heavy", 0) > 0, int(values["dads_plan_id"]),
                values.get("dads_edge_predicted_latency_seconds", 0.0),
                (values.get("dads_calibration_ratio:edge", 1.0),
                 values.get("dads_calibration_ratio:cloud", 1.0))))


def _gauges(text: str) -> dict[str, float]:
    """The samples of a /metrics page that have no labels but `edge` (the story runs one
    edge) and `stage`, by name, and `name:stage` (prometheus_client's own parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {sample.name + (f":{sample.labels['stage']}" if "stage" in sample.labels else ""):
            sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if set(sample.labels) <= {"edge", "stage"}}


@dataclass
class Verdict:
    """One phase, as run: what it should have done and what it did."""

    phase: Phase
    end_s: float
    answered: int
    shed: int
    dropped: int
    p50_s: float
    p95_s: float
    predicted_s: float  # median of the planner's prediction while the phase ran (settled)
    tracked_s: float | None  # the estimate within 2x of the phase's rate, after its step
    calibration: tuple[float, float]  # the planner's measured / predicted (edge, cloud stage)
    # CALIBRATED_S into the phase (or at its end)
    changes: int  # plan changes after settling
    placement: str  # where the settled frames ran: edge, cloud, or mixed
    failures: tuple[str, ...]


@dataclass
class Story:
    script: Script
    lines: list[dict[str, Any]]
    samples: list[Sample]
    workers: int = 2

    @classmethod
    def load(cls, results: Path, samples: list[Sample], script: Script,
             workers: int = 2) -> Story:
        return cls(script, read_results(results), samples, workers)

    @property
    def t0(self) -> float:
        """Wall time of the stream's start: the first frame's capture."""
        return first_capture(self.lines) or 0.0

    def phases(self) -> list[tuple[Phase, float]]:
        ps = self.script.phases
        return [(p, ps[i + 1].start_s if i + 1 < len(ps) else self.script.seconds)
                for i, p in enumerate(ps)]

    def verdicts(self) -> list[Verdict]:
        t0, out = self.t0, []
        for i, (phase, end) in enumerate(self.phases()):
            mine = [ln for ln in self.lines if phase.start_s <= _captured(ln, t0) < end]
            settled = phase.start_s + (SETTLE_S if i else 0.0)
            ok = [ln for ln in mine if not ln["dropped"] and _captured(ln, t0) >= settled]
            lat = [ln["latency_s"] for ln in ok]
            window = [sm for sm in self.samples if t0 + settled <= sm.at < t0 + end]
            preds = [sm.predicted_s for sm in window if sm.predicted_s > 0]
            pred = statistics.median(preds) if preds else nan
            tracked = self._tracked(phase, end) if i else 0.0
            at = t0 + min(phase.start_s + CALIBRATED_S, end)
            calibration = min(self.samples, key=lambda sm: abs(sm.at - at)).calibration \
                if self.samples else (nan, nan)
            changes = sum(a.plan_id != b.plan_id for a, b in zip(window, window[1:], strict=False))
            here = sum(ln["worker"] == "edge" for ln in ok)
            placement = ("-" if not ok else "edge" if here >= 0.8 * len(ok)
                         else "cloud" if here <= 0.2 * len(ok) else "mixed")
            fails = []
            p95 = percentile(lat, 95, nan)
            bound = 2 * pred + 1 / phase.fps
            if lat and preds and p95 > bound:
                fails.append(f"p95 {p95 * 1e3:.0f} ms > 2 x predicted + a frame interval "
                             f"({bound * 1e3:.0f} ms)")
            if lat and preds and not 0.5 <= statistics.median(lat) / pred <= 2.0:
                fails.append(f"measured / predicted {statistics.median(lat) / pred:.2f}, "
                             "not within [0.5, 2]")
            if i and phase.bandwidth_bps != self.script.phases[i - 1].bandwidth_bps:
                limit = (TRACK_UP_S if phase.bandwidth_bps > self.script.phases[i - 1].bandwidth_bps
                         else self._knowable_s(i, phase) + TRACK_DOWN_S)
                if tracked is None or tracked > limit:
                    fails.append(f"estimate not within 2x of the new rate in {limit:g} s")
            if changes > 1:
                fails.append(f"{changes} plan changes after settling (at most 1)")
            if phase.expect == "edge" and placement != "edge":
                fails.append(f"frames ran on {placement}, not on the camera")
            if phase.expect == "cloud" and placement != "cloud":
                fails.append(f"frames ran on {placement}, not in the pool")
            if phase.expect == "pool":
                if placement != "cloud":
                    fails.append(f"frames ran on {placement}, not in the pool")
                used = {ln["worker"] for ln in ok if ln["worker"] != "edge"}
                if self.workers > 1 and len(used) < 2:
                    fails.append(f"only {len(used)} worker(s) served beyond one worker's rate")
            if not ok:
                fails.append("no frame answered after settling")
            out.append(Verdict(
                phase, end, sum(not ln["dropped"] for ln in mine),
                sum(ln.get("reason") == "shed" for ln in mine),
                sum(ln["dropped"] and ln.get("reason") != "shed" for ln in mine),
                percentile(lat, 50, nan), p95, pred, tracked, calibration, changes, placement,
                tuple(fails)))
        return out

    def _knowable_s(self, i: int, phase: Phase) -> float:
        """When a step down to `phase` can first be seen: the next transfer starts within a
        frame interval, and bounds the rate within 2x once it has taken half what the new rate
        needs for it (progress inside a message is not visible); its size is the largest the
        phase before sent (or a probe)."""
        before = self.script.phases[i - 1]
        sent = [ln.get("bytes", 0) for ln in self.lines if not ln["dropped"]
                and before.start_s <= _captured(ln, self.t0) < phase.start_s]
        size = max([PROBE_BYTES, *sent])
        return 1.0 / phase.fps + size * 8.0 / (2.0 * phase.bandwidth_bps)

    def _tracked(self, phase: Phase, end: float) -> float | None:
        """Seconds after the phase's start until the planner's estimate was within 2x of its
        rate (None: not before the phase ended)."""
        t0, rate = self.t0, phase.bandwidth_bps
        return next((sm.at - t0 - phase.start_s for sm in self.samples
                     if t0 + phase.start_s < sm.at <= t0 + end
                     and rate / 2 <= sm.bandwidth_bps <= rate * 2), None)

    def lost(self) -> list[int]:
        """Frame ids neither answered nor reported dropped (must be none)."""
        seen = {ln["frame_id"] for ln in self.lines}
        return sorted(set(range(max(seen) + 1)) - seen) if seen else []

    def failures(self) -> list[str]:
        out = [f"{v.phase.start_s:.0f} s: {f}" for v in self.verdicts() for f in v.failures]
        if self.lost():
            out.append(f"frames never accounted for: {self.lost()[:10]}")
        return out

    def summary(self) -> str:
        rows = []
        for v in self.verdicts():
            p = v.phase
            rows.append(
                f"  {p.start_s:4.0f}-{v.end_s:3.0f} s  {format_bandwidth(p.bandwidth_bps):>13} "
                f"{p.fps:5.1f} fps  {v.answered:4d} answered {v.shed:3d} shed "
                f"{v.dropped:2d} dropped  p50 {v.p50_s * 1e3:7.1f} ms  p95 {v.p95_s * 1e3:7.1f} "
                f"ms  predicted {v.predicted_s * 1e3:6.1f} ms  ran on {v.placement:5}  "
                f"estimate {_s(v.tracked_s)}, {v.changes} change(s) after settling")
            if p.expect:
                rows.append(f"      expected {_EXPECT[p.expect]}: "
                            + ("held" if not v.failures else "FAILED: " + "; ".join(v.failures)))
            elif v.failures:
                rows.append("      FAILED: " + "; ".join(v.failures))
        lost = self.lost()
        verdict = ("the story held" if not self.failures() else
                   f"the story did not hold ({len(self.failures())} failure(s))")
        return "\n".join([
            "story summary (by phase; latency judged from "
            f"{SETTLE_S:g} s after each step, when the planner has adapted):", *rows,
            f"frames: {len(self.lines)} captured, every one answered or reported"
            if not lost else f"frames: {len(lost)} never accounted for", verdict])

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t0, seconds = self.t0, self.script.seconds
        up = Schedule.parse(self.script.uplink, parse_bandwidth)
        fps = Schedule.parse(self.script.fps, float)
        ok = [ln for ln in self.lines if not ln["dropped"] and "latency_s" in ln]
        fig, (a, b, c) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
        a.scatter([ln["done_at"] - t0 for ln in ok], [ln["latency_s"] * 1e3 for ln in ok], s=8,
                  c=["tab:red" if ln["algorithm"] == "dsh" else "tab:blue" for ln in ok])
        a.plot([sm.at - t0 for sm in self.samples], [sm.predicted_s * 1e3 for sm in self.samples],
               color="tab:grey", lw=1, label="planner's prediction")
        a.set(ylabel="latency (ms)", yscale="log",
              title="frame latency (blue: DSL plans, red: DSH); dashed: a new plan")
        a.legend(loc="upper left")
        done = [ln["done_at"] - t0 for ln in ok]
        if done:
            edges = list(range(0, int(max(done)) + 2))
            b.hist(done, bins=edges, color="tab:green", alpha=0.7, label="answered per second")
        grid = [i * 0.5 for i in range(int(seconds * 2) + 1)]
        b.step(grid, [fps.at(t) for t in grid], where="post", color="k", label="offered fps")
        b.set(ylabel="frames / s")
        b.legend(loc="upper left")
        c.step(grid, [up.at(t) / 1e6 for t in grid], where="post", color="k",
               label="uplink (emulated)")
        c.plot([sm.at - t0 for sm in self.samples], [sm.bandwidth_bps / 1e6 for sm in self.samples],
               color="tab:orange", label="planner's estimate")
        c.set(ylabel="Mbit/s", yscale="log", xlabel="seconds into the story")
        c.legend(loc="upper right")
        for prev, cur in zip(self.samples, self.samples[1:], strict=False):
            if cur.plan_id != prev.plan_id:
                for ax in (a, b, c):
                    ax.axvline(cur.at - t0, color="grey", ls="--", lw=0.8)
            if cur.heavy != prev.heavy:
                c.annotate("heavy (DSH)" if cur.heavy else "light (DSL)", (cur.at - t0, 0.2),
                           rotation=90, fontsize=8)
        a.set_xlim(0, seconds)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def to_json(self) -> str:
        return json.dumps({"script": [asdict(p) for p in self.script.phases],
                           "uplink": self.script.uplink, "fps": self.script.fps,
                           "verdicts": [{**asdict(v), "phase": asdict(v.phase)}
                                        for v in self.verdicts()],
                           "failures": self.failures(),
                           "samples": [sm.__dict__ for sm in self.samples]}, indent=1)


def first_capture(lines: list[dict[str, Any]]) -> float | None:
    """Wall time the first answered frame was captured (None before any is answered)."""
    answered = [ln for ln in lines if not ln["dropped"]]
    return min(ln["done_at"] - ln["latency_s"] for ln in answered) if answered else None


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def _captured(line: dict[str, Any], t0: float) -> float:
    """Seconds into the story a frame was captured (a dropped one: when it was given up)."""
    return line["done_at"] - line.get("latency_s", 0.0) - t0
