"""Many edges against the real broker: requests per second, per-edge latency, fairness, CPU.

    python -m bench.edges_load [--quick] [--edges 1,10,50,100] [--seconds 8] [--size 16384]

The real broker (a service process, CURVE: each simulated edge has a key of its own, so the
broker sees N edges) and two echo workers (bench.transport's: they decode the tensors and
answer at once, no model runs), and N simulated edges in this process, each keeping `--window`
requests of `--size` bytes in flight for `--seconds`. Reported: requests/s through the broker,
each edge's p50 / p95 round trip (the median and the worst edge's), Jain's fairness index over
the edges' answered requests, and the broker's CPU time per request (every thread, ZeroMQ's
I/O thread included). On this 2-core machine the edges, the broker and the workers share the
cores: the rate is the machine's, the CPU per request the broker's.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop

from bench.common import figure, markdown_table, parser, save_raw, write_report
from bench.transport import FINGERPRINT, _cpu_seconds, _worker


async def _edges(frontend: str, keys_dir: str, names: list[str], size: int, window: int,
                 seconds: float) -> dict[str, list[float]]:
    """Each edge: `window` requests in flight until `seconds` pass; its round trips."""
    import torch
    import zmq

    from common.runtime.security import Keys
    from common.runtime.tensorwire import to_frames
    from common.runtime.transport import Channel
    from common.runtime.wire import Request, Result

    metas, frames = to_frames(["x"], [torch.randn(size // 4)])
    rtts: dict[str, list[float]] = {n: [] for n in names}
    stop_at = time.perf_counter() + seconds

    async def edge(name: str) -> None:
        ch = Channel.open(zmq.DEALER, frontend, bind=False,
                          keys=Keys.load(keys_dir, "edge", name), server="broker")
        sent: dict[int, float] = {}
        counter = 0

        async def send() -> None:
            nonlocal counter
            counter += 1
            sent[counter] = time.perf_counter()
            await ch.send(Request(counter, counter, 1, FINGERPRINT, metas, time.time(), 30.0),
                          frames)

        for _ in range(window):
            await send()
        while sent:
            env = await asyncio.wait_for(ch.recv(), 60)
            if isinstance(env.msg, Result) and env.msg.request_id in sent:
                rtts[name].append(time.perf_counter() - sent.pop(env.msg.request_id))
                if time.perf_counter() < stop_at:
                    await send()
        ch.close()

    await asyncio.gather(*(edge(n) for n in names))
    return rtts


def run(n: int, size: int, window: int, seconds: float) -> dict[str, Any]:
    from common.runtime.security import add_key
    from launch.up import Ports, free_base, security_env, start_service, stop_system, wait_log

    log_dir = Path(tempfile.mkdtemp(prefix="dads-edges-load-"))
    env = security_env(log_dir)
    keys_dir = env["DADS_KEYS"]
    names = [f"edge-sim{i}" for i in range(n)]
    for name in names:  # before the broker starts: it admits the keys it finds
        add_key(keys_dir, "edge", name.removeprefix("edge-"))
    ports = Ports(free_base(4), free_base(2))
    procs = {"broker": start_service(
        "broker", ["--frontend", ports.frontend, "--backend", ports.backend, "--planner", "",
                   "--metrics-port", str(ports.metrics_base)], log_dir / "broker.log", env=env)}
    spawn = mp.get_context("spawn")
    workers = [spawn.Process(target=_worker, args=(ports.backend, f"w{i}", keys_dir), daemon=True)
               for i in range(2)]
    try:
        wait_log(log_dir / "broker.log", "frontend", procs["broker"], 60)
        for w in workers:
            w.start()
        uvloop.run(_edges(ports.frontend, keys_dir, names[:1], size, 1, 0.5))  # warm
        pid = procs["broker"].pid
        cpu0, t0 = _cpu_seconds(pid), time.perf_counter()
        rtts = uvloop.run(_edges(ports.frontend, keys_dir, names, size, window, seconds))
        took = time.perf_counter() - t0
        cpu = _cpu_seconds(pid) - cpu0
    finally:
        for w in workers:
            w.terminate()
            w.join(5)
        stop_system(procs)
    counts = [len(v) for v in rtts.values()]
    total = sum(counts)
    p50 = [statistics.median(v) for v in rtts.values() if v]
    p95 = [sorted(v)[int(0.95 * (len(v) - 1))] for v in rtts.values() if v]
    return {"edges": n, "requests": total, "seconds": took, "rate": total / took,
            "jain": total**2 / (n * sum(c * c for c in counts)) if total else 0.0,
            "p50_median_s": statistics.median(p50), "p50_worst_s": max(p50),
            "p95_median_s": statistics.median(p95), "p95_worst_s": max(p95),
            "cpu_per_request_s": cpu / max(total, 1), "starved": sum(c == 0 for c in counts)}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    with figure(path, 1, 2, figsize=(10, 4)) as (_, (a, b)):
        n = [r["edges"] for r in rows]
        a.plot(n, [r["rate"] for r in rows], "o-")
        a.set(xscale="log", xlabel="edges", ylabel="requests/s", title="through the broker")
        b.plot(n, [r["p95_worst_s"] * 1e3 for r in rows], "o-", label="p95, worst edge")
        b.plot(n, [r["p50_median_s"] * 1e3 for r in rows], "s--", label="p50, median edge")
        b.set(xscale="log", xlabel="edges", ylabel="round trip (ms)", title="per edge")
        b.legend()


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "edges_load.md")
    ap.add_argument("--quick", action="store_true", help="1 and 10 edges, 2 s each")
    ap.add_argument("--edges", default="1,10,50,100", help="edge counts (1,10,50,100)")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per count (8)")
    ap.add_argument("--size", type=int, default=16 << 10, help="request bytes (16384)")
    ap.add_argument("--window", type=int, default=2, help="requests in flight per edge (2)")
    args = ap.parse_args(argv)
    ns = [1, 10] if args.quick else [int(x) for x in args.edges.split(",")]
    rows = []
    for n in ns:
        rows.append(run(n, args.size, args.window, 2.0 if args.quick else args.seconds))
        r = rows[-1]
        print(f"  {n} edges: {r['rate']:.0f} req/s, Jain {r['jain']:.3f}, broker "
              f"{r['cpu_per_request_s'] * 1e6:.0f} us/request", file=sys.stderr, flush=True)
    out = Path(args.out)
    png = save_raw(rows, out, plot)
    table = markdown_table(
        ["edges", "requests/s", "Jain", "p50 ms (median edge / worst)",
         "p95 ms (median edge / worst)", "edges starved", "broker CPU µs/request"],
        [[r["edges"], f"{r['rate']:.0f}", f"{r['jain']:.3f}",
          f"{r['p50_median_s'] * 1e3:.2f} / {r['p50_worst_s'] * 1e3:.2f}",
          f"{r['p95_median_s'] * 1e3:.2f} / {r['p95_worst_s'] * 1e3:.2f}", r["starved"],
          f"{r['cpu_per_request_s'] * 1e6:.0f}"] for r in rows])
    text = f"""## Many edges against the real broker

The real broker (CURVE, a key per simulated edge), two echo workers, N edges in one process,
each with {args.window} requests of {args.size // 1024} KiB in flight for
{2.0 if args.quick else args.seconds:g} s. All on this 2-core machine: the rate is the
machine's (edges, broker and workers share the cores); the broker's CPU per request is its own.

{table}

![edges against the broker]({png})
"""
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
