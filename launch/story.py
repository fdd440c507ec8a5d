"""`make demo` (`dads up --story`): what the system is for, told on one machine in under a minute.

The edge's emulated uplink steps through wifi → 3G → cat1 → wifi, and on wifi again the camera
jumps from light to heavy load. The user watches the planner move the cut (DSL) and switch to
DSH, live on the edge's status line; at the end a summary per phase (p50/p95 latency, frames
answered and dropped, the plans in force, how long each step took to reach a new plan) and a
timeline picture: per-frame latency, frames per second, the uplink against the planner's
estimate, with plan and regime changes marked.

The recorder only reads: the edge's per-frame JSON lines and the planner's /metrics, polled.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.request
from dataclasses import dataclass
from math import nan
from pathlib import Path
from typing import Any, Self

from common.planning.units import format_bandwidth, parse_bandwidth
from services.edge_agent.results import read_results
from services.edge_agent.state import Schedule, percentile

__all__ = ["UPLINK", "FPS", "SECONDS", "Recorder", "PlannerRecorder", "Story"]

UPLINK = "wifi,3g@12,cat1@24,wifi@36"
FPS = "2,20@42"
SECONDS = 54.0


@dataclass(frozen=True)
class Sample:
    at: float  # wall time
    bandwidth_bps: float
    heavy: bool
    plan_id: int


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

    def __init__(self, port: int, period_s: float = 0.25) -> None:
        super().__init__("planner-recorder")
        self.url = f"http://127.0.0.1:{port}/metrics"
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
                values.get("dads_regime_heavy", 0) > 0, int(values["dads_plan_id"])))


def _gauges(text: str) -> dict[str, float]:
    """The samples of a /metrics page that have no labels but `edge` (the story runs one
    edge), by name (prometheus_client's own parser)."""
    from prometheus_client.parser import text_string_to_metric_families

    return {sample.name: sample.value for family in text_string_to_metric_families(text)
            for sample in family.samples if set(sample.labels) <= {"edge"}}


@dataclass
class Story:
    uplink: Schedule
    fps: Schedule
    lines: list[dict[str, Any]]
    samples: list[Sample]

    @classmethod
    def load(cls, results: Path, samples: list[Sample], uplink: str = UPLINK,
             fps: str = FPS) -> Story:
        return cls(Schedule.parse(uplink, parse_bandwidth), Schedule.parse(fps, float),
                   read_results(results), samples)

    @property
    def t0(self) -> float:
        """Wall time of the stream's start: the first frame's capture."""
        answered = [ln for ln in self.lines if not ln["dropped"]]
        return min(ln["done_at"] - ln["latency_s"] for ln in answered) if answered else 0.0

    def phases(self) -> list[tuple[float, float]]:
        cuts = sorted({0.0, *self.uplink.changes, *self.fps.changes})
        return [(a, b) for a, b in zip(cuts, [*cuts[1:], SECONDS], strict=True)]

    def reaction_s(self) -> list[tuple[float, str, float | None, float | None]]:
        """For each step of the uplink: (second, new rate, seconds until the planner's estimate
        was within 2x of it, seconds until a new plan id, None if none came before the next step)."""
        out: list[tuple[float, str, float | None, float | None]] = []
        ends = [*self.uplink.changes[1:], SECONDS]
        for at, end in zip(self.uplink.changes, ends, strict=True):
            wall, until, rate = self.t0 + at, self.t0 + end, self.uplink.at(at)
            window = [s for s in self.samples if wall < s.at <= until]
            before = [s.plan_id for s in self.samples if s.at <= wall]
            seen = next((s.at - wall for s in window if rate / 2 <= s.bandwidth_bps <= rate * 2),
                        None)
            moved = next((s.at - wall for s in window if before and s.plan_id != before[-1]), None)
            out.append((at, format_bandwidth(rate), seen, moved))
        return out

    def summary(self) -> str:
        rows = []
        for a, b in self.phases():
            mine = [ln for ln in self.lines if a <= _captured(ln, self.t0) < b]
            ok = [ln for ln in mine if not ln["dropped"] and "latency_s" in ln]
            lat = [ln["latency_s"] * 1e3 for ln in ok]
            plans = sorted({f"{ln['plan_id']} {ln['algorithm']}" for ln in ok})
            rows.append(f"  {a:4.0f}-{b:3.0f} s  {format_bandwidth(self.uplink.at(a)):>13}  "
                        f"{self.fps.at(a):4.0f} fps  {len(ok):4d} answered "
                        f"{sum(ln['dropped'] for ln in mine):3d} dropped  "
                        f"p50 {percentile(lat, 50, nan):7.1f} ms  p95 {percentile(lat, 95, nan):7.1f} ms  "
                        f"plans {', '.join(plans) or '-'}")
        steps = [f"  {at:4.0f} s → {rate:>13}: estimate there after {_s(seen)}, "
                 f"new plan after {_s(moved)}" for at, rate, seen, moved in self.reaction_s()]
        return "\n".join(["story summary (by phase of the script):", *rows,
                          "uplink steps (planner's estimate within 2x of the new rate; a new "
                          "plan, where DSL's plan for the new rate differs):", *steps])

    def plot(self, path: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        t0 = self.t0
        ok = [ln for ln in self.lines if not ln["dropped"] and "latency_s" in ln]
        fig, (a, b, c) = plt.subplots(3, 1, figsize=(10, 8), sharex=True)
        a.scatter([ln["done_at"] - t0 for ln in ok], [ln["latency_s"] * 1e3 for ln in ok], s=8,
                  c=["tab:red" if ln["algorithm"] == "dsh" else "tab:blue" for ln in ok])
        a.set(ylabel="latency (ms)", yscale="log",
              title="frame latency (blue: DSL plans, red: DSH); dashed: a new plan")
        done = [ln["done_at"] - t0 for ln in ok]
        if done:
            edges = list(range(0, int(max(done)) + 2))
            b.hist(done, bins=edges, color="tab:green", alpha=0.7, label="answered per second")
        grid = [i * 0.5 for i in range(int(SECONDS * 2) + 1)]
        b.step(grid, [self.fps.at(t) for t in grid], where="post", color="k", label="offered fps")
        b.set(ylabel="frames / s")
        b.legend(loc="upper left")
        c.step(grid, [self.uplink.at(t) / 1e6 for t in grid], where="post", color="k",
               label="uplink (emulated)")
        c.plot([s.at - t0 for s in self.samples], [s.bandwidth_bps / 1e6 for s in self.samples],
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
        a.set_xlim(0, SECONDS)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)

    def to_json(self) -> str:
        return json.dumps({"uplink": UPLINK, "fps": FPS, "reaction_s": self.reaction_s(),
                           "samples": [s.__dict__ for s in self.samples]}, indent=1)


def _s(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f} s"


def _captured(line: dict[str, Any], t0: float) -> float:
    """Seconds into the story a frame was captured (a dropped one: when it was given up)."""
    return line["done_at"] - line.get("latency_s", 0.0) - t0
