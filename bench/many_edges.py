"""Many edges, one pool: plans chosen together against each edge planning alone.

    python -m bench.many_edges [--quick] [--edges 1,10,50,100] [--cloud-speedup 10]

(1) Planned: N edges (a zoo model each, a DADS uplink each, a camera rate each, seeded), and a
pool sized so that the edges' own DSL plans would ask 1.5x what it has. Independent DSL (each
edge alone) against the shared plan (`common.planning.pool`): the pool's load, the worst and
the median edge's predicted latency, and the time to plan. (2) The heuristic's gap: on small
random DAGs, the shared plan over the price sweep's options against the exact optimum over
every cut. (3) Measured: three edge agents at a camera rate that together overload one
worker, the planner choosing their plans together against `--independent`: answers per
second, dropped frames, each edge's p50 / p95 latency and Jain's fairness index.
"""

from __future__ import annotations

import math
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import networkx as nx

from bench.common import figure, log_dir, markdown_table, parser, save_raw, write_report, zoo_costs
from services.edge_agent.results import read_results

MODELS = ["googlenet", "resnet18", "mobilenet_v2", "alexnet"]
RATES = [1.0, 2.0, 5.0, 10.0, 15.0]


def fleet(n: int, graphs: dict[str, nx.DiGraph], seed: int) -> list[Any]:
    from common.planning import pool
    from common.planning.units import PRESETS, parse_bandwidth

    rng = random.Random(seed)
    out = []
    for i in range(n):  # a camera set to a rate its own device and link can carry (80%)
        g, bw = graphs[rng.choice(MODELS)], parse_bandwidth(rng.choice([*PRESETS, "50mbit"]))
        fastest = min(o.own_s for o in pool.options(g, bw))
        out.append(pool.EdgeLoad(f"edge{i}", g, bw, min(rng.choice(RATES), 0.8 / fastest)))
    return out


def slowed(g: nx.DiGraph, factor: float) -> nx.DiGraph:
    """The cost graph with the edge's times `factor` times longer (a camera's SoC)."""
    g = g.copy()
    for _, d in g.nodes(data=True):
        d["edge_time_s"] *= factor
    return g


def planned(ns: list[int], graphs: dict[str, nx.DiGraph]) -> list[dict[str, Any]]:
    from common.planning import pool

    out = []
    for n in ns:
        loads = fleet(n, graphs, seed=n)
        alone = pool.independent(loads)
        demand = sum(alone[x.name].demand(x.fps) for x in loads)
        t0 = time.perf_counter()
        opts = {x.name: pool.options(x.g, x.bandwidth_bps) for x in loads}
        least = sum(min(o.demand(x.fps) for o in opts[x.name] if o.keeps_up(x.fps))
                    for x in loads)
        # the pool: halfway between the least the edges can ask of it and what their own
        # plans ask, in workers' time (a fraction is a share of one worker)
        k = (least + demand) / 2 / pool.HEADROOM
        joint = pool.share(loads, opts, k)
        took = time.perf_counter() - t0
        lat_alone = sorted(o.latency_s for o in alone.values())
        lat_joint = sorted(o.latency_s for o in joint.choice.values())
        out.append({"edges": n, "workers": round(k, 3), "alone_load": demand / k,
                    "joint_load": joint.demand / k, "alone_worst_s": lat_alone[-1],
                    "alone_median_s": statistics.median(lat_alone),
                    "joint_worst_s": joint.worst_latency_s,
                    "joint_median_s": statistics.median(lat_joint), "overloaded": joint.overloaded,
                    "least_load": least / k,
                    "moved": sum(joint.choice[x.name].edge_nodes != alone[x.name].edge_nodes
                                 for x in loads), "plan_s": took,
                    "hopeless": sum(not any(o.keeps_up(x.fps) for o in opts[x.name])
                                    for x in loads)})
        print(f"  planned {n} edges: load {demand / k:.2f} -> {joint.demand / k:.2f} "
              f"(least {least / k:.2f}), "
              f"{took * 1e3:.0f} ms", file=sys.stderr, flush=True)
    return out


def random_dag(rng: random.Random, n: int) -> nx.DiGraph:
    g = nx.DiGraph(model="random", fingerprint="f" * 32, inputs=["in0"])
    names = ["in0", *(f"v{i}" for i in range(n - 1))]
    for v in names:
        g.add_node(v, op="op", edge_time_s=rng.uniform(0, 0.02), cloud_time_s=rng.uniform(0, 0.004),
                   output_bytes=rng.randint(1_000, 400_000))
    for j in range(1, n):
        preds = [i for i in range(j) if rng.random() < 0.3] or [rng.randrange(j)]
        for i in preds:
            g.add_edge(names[i], names[j])
    return g


def gap(cases: int) -> dict[str, Any]:
    from common.planning import pool

    rng = random.Random(7)
    ratios = []
    for _ in range(cases):
        loads = [pool.EdgeLoad(f"e{i}", random_dag(rng, rng.randint(4, 9)),
                               rng.choice([1e6, 5e6, 2e7, 1e8]), rng.choice([5.0, 10.0, 20.0]))
                 for i in range(rng.randint(2, 4))]
        k = rng.randint(1, 2)
        exact = pool.share(loads, {x.name: pool.all_options(x.g, x.bandwidth_bps) for x in loads}, k)
        heur = pool.share(loads, {x.name: pool.options(x.g, x.bandwidth_bps) for x in loads}, k)
        if exact.overloaded:
            continue
        ratios.append(heur.worst_latency_s / exact.worst_latency_s if not heur.overloaded
                      else math.inf)
    ratios.sort()
    finite = [r for r in ratios if math.isfinite(r)]
    return {"cases": len(ratios), "exact": sum(r <= 1 + 1e-9 for r in ratios),
            "median": statistics.median(finite) if finite else None,
            "worst": finite[-1] if finite else None,
            "infeasible": sum(not math.isfinite(r) for r in ratios)}


def live(frames: int, fps: float) -> list[dict[str, Any]]:
    """Three edges at `fps` on one worker: joint plans against --independent."""
    import contextlib

    from bench.live import Live

    out = []
    logs = log_dir("many_edges")
    names = ("cam-a", "cam-b", "cam-c")
    for mode, extra in (("shared", []), ("independent", ["--independent"])):
        with Live("googlenet", logs / mode, 1.0, use_testbed=False,
                  planner_args=["--tick", "0.2", *extra]) as system, \
                contextlib.ExitStack() as stack:
            runs = {name: stack.enter_context(system.edge(
                ["--name", name, "--fps", str(fps), "--frames", str(frames), "--queue", "8",
                 "--deadline", "10", "--metrics-port", "0"], uplink="1gbit")) for name in names}
            t0 = time.monotonic()
            for run in runs.values():
                run.proc.wait(900)
            took = time.monotonic() - t0
            per = {}
            for name, run in runs.items():
                lines = read_results(run.out)
                ok = [x for x in lines if not x["dropped"]]
                lat = sorted(x["latency_s"] for x in ok)
                per[name] = {"answered": len(ok), "dropped": len(lines) - len(ok),
                             "p50_s": statistics.median(lat) if lat else None,
                             "p95_s": lat[int(0.95 * (len(lat) - 1))] if lat else None,
                             "algorithms": sorted({x["algorithm"] for x in ok})}
        answered = [v["answered"] for v in per.values()]
        jain = (sum(answered) ** 2 / (len(answered) * sum(a * a for a in answered))
                if any(answered) else 0.0)
        out.append({"mode": mode, "fps": fps, "frames": frames, "seconds": took,
                    "answers_per_s": sum(answered) / took, "jain": jain, "edges": per})
        print(f"  live {mode}: {sum(answered)} answered in {took:.0f} s, Jain {jain:.3f}",
              file=sys.stderr, flush=True)
    return out


def plot(records: dict[str, Any], path: Path) -> None:
    rows = records["planned"]
    with figure(path, 1, 2, figsize=(10, 4)) as (_, (a, b)):
        n = [r["edges"] for r in rows]
        a.plot(n, [r["alone_load"] for r in rows], "o-", label="each edge alone (DSL)")
        a.plot(n, [r["joint_load"] for r in rows], "s-", label="chosen together")
        a.axhline(0.9, color="grey", ls=":", label="what a shared plan may use (0.9)")
        a.set(xscale="log", xlabel="edges", ylabel="pool load (demand / workers)",
              title="the pool's load")
        a.legend()
        b.plot(n, [r["alone_worst_s"] * 1e3 for r in rows], "o-", label="alone: worst (no queue)")
        b.plot(n, [r["joint_worst_s"] * 1e3 for r in rows], "s-", label="together: worst")
        b.plot(n, [r["joint_median_s"] * 1e3 for r in rows], "s--", label="together: median")
        b.set(xscale="log", xlabel="edges", ylabel="predicted latency (ms)",
              title="per-frame latency (no queueing)")
        b.legend()


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "many_edges.md")
    ap.add_argument("--quick", action="store_true", help="10 edges at most, a short live run")
    ap.add_argument("--edges", default="1,10,50,100", help="fleet sizes (1,10,50,100)")
    ap.add_argument("--cloud-speedup", type=float, default=10.0, metavar="F",
                    help="a worker: F times a core of this CPU; the edges: a core (default 10)")
    ap.add_argument("--edge-slowdown", type=float, default=10.0, metavar="F",
                    help="the edges: a core of this CPU F times slower (default 10)")
    ap.add_argument("--gap-cases", type=int, default=200, help="random fleets for the gap (200)")
    ap.add_argument("--frames", type=int, default=60, help="frames per edge, live (60)")
    ap.add_argument("--fps", type=float, default=12.0, help="each live camera's rate (12)")
    args = ap.parse_args(argv)
    ns = [1, 10] if args.quick else [int(x) for x in args.edges.split(",")]
    graphs = {m: slowed(zoo_costs(m, args.cloud_speedup)[0], args.edge_slowdown) for m in MODELS}
    plan_rows = planned(ns, graphs)
    g = gap(20 if args.quick else args.gap_cases)
    meas = live(10 if args.quick else args.frames, args.fps)
    out = Path(args.out)
    png = save_raw({"planned": plan_rows, "gap": g, "live": meas}, out, plot)
    text = f"""## Many edges, one pool

### Planned

Each edge: a zoo model ({", ".join(MODELS)}), a DADS uplink or 50 Mbit/s, a camera at
{", ".join(f"{r:g}" for r in RATES)} fps, or less where its own device and link could not keep up
with it in any plan (seeded); the edge is a core of this CPU
{args.edge_slowdown:g}x slower, a worker
{args.cloud_speedup:g}x one; the pool sized halfway between the least the edges can ask of it
(keeping up with their cameras) and what their own DSL plans ask, over 0.9 (in workers' time:
a fraction is a share of one worker). Alone, the edges ask more than the 90% it may run at; together they fit.
Latencies predicted per frame, without queueing: the alone plans' queue grows without bound.
An edge no plan keeps up with (its camera too fast for its own device and link, pool or not)
gets its fastest plan, and its worst latency is the same either way; the shared plan's worst
is over all edges.

{markdown_table(["edges", "workers", "pool load alone", "pool load together", "worst ms alone",
                 "worst ms together", "median ms alone", "median ms together", "edges moved",
                 "edges no plan keeps up with", "plan time ms"],
                [[r["edges"], f"{r['workers']:.2f}", f"{r['alone_load']:.2f}", f"{r['joint_load']:.2f}",
                  f"{r['alone_worst_s'] * 1e3:.1f}", f"{r['joint_worst_s'] * 1e3:.1f}",
                  f"{r['alone_median_s'] * 1e3:.1f}", f"{r['joint_median_s'] * 1e3:.1f}",
                  r["moved"], r["hopeless"], f"{r['plan_s'] * 1e3:.0f}"] for r in plan_rows])}

### The heuristic's gap

{g["cases"]} random fleets (2-4 edges, DAGs of 4-9 nodes, 1-2 workers): the shared plan over the
price sweep's options equals the exact optimum over every cut in {g["exact"]} of them; the
worst edge's latency is {g["median"] or 0:.3f}x the optimum at the median, {g["worst"] or 0:.3f}x
at worst ({g["infeasible"]} found no plan within capacity where one exists).

### Measured

Three edge agents (googlenet, emulated 1 Gbit/s uplinks, a core of this CPU each) at
{args.fps:g} fps, one worker: together they ask more of it than it has. On this 2-core
machine the edges and the worker share the same cores, so moving work from the pool to the
edges adds no capacity: what this shows is the running system choosing shared plans, every
answer exact, and the edges served alike (Jain's index of answers), not a speedup.

{markdown_table(["planner", "answers/s", "Jain", *[f"{e} p50 / p95 ms (answered, dropped)"
                                                     for e in ("cam-a", "cam-b", "cam-c")]],
                [[r["mode"], f"{r['answers_per_s']:.1f}", f"{r['jain']:.3f}",
                  *[f"{(v['p50_s'] or 0) * 1e3:.0f} / {(v['p95_s'] or 0) * 1e3:.0f} "
                    f"({v['answered']}, {v['dropped']})" for v in r["edges"].values()]]
                 for r in meas])}

![many edges]({png})
"""
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
