"""The control loop under real conditions: estimate -> plan -> admission, step by step.

    python -m bench.control [--quick] [--link emulated|tc|both] [--model googlenet]

Runs `dads up --check` (every service a process, CURVE) on step schedules of the uplink and of
the camera's rate, each once on a quiet machine and once with a CPU hog (a busy-looping process)
joining half way, over two links: the edge's emulated uplink (loopback), and a real link between
network namespaces shaped by tc tbf (`dads up --link tc`; needs root, skipped without). It reads
each run's verdict by phase (`launch.story`): how long the planner's estimate took to come
within 2x of each new rate, the plan changes after settling, p95 latency against twice the
planner's own prediction plus a frame interval, measured / predicted, the planner's calibration
ratios 10 s into the phase, frames shed. Table, figure and raw JSON in docs/control.md.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import figure, log_dir, markdown_table, parser, save_raw, write_report
from launch import testbed

#: (name, uplink schedule, fps schedule, seconds): steps both ways across the breakpoints of the
#: default model's bandwidth map here (about 2 Mbit/s at an 8x slower camera), and load steps
SCHEDULES: list[tuple[str, str, str, float]] = [
    ("down-up", "20mbit,700kbit@12,20mbit@24", "1", 36.0),
    ("deep", "50mbit,5mbit@12,130kbit@24,50mbit@36", "1", 48.0),
    ("load", "100mbit", "2,30@12,2@24", 36.0),
]
QUICK: list[tuple[str, str, str, float]] = [("down-up", "20mbit,700kbit@8", "1", 16.0)]


@contextlib.contextmanager
def hog(after_s: float | None) -> Iterator[None]:
    """A process that keeps one core busy from `after_s` seconds on (None: no hog)."""
    if after_s is None:
        yield
        return
    code = f"import time\ntime.sleep({after_s})\nwhile True:\n    pass\n"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        yield
    finally:
        proc.kill()
        proc.wait()


def run_one(name: str, uplink: str, fps: str, seconds: float, model: str, slowdown: float,
            with_hog: bool, link: str = "emulated") -> dict[str, Any]:
    logs = log_dir(f"control-{name}-{link}{'-hog' if with_hog else ''}")
    cmd = [sys.executable, "-m", "cli", "up", "--model", model, "--uplink", uplink, "--fps", fps,
           "--duration", str(seconds), "--edge-slowdown", str(slowdown), "--check",
           "--log-dir", str(logs), "--base-port", "0", "--metrics-port", "0", "--link", link]
    t0 = time.monotonic()
    # the hog joins half way through the stream (model loading takes ~10 s before it starts)
    with hog(10.0 + seconds / 2 if with_hog else None):
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 240)
    story = json.loads((logs / "story.json").read_text()) if (logs / "story.json").exists() else {}
    return {"schedule": name, "link": link, "uplink": uplink, "fps": fps, "hog": with_hog,
            "rc": done.returncode,
            "wall_s": round(time.monotonic() - t0, 1), "verdicts": story.get("verdicts", []),
            "failures": story.get("failures", []), "logs": str(logs),
            "tail": done.stdout[-1500:] + done.stderr[-800:]}


def _f(x: float | None, scale: float = 1.0, digits: int = 1) -> str:
    return "-" if x is None or x != x else f"{x * scale:.{digits}f}"


def table(records: list[dict[str, Any]]) -> str:
    rows = []
    for r in records:
        for v in r["verdicts"]:
            p = v["phase"]
            pred = v["predicted_s"]
            cal = v.get("calibration") or (float("nan"),) * 2
            rows.append([
                r["schedule"], r.get("link", "emulated"), "yes" if r["hog"] else "no",
                f"{p['start_s']:.0f}",
                f"{p['bandwidth_bps'] / 1e6:.2f}", f"{p['fps']:g}", _f(v["tracked_s"]),
                v["changes"], _f(v["p95_s"], 1e3, 0), _f(pred, 1e3, 0),
                _f(v["p95_s"] / (2 * pred + 1 / p["fps"]) if pred == pred and pred else None,
                   1, 2),
                _f(v["p50_s"] / pred if pred == pred and pred else None, 1, 2),
                f"{_f(cal[0], 1, 2)} / {_f(cal[1], 1, 2)}", v["answered"], v["shed"], "ok" if not v["failures"] else "; ".join(v["failures"])])
    return markdown_table(
        ["schedule", "link", "CPU hog", "phase at (s)", "uplink (Mbit/s)", "fps",
         "estimate within 2x after (s)", "plan changes after settling", "p95 (ms)",
         "predicted (ms)", "p95 / (2 x predicted + interval)", "p50 / predicted",
         "calibration edge / cloud at 10 s", "answered", "shed", "verdict"],
        rows)


def plot(records: list[dict[str, Any]], path: Path) -> None:
    with figure(path, 1, 2, figsize=(11, 4)) as (_, (a, b)):
        for hogged, marker in ((False, "o"), (True, "x")):
            vs = [v for r in records if r["hog"] == hogged for v in r["verdicts"]
                  if v["predicted_s"] == v["predicted_s"] and v["predicted_s"]]
            a.scatter([v["predicted_s"] * 1e3 for v in vs], [v["p95_s"] * 1e3 for v in vs],
                      marker=marker, label="CPU hog" if hogged else "quiet")
            steps = [v["tracked_s"] for v in vs if v["tracked_s"] is not None]
            b.hist(steps, bins=10, alpha=0.6, label="CPU hog" if hogged else "quiet")
        lim = max([1.0, *(v["p95_s"] * 1e3 for r in records for v in r["verdicts"]
                          if v["p95_s"] == v["p95_s"])])
        a.plot([1, lim], [2, 2 * lim], "k--", lw=0.8, label="2 x predicted")
        a.set(xscale="log", yscale="log", xlabel="planner's predicted latency (ms)",
              ylabel="p95 latency, settled (ms)", title="each phase of each run")
        a.legend()
        b.set(xlabel="seconds until the estimate is within 2x of a new rate", ylabel="phases",
              title="tracking the uplink")
        b.legend()


_LINKS = {"emulated": "the uplink emulated in the edge agent (loopback)",
          "tc": "a real link (network namespaces, a veth pair shaped by tc tbf, the schedule "
                "applied as the stream runs: `dads up --link tc`)"}


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "control.md")
    ap.add_argument("--quick", action="store_true", help="one short schedule, quiet only")
    ap.add_argument("--model", default="googlenet")
    ap.add_argument("--edge-slowdown", type=float, default=8.0)
    ap.add_argument("--link", choices=("emulated", "tc", "both"), default=None,
                    help="the uplink (default: both where the tc test bed can run, i.e. as "
                    "root; emulated with --quick)")
    args = ap.parse_args(argv)
    schedules = QUICK if args.quick else SCHEDULES
    link = args.link or ("emulated" if args.quick or not testbed.available() else "both")
    links = ["emulated", "tc"] if link == "both" else [link]
    records = []
    for lk in links:
        for name, uplink, fps, seconds in schedules:
            for with_hog in ((False,) if args.quick else (False, True)):
                print(f"bench.control: {name} over the {lk} link "
                      f"{'with' if with_hog else 'without'} a CPU hog", file=sys.stderr, flush=True)
                records.append(run_one(name, uplink, fps, seconds, args.model,
                                       args.edge_slowdown, with_hog, lk))
    out = Path(args.out)
    picture = save_raw(records, out, plot)
    held = sum(not r["failures"] for r in records)
    text = "\n".join([
        "## The control loop under real conditions (bench.control)", "",
        f"`python -m bench.control{' --quick' if args.quick else ''}`: `dads up --check` "
        f"({args.model}, the camera {args.edge_slowdown:g}x slower than this machine, two "
        "workers) on step schedules, " + ("quiet only" if args.quick else
                                          "each quiet and with a CPU hog (one busy-looping "
                                          "process) joining half way")
        + ", over " + (" and ".join(_LINKS[lk] for lk in links)) + ". Per phase, "
        "judged from 4 s after its step (`launch.story`): the estimate's time to come within 2x "
        "of the new rate, plan changes after settling, p95 latency of the answered frames "
        "against twice the planner's own prediction (its stages and its frames' measured wait) "
        "plus a frame interval, measured / predicted, the planner's calibration ratios (measured "
        "/ predicted edge and cloud stage) 10 s into the phase, frames shed. "
        f"{held} of {len(records)} runs held every bound.", "",
        table(records), "", f"![control]({picture})", ""])
    write_report(text, str(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
