"""Planning: `dads plan` (DSL, DSH, baselines, exits, tiers), `bwmap`, `costgraph`, `explore`."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from cli.args import (
    DEFAULT_CLOUD_SPEEDUP,
    DEFAULT_MODEL,
    add_costs_args,
    add_model_args,
    bandwidth,
    byte_count,
    check_images,
    codec_policy,
    costs,
    input_bytes,
    pairs,
    policy,
    resolve_input_bytes,
    served,
    with_codecs,
)
from common.errors import DadsError


def cmd_costgraph(args: argparse.Namespace) -> int:
    from common.planning import costgraph
    from common.planning.profile import Profile

    graph = served(args)
    g = costgraph.build(graph.dag, Profile.load(args.edge), Profile.load(args.cloud),
                        resolve_input_bytes(args.input_bytes, graph))
    if args.out:
        print(f"cost graph of {graph.name} ({len(g)} nodes) written to {costgraph.save(g, args.out)}")
    else:
        json.dump(costgraph.to_json(g), sys.stdout)
        print()
    return 0


def _plan_report(g, plan, baselines: dict) -> str:  # -> the readable table of `dads plan`
    from common.planning.units import format_bandwidth, format_bytes

    p = plan.predicted
    n = g.number_of_nodes()
    lines = [
        f"{g.graph.get('model', '?')}: {plan.algorithm.upper()} plan at "
        f"{format_bandwidth(plan.bandwidth_bps)}, {plan.workers} cloud worker(s)",
        f"  {'stage':<10}{'time':>12}   detail",
        f"  {'edge':<10}{p.edge_s * 1e3:>9.2f} ms   {len(plan.edge_nodes)} of {n} nodes",
        f"  {'transfer':<10}{p.transfer_s * 1e3:>9.2f} ms   {len(plan.transfer)} tensor(s), "
        f"{format_bytes(plan.transfer_bytes)}",
        f"  {'cloud':<10}{p.cloud_s * 1e3:>9.2f} ms   {n - len(plan.edge_nodes)} nodes",
        f"  {'latency':<10}{p.latency_s * 1e3:>9.2f} ms   throughput {p.throughput_fps:.3g} fps "
        f"(pipelined)",
    ]
    for v in plan.transfer[:8]:
        codec = plan.codecs.get(v, "raw")
        sent = next((c["bytes"] for c in g.nodes[v].get("codecs", []) if c["name"] == codec),
                    g.nodes[v]["output_bytes"])
        how = "" if codec == "raw" else f" as {codec}: {format_bytes(sent)}"
        lines.append(f"    crosses: {v} ({format_bytes(g.nodes[v]['output_bytes'])}{how})")
    if len(plan.transfer) > 8:
        lines.append(f"    ... and {len(plan.transfer) - 8} more")
    for name, other in baselines.items():
        q = other.predicted
        lines.append(f"  vs {name:<13} latency {q.latency_s * 1e3:9.2f} ms "
                     f"({q.latency_s / p.latency_s:5.2f}x),  throughput {q.throughput_fps:8.3g} fps "
                     f"({p.throughput_fps / q.throughput_fps if q.throughput_fps else float('inf'):5.2f}x)")
    if plan.extra:
        lines.append("  " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                      for k, v in plan.extra.items()))
    return "\n".join(lines)


def cmd_plan(args: argparse.Namespace) -> int:
    from common.planning import dag, partition
    from common.planning.mincut import CutSolver
    from common.planning.regime import decide, decide_exit
    from common.planning.units import parse_duration

    if args.tiers:
        return cmd_tiers(args)
    if args.bandwidth is None:
        raise DadsError("--bandwidth is required (or --tiers with --links)")
    g = costs(args)
    codecs = codec_policy(args, g)
    reason = ""
    if args.latency_goal and not dag.exits(g):
        raise DadsError("--latency-goal needs a model with early exits (e.g. digits_exits "
                        "--weights from `dads train-exits`)")
    if dag.exits(g) and args.algorithm == "auto":
        try:
            goal = parse_duration(args.latency_goal) if args.latency_goal else 0.0
        except ValueError as exc:
            raise DadsError(f"--latency-goal: {exc}") from None
        decision = decide_exit(g, args.bandwidth, args.fps or 0.0, goal, args.workers, codecs)
        plan, reason = decision.plan, decision.reason
    elif args.algorithm == "auto":
        if args.fps is None:
            plan = partition.dsl(g, args.bandwidth, args.workers, codecs=codecs)
        else:
            decision, _ = decide(g, args.bandwidth, args.fps, args.workers,
                                 solver=CutSolver(g, codecs))
            plan, reason = decision.plan, decision.reason
    else:
        plan = partition.solve(g, args.algorithm, args.bandwidth, args.workers, codecs)
    plan = plan.stamped(plan.plan_id, time.time())
    if args.json:
        json.dump(plan.to_json(), sys.stdout, indent=1)
        print()
    else:
        scope = dag.needed_by(g, plan.exit) if plan.exit else g  # an exit runs what it needs
        baselines = {name: partition.solve(scope, name, args.bandwidth, args.workers, codecs)
                     for name in ("edge_only", "cloud_only", "neurosurgeon")
                     if name != plan.algorithm}
        if codecs:  # what the codecs buy: the same planner on raw tensors
            baselines["dsl, raw"] = partition.dsl(scope, args.bandwidth, args.workers,
                                                  codecs="none")
        print(_plan_report(scope, plan, baselines))
        if plan.exit:
            for node, acc in dag.exits(g):
                best = partition.dsl(dag.needed_by(g, node), args.bandwidth, args.workers,
                                     codecs=codecs).predicted.latency_s
                mark = "<- chosen" if node == plan.exit else ""
                print(f"  exit {node:<22} accuracy {acc:6.1%}  best latency {best * 1e3:8.2f} ms "
                      f"{mark}")
        if reason:
            print(f"  load: {reason}")
    if args.plot:
        from common.model.plots import plot_cut

        out = plot_cut(g, plan.edge_nodes, f"{g.graph.get('model', '')}: {plan.algorithm} cut",
                       Path(args.plot))
        print(f"figure written to {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_tiers(args: argparse.Namespace) -> int:
    """Scission: the best placements over ordered tiers, ranked, exactly."""
    from common.model.features import node_features
    from common.model.profiler import cached_profile
    from common.planning import tiers as tiering
    from common.planning.profile import Profile, scaled
    from common.planning.units import format_bandwidth, format_bytes, parse_bandwidth

    if args.graph or not args.model:
        raise DadsError("--tiers plans a model as the services run it: give MODEL (a cost "
                        "graph, --graph, holds the times of two tiers only)")
    check_images(args.images)
    policy(args)
    names = [t.strip() for t in args.tiers.split(",") if t.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise DadsError("--tiers: two or more distinct names in data-flow order, e.g. "
                        "device,edge,cloud")
    try:
        links = [parse_bandwidth(x) for x in (args.links or "").split(",") if x]
    except ValueError as exc:
        raise DadsError(f"--links: {exc}") from None
    if len(links) != len(names) - 1:
        raise DadsError(f"--links: {len(names) - 1} rates for {len(names)} tiers, e.g. 3g,wifi")
    files, speedups = pairs(args.tier_profile, "--tier-profile"), pairs(args.tier_speedup,
                                                                           "--tier-speedup")
    unknown = (set(files) | set(speedups) | set(args.exclude or [])) - set(names)
    if unknown:
        raise DadsError(f"no tier named {', '.join(sorted(unknown))} in --tiers {args.tiers}")
    if names[0] in (args.exclude or []):
        raise DadsError(f"--exclude {names[0]}: the first tier reads the camera's frame; "
                        "exclude a later tier, or list the tiers from where the frames are")
    loaded = {name: Profile.load(path) for name, path in files.items()}  # said before profiling
    plain = [n for n in names if n not in files and n not in speedups]
    if plain and not args.json:
        print(f"note: {', '.join(plain)} {'has' if len(plain) == 1 else 'have'} neither "
              "--tier-profile nor --tier-speedup: modelled as this machine", file=sys.stderr)
    graph = served(args)  # camera frames in: the first tier holds the frame (as benchmarked)
    here = cached_profile(graph, "cpu", progress=not args.json)
    times = []
    for name in names:
        prof = loaded[name] if name in loaded else scaled(here, float(speedups.get(name, 1.0)))
        prof.check(graph.fingerprint)
        times.append(prof.node_times_s)
    g = graph.dag.copy()
    for v, (_, feats) in node_features(graph).items():
        g.nodes[v]["param_bytes"] = int(feats["param_bytes"])
    codecs = _tier_codecs(args, graph, g, here, [float(speedups.get(n, 1.0)) for n in names[:2]])
    index = {n: i for i, n in enumerate(names)}

    def tier(name: str) -> int:
        if name not in index:
            raise DadsError(f"no tier named {name!r} in --tiers {args.tiers}")
        return index[name]

    pins = {v: tier(t) for v, t in pairs(args.pin, "--pin").items()}
    for v in pins:
        if v not in g:
            raise DadsError(f"--pin: the model has no node {v!r} (its input is {graph.inputs[0]!r})")
    excluded = frozenset(tier(t) for t in args.exclude or [])
    limits = tiering.Limits(
        memory_bytes={tier(t): byte_count(b) for t, b in pairs(args.memory, "--memory").items()},
        link_bytes={int(i): byte_count(b) for i, b in pairs(args.link_budget,
                                                              "--link-budget").items()})
    problem = tiering.TierProblem(g, tuple(names), tuple(times), tuple(links), pins, excluded,
                                  codecs=codecs)
    if args.throughput:
        return _tiers_throughput(tiering, problem, limits, max(1, args.workers), args.json,
                                 graph.name)
    tiering.solve(problem)  # pins or exclusions that leave no placement: the solver says why
    found: list = []
    ranked = tiering.iter_ranked(problem)  # latency order; limits may make it a long search
    if limits.memory_bytes or limits.link_bytes:
        from tqdm import tqdm

        ranked = tqdm(ranked, desc="placements tried against the limits", unit="placement",
                      disable=args.json, leave=False)
    for tried, placement in enumerate(ranked, start=1):
        if not limits.broken(problem, placement):
            found.append(placement)
            if len(found) >= args.top:
                break
        if tried >= args.max_candidates:
            break
    if not found:
        raise DadsError("no placement fits the limits (--memory, --link-budget)")
    free = tiering.solve(tiering.TierProblem(g, tuple(names), tuple(times), tuple(links),
                                             codecs=codecs))
    binding = _binding(tiering, problem, limits, found[0], free)
    if args.json:
        json.dump({"tiers": names, "links_bps": links, "binding": binding, "placements": [
            {"rank": i + 1, "latency_s": p.latency_s, "compute_s": list(p.compute_s),
             "link_bytes": list(p.link_bytes), "codecs": p.codecs,
             "tiers": {n: p.nodes_on(i) for i, n in enumerate(names)}}
            for i, p in enumerate(found)]}, sys.stdout, indent=1)
        print()
        return 0
    print(f"{graph.name}: the {len(found)} best placement(s) over {' -> '.join(names)} "
          f"(links {', '.join(format_bandwidth(b) for b in links)}), exact")
    head = (f"  {'rank':>4} {'latency':>10}  " + "  ".join(f"{n:>10}" for n in names) + "  "
            + "  ".join(f"{'->'.join(names[i:i + 2]):>14}" for i in range(len(links))))
    print(head)
    for i, p in enumerate(found, start=1):
        print(f"  {i:>4} {p.latency_s * 1e3:>7.2f} ms  "
              + "  ".join(f"{len(p.nodes_on(t)):>4} nodes" for t in range(len(names))) + "  "
              + "  ".join(f"{format_bytes(b):>14}" for b in p.link_bytes))
    print("  (per tier: nodes placed there; per link: bytes a frame"
          + (f"; the first link's tensors in their best codec of: {', '.join(sorted(codecs))})"
             if codecs else ")"))
    if found[0].codecs:
        used = sorted(set(found[0].codecs.values()))
        print(f"  the best sends {len(found[0].codecs)} tensor(s) over {names[0]}->{names[1]} "
              f"encoded: {', '.join(used)}")
    for i, name in enumerate(names):
        print(f"  best on {name}: {_share(found[0], i)}")
    print("  binding: " + ("; ".join(binding) if binding else "nothing (the unconstrained optimum)"))
    return 0


def _tier_codecs(args: argparse.Namespace, graph, g, here, speedups: list[float]
                 ) -> frozenset[str]:
    """With --images: each node's codecs on the first link (sizes measured on those images,
    encode time on the first tier and decode on the second: this machine's, scaled by
    --tier-speedup), written into `g`; the ones the policy allows (--codecs, --fidelity)."""
    if not args.images:
        return frozenset()
    from common.planning import costgraph
    from common.planning.profile import scaled

    measured = with_codecs(args, graph, here)
    costs = costgraph.build(graph.dag, scaled(measured, speedups[0]),
                            scaled(measured, speedups[1]),
                            resolve_input_bytes(args.input_bytes, graph))
    for v in g:
        if costs.nodes[v].get("codecs"):
            g.nodes[v]["codecs"] = costs.nodes[v]["codecs"]
    return codec_policy(args, g)


def _tiers_throughput(tiering, problem, limits, workers: int, as_json: bool, name: str) -> int:
    """--throughput: DSH over tiers; limits are checked, not optimised for."""
    from common.planning.units import format_bytes

    best = tiering.max_throughput(problem, workers)
    period = tiering.bottleneck_s(problem, best, workers)
    broken = limits.broken(problem, best)
    if broken:
        raise DadsError("the highest-throughput placement breaks the limits ("
                        + "; ".join(broken) + "); --throughput does not search within them")
    names = problem.tiers
    stages = [*(f"{n} {c * 1e3:.2f} ms" for n, c in zip(names, best.compute_s, strict=True)),
              *(f"{names[i]}->{names[i + 1]} {b * 8e3 / bw:.2f} ms ({format_bytes(b)})"
                for i, (b, bw) in enumerate(zip(best.link_bytes, problem.bandwidths_bps,
                                                strict=True)))]
    if as_json:
        json.dump({"tiers": list(names), "workers": workers, "bottleneck_s": period,
                   "throughput_fps": 1.0 / period if period else None,
                   "latency_s": best.latency_s, "compute_s": list(best.compute_s),
                   "link_bytes": list(best.link_bytes),
                   "placement": {n: best.nodes_on(i) for i, n in enumerate(names)}},
                  sys.stdout, indent=1)
        print()
        return 0
    print(f"{name}: the highest-throughput placement over {' -> '.join(names)} "
          f"({workers} worker(s) on {names[-1]}): {1.0 / period if period else float('inf'):.2f} "
          f"frames/s (bottleneck {period * 1e3:.2f} ms), latency {best.latency_s * 1e3:.2f} ms")
    print("  stages: " + ", ".join(stages))
    for i, n in enumerate(names):
        print(f"  on {n}: {_share(best, i)}")
    return 0


def _share(placement, tier: int) -> str:  # -> a tier's share of a placement, in words
    return f"{len(placement.nodes_on(tier))} nodes, {placement.compute_s[tier] * 1e3:.2f} ms"


def _binding(tiering, problem, limits, best, free) -> list[str]:  # which constraints cost time
    if free.latency_s >= best.latency_s * (1 - 1e-9):
        return []
    out = [f"pin {v} on {problem.tiers[t]}" for v, t in problem.pins.items()
           if free.tier_of[v] != t]
    out += [f"{problem.tiers[t]} excluded" for t in problem.excluded
            if any(x == t for x in free.tier_of.values())]
    out += limits.broken(problem, free)
    return out or ["the constraints together"]


def cmd_bwmap(args: argparse.Namespace) -> int:
    from common.planning import partition
    from common.planning.bwmap import bandwidth_map
    from common.planning.mincut import CutSolver
    from common.planning.units import PRESETS, format_bandwidth, format_bytes

    g = costs(args)
    codecs = codec_policy(args, g)
    t0 = time.perf_counter()
    bmap = bandwidth_map(g, args.min, args.max, solver=CutSolver(g, codecs))
    took = time.perf_counter() - t0
    if args.json:
        json.dump(bmap.to_json(), sys.stdout, indent=1)
        print()
    else:
        print(f"{g.graph.get('model', '?')}: {len(bmap.segments)} optimal cuts between "
              f"{format_bandwidth(args.min)} and {format_bandwidth(args.max)} "
              f"({bmap.solves} min-cut solves, {took * 1e3:.1f} ms)")
        print(f"  {'from':>14} {'to':>14} {'edge nodes':>10} {'crossing':>9} {'sent':>10} "
              f"{'compute':>10}{'  codecs' if codecs else ''}")
        for s in bmap.segments:
            used = ",".join(sorted({c for _, c in s.codecs if c != "raw"})) or "raw"
            print(f"  {format_bandwidth(s.min_bps):>14} {format_bandwidth(s.max_bps):>14} "
                  f"{len(s.edge_nodes):>10} {len(s.transfer):>9} {format_bytes(s.transfer_bytes):>10} "
                  f"{s.compute_s * 1e3:>7.2f} ms{f'  {used}' if codecs else ''}")
    if args.plot:
        from common.model.plots import plot_bandwidth_map

        cloud = partition.cloud_only(g, args.min, codecs=codecs)
        edge = partition.edge_only(g, args.min, codecs=codecs)
        out = plot_bandwidth_map(
            str(g.graph.get("model", "")),
            [(s.min_bps, s.max_bps, s.compute_s, s.transfer_bytes) for s in bmap.segments],
            edge.predicted.latency_s,
            (cloud.predicted.edge_s + cloud.predicted.cloud_s, cloud.transfer_bytes),
            Path(args.plot), PRESETS)
        print(f"figure written to {out}", file=sys.stderr if args.json else sys.stdout)
    return 0


def cmd_explore(args: argparse.Namespace) -> int:
    """Profile the default model here, then plan it for each DADS uplink (runtime: `dads up`)."""
    from common.planning import partition
    from common.planning.units import PRESETS, format_bandwidth

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    costs_parser = argparse.ArgumentParser(add_help=False)  # `dads plan`'s options, defaults
    add_costs_args(costs_parser)
    ns = costs_parser.parse_args([args.model, "--cloud-speedup", str(args.cloud_speedup)])
    print(f"== profiling {args.model} on this machine (cached after the first run)")
    g = costs(ns)
    print(f"== {args.model}: {len(g)} nodes; the raw input crosses as a uint8 frame; planning "
          "for the uplinks of DADS Table I")
    header = f"  {'uplink':<6}{'bandwidth':>12}{'edge-only':>12}{'cloud-only':>12}" \
             f"{'neurosurg.':>12}{'DSL':>10}{'vs edge':>9}{'vs cloud':>9}  cut"
    print(header)
    for name, bw in PRESETS.items():
        plans = {a: partition.solve(g, a, bw) for a in ("edge_only", "cloud_only", "neurosurgeon",
                                                       "dsl")}
        ms = {a: p.predicted.latency_s * 1e3 for a, p in plans.items()}
        d = plans["dsl"]
        print(f"  {name:<6}{format_bandwidth(bw):>12}{ms['edge_only']:>10.1f}ms"
              f"{ms['cloud_only']:>10.1f}ms{ms['neurosurgeon']:>10.1f}ms{ms['dsl']:>8.1f}ms"
              f"{ms['edge_only'] / ms['dsl']:>8.2f}x{ms['cloud_only'] / ms['dsl']:>8.2f}x"
              f"  {len(d.edge_nodes)} edge nodes, {len(d.transfer)} tensor(s) cross")
    print()
    return cmd_bwmap(argparse.Namespace(**{**vars(ns), "min": 1e4, "max": 1e10, "json": False,
                                           "plot": str(out / f"{args.model}-bwmap.png")}))


def register(sub: argparse._SubParsersAction, command: str | None) -> None:
    """This group's commands and their options."""
    p = sub.add_parser("costgraph", help="combine an edge and a cloud profile into a cost graph",
                       description="Write the planner's input (DESIGN §3 cost graph JSON).")
    add_model_args(p)
    p.add_argument("--edge", required=True, metavar="PROFILE", help="edge device profile JSON")
    p.add_argument("--cloud", required=True, metavar="PROFILE", help="cloud device profile JSON")
    p.add_argument("--input-bytes", type=input_bytes, metavar="N|frame",
                   help="bytes sent when the raw input crosses: a number, or 'frame' (uint8 RGB)")
    p.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    p.set_defaults(func=cmd_costgraph)

    from common.planning.partition import ALGORITHMS

    p = sub.add_parser("plan", help="compute a partition plan (DSL, DSH, baselines)",
                       description="Plan where to cut: print per-stage times, crossing tensors and "
                       "the speedup over edge-only and cloud-only; --json prints the DESIGN §3 plan.",
                       epilog="bandwidth: a rate (5.85mbit, 300kbit, 2gbit, 1e6bps) or a DADS "
                       "preset: cat1 (0.13 Mbit/s), 3g (1.1), 4g (5.85), wifi (18.88)")
    add_costs_args(p)
    p.add_argument("--bandwidth", type=bandwidth, metavar="RATE",
                   help="uplink bandwidth (e.g. 5.85mbit or 4g); required unless --tiers")
    p.add_argument("--algorithm", default="auto", choices=["auto", *ALGORITHMS],
                   help="auto (default): DSL, or DADS's light/heavy choice when --fps is given")
    p.add_argument("--workers", type=int, default=1, metavar="K", help="cloud workers (default 1)")
    p.add_argument("--fps", type=float, metavar="Q", help="frame arrival rate, for the load regime")
    p.add_argument("--latency-goal", metavar="DURATION",
                   help="an early-exit model: the most accurate exit whose best cut meets this "
                   "(e.g. 200ms); says so when none does")
    p.add_argument("--json", action="store_true", help="print the plan as DESIGN §3 JSON")
    p.add_argument("--plot", metavar="FILE", help="draw the DAG with the cut to FILE (.png)")
    t = p.add_argument_group("tiers (Scission): the best placements over ordered tiers, ranked")
    t.add_argument("--tiers", metavar="A,B,C", help="tier names in data-flow order, e.g. "
                   "device,edge,cloud (switches to ranked placements)")
    t.add_argument("--links", metavar="RATE,RATE", help="bandwidth of each link between tiers")
    t.add_argument("--tier-profile", action="append", metavar="TIER=P.json",
                   help="a tier's profile (`dads benchmark --tier`); repeatable")
    t.add_argument("--tier-speedup", action="append", metavar="TIER=F",
                   help="model a tier without a profile as F times faster than this machine")
    t.add_argument("--top", type=int, default=10, metavar="N", help="placements to list (10)")
    t.add_argument("--throughput", action="store_true",
                   help="the placement with the most frames per second (DSH over tiers: the "
                   "slowest tier or link, the last tier shared by --workers) instead of a ranking")
    t.add_argument("--pin", action="append", metavar="NODE=TIER",
                   help="keep a node on a tier, e.g. frame=device (privacy); repeatable")
    t.add_argument("--exclude", action="append", metavar="TIER", help="use no node on this tier")
    t.add_argument("--memory", action="append", metavar="TIER=BYTES",
                   help="a tier's memory for parameters and activations, e.g. device=64MB")
    t.add_argument("--link-budget", action="append", metavar="I=BYTES",
                   help="bytes a frame link I (0: the first) may carry")
    t.add_argument("--max-candidates", type=int, default=100_000, help=argparse.SUPPRESS)
    p.set_defaults(func=cmd_plan)

    p = sub.add_parser("bwmap", help="the optimal DSL cut for every bandwidth",
                       description="Compute every breakpoint of the optimal latency as a function "
                       "of bandwidth (a few min-cut solves), so plans switch by lookup.")
    add_costs_args(p)
    p.add_argument("--min", type=bandwidth, default=1e4, metavar="RATE", help="default 10kbit")
    p.add_argument("--max", type=bandwidth, default=1e10, metavar="RATE", help="default 10gbit")
    p.add_argument("--json", action="store_true", help="print the map as JSON")
    p.add_argument("--plot", metavar="FILE", help="plot latency vs bandwidth to FILE (.png)")
    p.set_defaults(func=cmd_bwmap)

    p = sub.add_parser("explore", help="profile and plan the default model on this machine "
                       "(offline; the running system is `dads up`)",
                       description="Profile a model here (cached), then plan it for each DADS "
                       "uplink and map its optimal cut over bandwidth.")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"default {DEFAULT_MODEL}")
    p.add_argument("--cloud-speedup", type=float, default=DEFAULT_CLOUD_SPEEDUP, metavar="F",
                   help=f"cloud modelled F times faster (default {DEFAULT_CLOUD_SPEEDUP:g})")
    p.add_argument("--out", default="out/explore", metavar="DIR",
                   help="figures (default out/explore)")
    p.set_defaults(func=cmd_explore)

