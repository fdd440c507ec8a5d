"""Soak: heavy load for a long while, with a worker, the planner and the broker killed and restarted.

    python -m bench.soak [--quick] [--duration 600] [--model googlenet]

Real services on loopback with CURVE keys, two workers, one edge offering more frames than the
system can serve (heavy load) with a bounded queue. During the run: a worker is SIGKILLed and
restarted, then the planner, then the broker (each SIGKILL, restart 3 s later). At the end the
edge is stopped cleanly. Reported: frames in / answered / reported dropped (by reason) /
silently lost (must be 0: every frame counted in gets a result or a reported drop), each
service's RSS at start and end (growth), and the recovery time after each fault: from the kill to
the first result of a frame captured after the kill.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import figure, log_dir, markdown_table, parser, save_raw, write_report


def rss_mb(pid: int) -> float:
    """Resident set size of a live process, from /proc (0 when it is gone)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0.0
    m = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(m.group(1)) / 1024 if m else 0.0


def run(model: str, duration: float, fps: float, logs: Path) -> dict[str, Any]:
    from launch.up import (
        Ports,
        free_base,
        security_env,
        start_broker,
        start_cloud,
        start_planner,
        start_service,
        start_workers,
        stop_system,
        wait_log,
    )

    ports = Ports(free_base(4), free_base(8))
    env = {**security_env(logs), "DADS_CACHE": os.environ.get(
        "DADS_CACHE", str(Path.home() / ".cache" / "dads"))}
    procs = start_cloud(ports, logs, env=env)
    procs.update(start_workers(ports, model, logs, 0, 2, env=env))
    for i in range(2):
        wait_log(logs / f"worker-{i}.log", "ready on", procs[f"worker-{i}"], 300)
    out = logs / "edge.jsonl"
    edge_args = ["--model", model, "--threads", "1", "--plans", ports.plans, "--telemetry",
                 ports.telemetry, "--broker", ports.frontend, "--metrics-port",
                 str(ports.metrics_base + 4), "--frames", "0", "--fps", str(fps), "--queue", "8",
                 "--window", "6", "--deadline", "20", "--edge-slowdown", "4", "--output", str(out)]
    procs["edge"] = start_service("edge_agent", edge_args, logs / "edge.log", env=env)
    wait_log(logs / "edge.log", "plan ", procs["edge"], 300)
    start = time.time()
    restarts = {
        "worker-0": lambda: start_workers(ports, model, logs, 0, 1, env=env)["worker-0"],
        "planner": lambda: start_planner(ports, logs / "planner.log", env=env),
        "broker": lambda: start_broker(ports, logs / "broker.log", env),
    }
    schedule = [(0.2, "worker-0"), (0.45, "planner"), (0.7, "broker")]
    label = {n: n for n in procs}  # a restarted service gets a series of its own
    rss: dict[str, list[tuple[float, float]]] = {n: [] for n in procs}
    faults: list[dict[str, Any]] = []
    try:
        while time.time() - start < duration:
            now = time.time()
            for name, p in procs.items():
                rss.setdefault(label[name], []).append((now - start, rss_mb(p.pid)))
            if schedule and now - start >= schedule[0][0] * duration:
                _, victim = schedule.pop(0)
                print(f"  {now - start:5.0f} s: SIGKILL {victim}", file=sys.stderr, flush=True)
                os.kill(procs[victim].pid, signal.SIGKILL)
                procs[victim].wait(10)
                faults.append({"service": victim, "at": now})
                time.sleep(3.0)
                procs[victim] = restarts[victim]()
                label[victim] = f"{victim} (restarted)"
            assert procs["edge"].poll() is None, (logs / "edge.log").read_text()[-2000:]
            time.sleep(5.0)
        procs["edge"].send_signal(signal.SIGINT)
        procs["edge"].wait(120)
    finally:
        stop_system(procs)
    edge_log = (logs / "edge.log").read_text()
    m = re.search(r"summary: (\d+) frames in, (\d+) results .*?, (\d+) dropped", edge_log)
    assert m, edge_log[-2000:]
    frames_in, answered, dropped = map(int, m.groups())
    from services.edge_agent.results import read_results

    lines = read_results(out)
    reasons = Counter(x["reason"] for x in lines if x["dropped"])
    done = sorted((x["done_at"], x["done_at"] - x["latency_s"]) for x in lines if not x["dropped"])
    for f in faults:
        after = [d for d, captured in done if captured >= f["at"]]
        f["recovery_s"] = (after[0] - f["at"]) if after else None
        f["at"] -= start
    latencies = [x["latency_s"] for x in lines if not x["dropped"]]
    return {
        "model": model, "duration_s": duration, "fps_offered": fps,
        "frames_in": frames_in, "answered": answered, "dropped": dropped,
        "lines": len(lines), "silently_lost": frames_in - answered - dropped,
        "ids_contiguous": sorted(x["frame_id"] for x in lines) == list(range(len(lines))),
        "drop_reasons": dict(reasons), "faults": faults,
        "latency_p50_s": statistics.median(latencies) if latencies else None,
        "rss": {n: [(round(t, 1), round(v, 1)) for t, v in s if v > 0] for n, s in rss.items()},
    }


def plot(result: dict[str, Any], path: Path) -> None:
    with figure(path, figsize=(7, 3.8)) as (_, ax):
        for name, series in sorted(result["rss"].items()):
            if series:
                ax.plot([t for t, _ in series], [v for _, v in series], label=name)
        for f in result["faults"]:
            ax.axvline(f["at"], color="grey", ls=":", lw=1)
            ax.text(f["at"], ax.get_ylim()[1] * 0.95, f" kill {f['service']}", fontsize=7)
        ax.set(xlabel="seconds", ylabel="RSS (MiB)", title="soak: memory per service")
        ax.legend(fontsize=7)


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "soak.md")
    ap.add_argument("--quick", action="store_true", help="90 s instead of --duration")
    ap.add_argument("--duration", type=float, default=600.0, metavar="S", help="default 600")
    ap.add_argument("--model", default="googlenet", help="default googlenet")
    ap.add_argument("--fps", type=float, default=30.0, help="frames offered per second (30)")
    args = ap.parse_args(argv)
    duration = 90.0 if args.quick else args.duration
    result = run(args.model, duration, args.fps, log_dir("soak"))
    png = save_raw(result, Path(args.out), plot)

    def growth(series: list[tuple[float, float]]) -> str:
        if len(series) < 2:
            return "n/a"
        first = series[min(2, len(series) - 1)][1]  # after start-up (model loaded, profiled)
        return f"{first:.0f} → {series[-1][1]:.0f} MiB ({series[-1][1] - first:+.0f})"

    rss_table = markdown_table(["service", "RSS after start-up → at the end"],
                               [[n, growth(s)] for n, s in sorted(result["rss"].items())])
    fault_table = markdown_table(
        ["fault", "at (s)", "recovery (s)"],
        [[f"SIGKILL {f['service']} (+ restart 3 s later)", f"{f['at']:.0f}",
          "—" if f["recovery_s"] is None else f"{f['recovery_s']:.2f}"] for f in result["faults"]])
    r = result
    text = (f"## Soak: {r['duration_s']:.0f} s of heavy load with kills\n\n"
            f"{r['model']}, 2 workers, edge offering {r['fps_offered']:g} fps, served "
            f"{r['answered'] / r['duration_s']:.1f} fps on average (faults included), CURVE on "
            f"every socket, loopback, one 2-core machine. Frames in **{r['frames_in']}**, "
            f"answered **{r['answered']}**, reported dropped **{r['dropped']}** "
            f"({', '.join(f'{k} {v}' for k, v in sorted(r['drop_reasons'].items())) or 'none'}), "
            f"**silently lost {r['silently_lost']}**; every frame id has a line: "
            f"{r['ids_contiguous']}. Recovery = from the kill to the first result of a frame "
            f"captured after it. A restarted service's memory is its own series.\n\n"
            f"{fault_table}\n\n{rss_table}\n\n![soak]({png})\n")
    write_report(text, args.out)
    return 0 if r["silently_lost"] == 0 and r["ids_contiguous"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
