"""Re-plan time: from a step of the uplink to the planner's plan for the new link, and to the
first frame the edge runs under it.

    python -m bench.replan [--quick] [--model googlenet] [--edge-slowdown 4] [--fps 2]

The services run as deployed (CURVE, the planner's default tick); the uplink steps between two
rates for which DSL's plans differ (wifi: send the frame; 3G: compute on the edge, for googlenet
on an edge 4x slower than this machine). On the test bed (root) a step is `tc` re-shaping a real
veth link; elsewhere the edge's sender emulates the schedule, and the report says which.

What bounds the answer: the planner can only know the link is slower once a transfer has taken
longer than the new plan's break-even rate allows (150 kB at the 3G/wifi break-even of about
1.3 Mbit/s: 0.9 s), and the first frame after a step is sent up to one frame interval later. A
step up is seen from finished transfers (two agreeing ones) or, when nothing crosses, from the
edge's probes.
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from bench.common import markdown_table, parser, write_report
from bench.live import Live, hardware
from common.planning.partition import Plan
from common.planning.units import format_bandwidth, parse_bandwidth
from common.runtime.wire import PlanMsg, WireError, decode
from launch.story import Recorder
from services.edge_agent.results import read_results

WARM_S = 25.0  # profiles, a first plan, the workers' parts built
PHASE_S = 12.0


@dataclass(frozen=True)
class Published:
    at: float  # wall time this process received it
    plan: Plan
    bandwidth_bps: float


class PlanListener(Recorder):
    """Every plan the planner publishes (republishes included), with the time it arrived."""

    def __init__(self, sub: zmq.Socket) -> None:
        super().__init__("plans")
        self.sub = sub
        self.seen: list[Published] = []

    def step(self) -> None:
        if not self.sub.poll(100):
            return
        try:
            msg, _ = decode(self.sub.recv_multipart())
        except WireError:
            return
        if isinstance(msg, PlanMsg):
            self.seen.append(Published(time.time(), Plan.from_json(msg.plan), msg.bandwidth_bps))

    def first_new(self, after: float, until: float) -> Published | None:
        """The first plan published in (after, until] newer than every plan before `after`
        (the planner republishes its last few plans: the newest id is the one in force)."""
        newest = max((p.plan.plan_id for p in self.seen if p.at <= after), default=0)
        return next((p for p in self.seen if after < p.at <= until and p.plan.plan_id > newest),
                    None)


def schedule(steps: list[str]) -> list[tuple[float, str]]:
    """(seconds into the stream, rate) of each step; the first rate holds through warm-up."""
    return [(0.0 if i == 0 else WARM_S + (i - 1) * PHASE_S, rate) for i, rate in enumerate(steps)]


def first_capture(out: Path, proc: Any, timeout: float = 600.0) -> float:
    """Wall time the edge captured its first frame (its schedules start there)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = read_results(out) if out.exists() else []
        if lines:
            return min(ln["done_at"] - ln.get("latency_s", 0.0) for ln in lines)
        if proc.poll() is not None:
            raise RuntimeError("the edge agent exited before its first frame")
        time.sleep(0.2)
    raise TimeoutError(f"no frame from the edge in {timeout:.0f} s")


def run(model: str, slowdown: float, fps: float, steps: list[str], log_dir: Path
        ) -> tuple[list[dict[str, Any]], str, dict[str, Any]]:
    plan = schedule(steps)
    end = plan[-1][0] + PHASE_S
    with Live(model, log_dir, slowdown, workers=2, planner_args=[]) as live:
        uplink = ",".join(f"{rate}@{at:g}" if at else rate for at, rate in plan)
        if live.bed is not None:
            live.bed.shape(steps[0])
        with PlanListener(live.sub) as plans, \
                live.edge(["--fps", str(fps), "--window", "4", "--queue", "4",
                           "--deadline", "30"], uplink=uplink) as edge:
            t0 = first_capture(edge.out, edge.proc)  # the schedule's zero (the edge's too)
            stepped_at: list[float] = []
            for at, rate in plan[1:]:
                time.sleep(max(0.0, t0 + at - time.time()))
                if live.bed is not None:
                    live.bed.shape(rate)
                stepped_at.append(time.time())
                print(f"{at:5.0f} s: uplink {rate}", file=sys.stderr, flush=True)
            time.sleep(max(0.0, t0 + end - time.time()))
            lines = read_results(edge.out)
        link = live.link
        rows = []
        ends = [*stepped_at[1:], t0 + end + 3600]
        for (at, rate), wall, until in zip(plan[1:], stepped_at, ends, strict=True):
            new = plans.first_new(wall, until)
            row: dict[str, Any] = {"at": at, "rate": rate, "bps": parse_bandwidth(rate)}
            if new is not None:
                row.update(replan_s=new.at - wall, plan_id=new.plan.plan_id,
                           transfer_bytes=new.plan.transfer_bytes,
                           planned_bps=new.bandwidth_bps)
                under = [ln for ln in lines if ln.get("plan_id") == new.plan.plan_id
                         and not ln["dropped"]]
                if under:
                    row["first_frame_s"] = min(ln["done_at"] for ln in under) - wall
            rows.append(row)
        raw = {"steps": [[at, rate, wall] for (at, rate), wall in zip(plan[1:], stepped_at,
                                                                      strict=True)],
               "published": [[p.at, p.plan.plan_id, p.bandwidth_bps, p.plan.transfer_bytes]
                             for p in plans.seen]}
    return rows, link, raw


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "replan.md")
    ap.add_argument("--quick", action="store_true", help="one step down and one up")
    ap.add_argument("--model", default="googlenet")
    ap.add_argument("--edge-slowdown", type=float, default=4.0, metavar="F")
    ap.add_argument("--fps", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3, help="wifi->3g->wifi cycles (3)")
    ap.add_argument("--log-dir", default="out/bench-replan")
    args = ap.parse_args(argv)
    cycles = 1 if args.quick else args.repeats
    steps = ["wifi"] + ["3g", "wifi"] * cycles
    rows, link, raw = run(args.model, args.edge_slowdown, args.fps, steps, Path(args.log_dir))
    raw_path = Path(args.out).with_suffix(".json")
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    raw_path.write_text(json.dumps({"rows": rows, "link": link, **raw}))

    def s(v: float | None) -> str:
        return "-" if v is None else f"{v:.2f}"

    table = markdown_table(
        ["step at (s)", "uplink now", "new plan after (s)", "its bandwidth", "bytes it sends",
         "first frame answered under it after (s)"],
        [[f"{r['at']:.0f}", format_bandwidth(r["bps"]), s(r.get("replan_s")),
          format_bandwidth(r["planned_bps"]) if "planned_bps" in r else "-",
          r.get("transfer_bytes", "-"), s(r.get("first_frame_s"))] for r in rows])
    summary = []
    for rate in dict.fromkeys(r["rate"] for r in rows):
        times = [r["replan_s"] for r in rows if r["rate"] == rate and "replan_s" in r]
        missed = sum(1 for r in rows if r["rate"] == rate and "replan_s" not in r)
        if times:
            summary.append(f"to {rate}: median **{statistics.median(times):.2f} s**, worst "
                           f"{max(times):.2f} s over {len(times)} step(s)"
                           + (f"; {missed} step(s) without a new plan" if missed else ""))
        else:
            summary.append(f"to {rate}: no new plan in {missed} step(s)")
    text = (f"## Re-plan time after a step of the uplink\n\n"
            f"{args.model} on an edge {args.edge_slowdown:g}x slower than this machine, "
            f"{args.fps:g} frames/s, 2 workers, CURVE, the planner's defaults. The uplink steps "
            f"every {PHASE_S:.0f} s between wifi and 3G (DSL sends the frame at wifi and keeps "
            f"it on the edge at 3G). Uplink: {link}. Hardware: {hardware()}. Times from the "
            f"step to the planner publishing a new plan, and to the first frame answered "
            f"under it.\n\n- " + "\n- ".join(summary) + f"\n\n{table}\n")
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
