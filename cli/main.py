"""`dads`: the command line. Thin: every subcommand parses, calls `common`, prints."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from common.errors import DadsError, as_command

__all__ = ["main", "build_parser"]

DEFAULT_MODEL = "googlenet"
DEFAULT_CLOUD_SPEEDUP = 10.0

EPILOG = """\
examples:
  dads up --story                               the whole system here, adapting (make demo)
  dads explore                                  profile + plan the default model here (offline)
  dads profile resnet18 --plot plots/           profile on this machine, save figures
  dads split-check googlenet --cuts 20          verify the split on 20 random cuts
  dads costgraph resnet18 --edge E.json --cloud C.json --out costs.json
  dads plan --graph costs.json --bandwidth 4g   the DSL plan at DADS's 4G uplink
  dads plan resnet18 --bandwidth 3mbit --algorithm dsh --workers 4 --json
  dads bwmap googlenet --plot map.png           every bandwidth breakpoint of the DSL plan
  dads plan googlenet --images photos/ --bandwidth 3g   cut and codecs, lossless (bit-exact)
  dads codecs googlenet --images photos/ --out fid.json  each lossy codec's fidelity
  dads predict resnet50 --from alexnet vgg16 googlenet --out r50.json   a profile, unprofiled
  dads train-exits --out digits.pth             a 3-exit CNN on scikit-learn's digits (seconds)
  dads benchmark resnet18 --tier edge --out edge.json    this machine's profile, as tier "edge"
  dads plan resnet18 --tiers device,edge,cloud --tier-profile edge=edge.json \
       --tier-speedup device=0.1 --tier-speedup cloud=10 --links 3g,wifi --top 10
  dads plan digits_exits --weights digits.pth --bandwidth 3g --latency-goal 200ms --edge-slowdown 100
  dads plan googlenet --images photos/ --bandwidth 3g --fidelity top1:0.99 --fidelity-table fid.json
"""


def _shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1,3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1,3,224,224")
    return dims


def _add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a torchvision model name (e.g. resnet18) or package.module:factory")
    p.add_argument("--weights", metavar="PATH", help="load real weights from a local .pth "
                   "(default: random weights from --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--input-shape", type=_shape, metavar="N,C,H,W",
                   help="example input shape (default: the model's natural one, batch 1)")


def _trace(args: argparse.Namespace):  # -> ModelGraph; torch imported only when needed
    from common.model.graph import trace
    from common.model.models import example_input, load_model

    model = load_model(args.model, args.weights, args.seed)
    return trace(model, example_input(args.model, args.input_shape), name=args.model)


def cmd_profile(args: argparse.Namespace) -> int:
    from common.model.plots import LayerRow, plot_profile
    from common.model.profiler import profile_graph
    from common.planning.profile import cache_path

    graph = _trace(args)
    t0 = time.perf_counter()
    prof = profile_graph(graph, args.device, args.warmup, args.repeats, args.threads)
    took = time.perf_counter() - t0
    out = Path(args.out) if args.out else cache_path(graph.name, graph.fingerprint, prof.device)
    prof.save(out)
    print(f"{graph.name}: {len(graph)} nodes, fingerprint {graph.fingerprint}")
    print(f"device {prof.device.kind} ({prof.device.name}, {prof.device.threads} threads)")
    print(f"forward {prof.total_s * 1e3:.2f} ms (median), per-node sum {prof.summed_s * 1e3:.2f} ms; "
          f"profiled in {took:.1f} s")
    print(f"profile written to {out}")
    if args.plot:
        rows = [LayerRow(n.name, n.op, n.output_bytes, prof.node_times_s[n.name])
                for n in graph.nodes.values()]
        for path in plot_profile(graph.name, prof.device.kind, rows, Path(args.plot)):
            print(f"figure written to {path}")
    return 0


def cmd_split_check(args: argparse.Namespace) -> int:
    import torch

    from common.model.split import check_cut
    from common.planning import dag

    graph = _trace(args)
    x = graph.example_inputs
    with torch.no_grad():
        ref = graph.module(*x)
    rng = random.Random(args.seed)
    cuts = [frozenset(graph.inputs), frozenset(graph.nodes)]
    cuts += [dag.random_cut(graph.dag, rng) for _ in range(args.cuts)]
    worst, failed = 0.0, 0
    for i, edge in enumerate(cuts):
        err = check_cut(graph, edge, x, ref)
        worst = max(worst, err)
        crossing = dag.transfer(graph.dag, edge)
        ok = err <= args.tolerance
        failed += not ok
        label = "cloud-only" if i == 0 else "edge-only" if i == 1 else f"cut {i - 1}"
        print(f"{'ok  ' if ok else 'FAIL'} {label:>10}: {len(edge):4d}/{len(graph)} nodes on edge, "
              f"{len(crossing)} crossing, rel. error {err:.2e}")
    print(f"{graph.name}: {len(cuts) - failed}/{len(cuts)} cuts exact within {args.tolerance:g} "
          f"(worst {worst:.2e})")
    return 1 if failed else 0


def cmd_costgraph(args: argparse.Namespace) -> int:
    from common.planning import costgraph
    from common.planning.profile import Profile

    graph = _trace(args)
    g = costgraph.build(graph.dag, Profile.load(args.edge), Profile.load(args.cloud),
                        _resolve_input_bytes(args.input_bytes, graph))
    if args.out:
        print(f"cost graph of {graph.name} ({len(g)} nodes) written to {costgraph.save(g, args.out)}")
    else:
        json.dump(costgraph.to_json(g), sys.stdout)
        print()
    return 0


def _bandwidth(text: str) -> float:
    from common.planning.units import parse_bandwidth

    try:
        return parse_bandwidth(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_costs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="a model (as for `dads profile`), when no --graph")
    p.add_argument("--graph", metavar="COSTS.json", help="a cost graph (DESIGN §3) to plan on")
    p.add_argument("--weights", metavar="PATH", help="local .pth weights of the model")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights (default 0)")
    p.add_argument("--input-shape", type=_shape, metavar="N,C,H,W", help="example input shape")
    p.add_argument("--edge-profile", metavar="P.json",
                   help="edge profile (default: measure here, cached)")
    p.add_argument("--cloud-profile", metavar="P.json",
                   help="cloud profile (default: the edge profile / --cloud-speedup)")
    p.add_argument("--cloud-speedup", type=float, default=DEFAULT_CLOUD_SPEEDUP, metavar="F",
                   help=f"model the cloud as F times faster when no cloud profile is given "
                   f"(default {DEFAULT_CLOUD_SPEEDUP:g})")
    p.add_argument("--edge-slowdown", type=float, default=1.0, metavar="F",
                   help="model the edge as F times slower than its profile (a camera's SoC "
                   "profiled on a workstation; default 1)")
    p.add_argument("--input-bytes", type=_input_bytes, metavar="N|frame",
                   help="bytes sent when the raw input crosses: a number, or 'frame' for a uint8 "
                   "RGB frame of the input's size (default: the input tensor's bytes)")
    p.add_argument("--images", metavar="DIR",
                   help="plan the model as served (uint8 camera frames in) with codecs, their "
                   "sizes measured on these images (a folder of photos from your cameras)")
    p.add_argument("--codec-frames", type=int, default=4, metavar="N",
                   help="images of --images to measure codecs on (default 4)")
    p.add_argument("--codecs", default="auto", metavar="auto|none|LIST",
                   help="codecs a plan may use: auto (all the fidelity policy allows; default), "
                   "none, or a list, e.g. png,zstd")
    p.add_argument("--fidelity", default="lossless", metavar="POLICY",
                   help="what codecs may trade: lossless (bit-exact; default), any, top1:0.99 or "
                   "error:0.01 (measured: --fidelity-table)")
    p.add_argument("--fidelity-table", metavar="FILE",
                   help="each codec's fidelity on this model, from `dads codecs`")


def _input_bytes(text: str) -> int | str:
    if text == "frame":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number of bytes, or 'frame'") from None


def _resolve_input_bytes(value: int | str | None, graph) -> int | None:
    """'frame': the input sent as a uint8 frame, one byte per element of the input tensor."""
    if value != "frame":
        return value  # type: ignore[return-value]
    numel = 1
    for d in graph.example_inputs[0].shape:
        numel *= d
    return numel


def _costs(args: argparse.Namespace):  # -> nx.DiGraph
    from common.planning import costgraph
    from common.planning.profile import Profile, scaled

    if args.graph:
        if args.model:
            raise DadsError("give a model or --graph, not both")
        return costgraph.load(args.graph)
    if not args.model:
        raise DadsError("say what to plan: a model name, or --graph COSTS.json")
    from common.model.profiler import cached_profile

    graph = _served(args) if args.images or _has_exits(args) else _trace(args)
    edge = Profile.load(args.edge_profile) if args.edge_profile else cached_profile(graph, "cpu")
    if args.images:
        edge = _with_codecs(args, graph, edge)
    if args.edge_slowdown != 1.0:
        edge = scaled(edge, 1.0 / args.edge_slowdown)
    if args.cloud_profile:
        cloud = Profile.load(args.cloud_profile)
    else:
        cloud = scaled(edge, args.cloud_speedup)
        print(f"note: no --cloud-profile, the cloud is modelled as {args.cloud_speedup:g}x "
              "faster than this machine", file=sys.stderr)
    return costgraph.build(graph.dag, edge, cloud, _resolve_input_bytes(args.input_bytes, graph))


def _with_codecs(args: argparse.Namespace, graph, profile):  # -> Profile
    """`profile` with each node's codecs measured on --images (sizes; encode and decode times
    on this machine)."""
    from dataclasses import replace

    from common.model import codecprofile

    frames = _images(args.images, graph, args.codec_frames)
    print(f"note: codecs measured on {len(frames)} image(s) of {args.images}", file=sys.stderr)
    return replace(profile, codecs=codecprofile.measure(graph, [(f,) for f in frames]))


def _has_exits(args: argparse.Namespace) -> bool:
    from common.model.exits import load_accuracy

    return bool(getattr(args, "weights", None) and load_accuracy(args.weights))


def _served(args: argparse.Namespace):  # -> ModelGraph of the model as the services run it
    from common.model.exits import load_accuracy, mark_exits
    from common.model.graph import trace
    from common.model.models import input_shape_for, load_served, synthetic_frame

    shape = args.input_shape or input_shape_for(args.model)
    graph = trace(load_served(args.model, args.weights, args.seed), synthetic_frame(0, shape),
                  name=args.model)
    mark_exits(graph.dag, graph.outputs, load_accuracy(args.weights))
    return graph


def _images(folder: str, graph, limit: int) -> list:  # -> list[torch.Tensor] frames
    import itertools

    from services.edge_agent.sources import open_source

    shape = tuple(graph.example_inputs[0].shape)
    frames = list(itertools.islice(open_source(folder, shape), max(1, limit)))
    if not frames:
        raise DadsError(f"no images in {folder}")
    return frames


def _codec_policy(args: argparse.Namespace, g) -> frozenset[str]:
    """The codecs `dads plan` may use: the ones the cost graph lists, as the flags allow."""
    from common.codec import codecs
    from common.planning import costgraph, fidelity

    table = fidelity.load_table(args.fidelity_table) if args.fidelity_table else None
    if table and table.get("fingerprint") != g.graph.get("fingerprint"):
        print(f"warning: {args.fidelity_table} was measured on another model (or weights): "
              "no lossy codec is admitted by it", file=sys.stderr)
    return fidelity.select(costgraph.codec_names(g), costgraph.codec_names(g, lossy=True),
                           fidelity.parse_codecs(args.codecs, codecs.NAMES),
                           fidelity.parse(args.fidelity), table,
                           g.graph.get("fingerprint"))


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
        lines.append("  " + ", ".join(f"{k}={v}" for k, v in plan.extra.items()))
    return "\n".join(lines)


def _pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise DadsError(f"{what} {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def cmd_tiers(args: argparse.Namespace) -> int:
    """Scission: the best placements over ordered tiers, ranked, exactly."""
    from common.model.features import node_features
    from common.model.profiler import cached_profile
    from common.planning import tiers as tiering
    from common.planning.profile import Profile, scaled
    from common.planning.units import format_bandwidth, format_bytes, parse_bandwidth

    names = [t.strip() for t in args.tiers.split(",") if t.strip()]
    if len(names) < 2 or len(set(names)) != len(names):
        raise DadsError("--tiers: two or more distinct names in data-flow order, e.g. "
                        "device,edge,cloud")
    links = [parse_bandwidth(x) for x in (args.links or "").split(",") if x]
    if len(links) != len(names) - 1:
        raise DadsError(f"--links: {len(names) - 1} rates for {len(names)} tiers, e.g. 3g,wifi")
    graph = _served(args)  # camera frames in: the first tier holds the frame (as benchmarked)
    here = cached_profile(graph, "cpu", progress=not args.json)
    files, speedups = _pairs(args.tier_profile, "--tier-profile"), _pairs(args.tier_speedup,
                                                                           "--tier-speedup")
    unknown = (set(files) | set(speedups)) - set(names)
    if unknown:
        raise DadsError(f"no tier named {', '.join(sorted(unknown))} in --tiers {args.tiers}")
    times = []
    for name in names:
        prof = Profile.load(files[name]) if name in files else scaled(
            here, float(speedups.get(name, 1.0)))
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

    pins = {v: tier(t) for v, t in _pairs(args.pin, "--pin").items()}
    for v in pins:
        if v not in g:
            raise DadsError(f"--pin: the model has no node {v!r} (its input is {graph.inputs[0]!r})")
    excluded = frozenset(tier(t) for t in args.exclude or [])
    limits = tiering.Limits(
        memory_bytes={tier(t): _byte_count(b) for t, b in _pairs(args.memory, "--memory").items()},
        link_bytes={int(i): _byte_count(b) for i, b in _pairs(args.link_budget,
                                                              "--link-budget").items()})
    problem = tiering.TierProblem(g, tuple(names), tuple(times), tuple(links), pins, excluded,
                                  codecs=codecs)
    if args.throughput:
        return _tiers_throughput(tiering, problem, limits, max(1, args.workers), args.json,
                                 graph.name)
    found: list = []
    for tried, placement in enumerate(tiering.iter_ranked(problem), start=1):  # latency order
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

    measured = _with_codecs(args, graph, here)
    costs = costgraph.build(graph.dag, scaled(measured, speedups[0]),
                            scaled(measured, speedups[1]),
                            _resolve_input_bytes(args.input_bytes, graph))
    for v in g:
        if costs.nodes[v].get("codecs"):
            g.nodes[v]["codecs"] = costs.nodes[v]["codecs"]
    return _codec_policy(args, g)


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


def _byte_count(text: str) -> int:
    units = {"kb": 1e3, "mb": 1e6, "gb": 1e9, "kib": 2**10, "mib": 2**20, "gib": 2**30, "b": 1}
    t = text.strip().lower()
    for suffix, factor in sorted(units.items(), key=lambda kv: -len(kv[0])):
        if t.endswith(suffix):
            try:
                return int(float(t[: -len(suffix)]) * factor)
            except ValueError:
                break
    try:
        return int(float(t))
    except ValueError:
        raise DadsError(f"{text!r} is not a number of bytes (e.g. 512MB, 2GiB, 100000)") from None


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Scission's benchmarking step: this machine's profile of the model, named as a tier."""
    from common.model.profiler import profile_graph

    graph = _served(args)
    prof = profile_graph(graph, args.device, args.warmup, args.repeats, args.threads)
    out = prof.save(args.out or f"{graph.name}-{args.tier}.json")
    print(f"{graph.name} on {prof.device.name} ({prof.device.kind}, {prof.device.threads} threads): "
          f"{prof.total_s * 1e3:.2f} ms a frame; tier {args.tier!r} profile written to {out}")
    print(f"plan with it: dads plan {graph.name} --tiers ...,{args.tier},... "
          f"--tier-profile {args.tier}={out}")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    from common.planning import dag, partition
    from common.planning.mincut import CutSolver
    from common.planning.regime import decide, decide_exit
    from common.planning.units import parse_duration

    if args.tiers:
        return cmd_tiers(args)
    if args.bandwidth is None:
        raise DadsError("--bandwidth is required (or --tiers with --links)")
    g = _costs(args)
    codecs = _codec_policy(args, g)
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


def cmd_codecs(args: argparse.Namespace) -> int:
    from common.model import codecprofile
    from common.planning.units import format_bytes

    graph = _served(args)
    frames = _images(args.images, graph, args.limit)
    names = None if args.codecs == "all" else {n.strip() for n in args.codecs.split(",")}
    print(f"{graph.name}: {len(frames)} image(s) from {args.images}; "
          f"{'real weights' if args.weights else 'seeded random weights'}", file=sys.stderr)
    sizes = codecprofile.measure(graph, [(f,) for f in frames[: args.size_frames]], names)
    table = codecprofile.fidelity(graph, frames, names, args.nodes, progress=not args.json)
    for name, row in table["codecs"].items():  # the size each codec makes, for the reader
        ratios = [v[name]["bytes"] / graph.nodes[n].output_bytes for n, v in sizes.items()
                  if name in v]
        row["size_ratio_median"] = sorted(ratios)[len(ratios) // 2] if ratios else None
    if args.out:
        Path(args.out).write_text(json.dumps(table, indent=1))
    if args.json:
        json.dump(table, sys.stdout, indent=1)
        print()
        return 0
    print(f"{'codec':<11}{'lossy':>6}{'top-1 agree':>13}{'rel. error':>12}{'size':>8}  cuts")
    for name, row in sorted(table["codecs"].items()):
        ratio = row["size_ratio_median"]
        print(f"{name:<11}{'yes' if row['lossy'] else 'no':>6}{row['top1_agreement']:>12.1%}"
              f"{row['rel_error']:>12.2e}{'' if ratio is None else f'{ratio:.0%}':>8}  "
              f"{', '.join(row['cuts'])}")
    frame = graph.nodes[graph.inputs[0]].output_bytes
    print(f"(size: median encoded / raw over the tensors measured; a frame is {format_bytes(frame)})")
    if not args.weights:
        print("note: with random weights, top-1 agreement is a weak signal (what a random model "
              "picks barely depends on the picture); give --weights for the real model's numbers")
    if args.out:
        print(f"fidelity table written to {args.out} (for `dads plan --fidelity-table` and the "
              "planner's --fidelity-table)")
    return 0


def cmd_train_exits(args: argparse.Namespace) -> int:
    import torch

    from common.model import exits

    if args.threads:
        torch.set_num_threads(args.threads)

    def say(epoch: int, epochs: int, loss: float) -> None:
        print(f"\repoch {epoch}/{epochs}  loss {loss:.3f}", end="", file=sys.stderr, flush=True)

    trained = exits.train(epochs=args.epochs, seed=args.seed, log=say)
    print(file=sys.stderr)
    out = exits.save(trained, args.out)
    m = trained.meta
    print(f"digits_exits: trained on {m['train']} images of {m['data']}, {m['epochs']} epochs in "
          f"{m['seconds']:.0f} s; test accuracy on {m['test']} held-out images:")
    for i, acc in enumerate(trained.exit_accuracy, start=1):
        print(f"  exit {i}: {acc:.1%}")
    print(f"weights and exit accuracies written to {out}: serve them with --model digits_exits "
          f"--weights {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from common.model.features import node_features
    from common.model.profiler import cached_profile, predicted_profile, resolve_device
    from common.planning import predict
    from common.planning.profile import Profile

    device = resolve_device(args.device)
    samples, models, devices = [], [], set()
    for source in (s for item in args.sources for s in item.split(",") if s):
        if source.endswith(".json"):  # a profile file: its model is traced here for the shapes
            prof = Profile.load(source)
            graph = _graph_of(prof)
        else:  # a model name: profiled on this device (cached)
            graph = _served_named(source, args)
            prof = cached_profile(graph, str(device), progress=not args.json)
        devices.add(prof.device.key)
        models.append(prof.model)
        samples += [(kind, feats, prof.node_times_s[v])
                    for v, (kind, feats) in node_features(graph).items() if v in prof.node_times_s]
    if len(devices) > 1:
        print(f"warning: the profiles come from {len(devices)} devices ({', '.join(sorted(devices))}"
              "): a predictor is for one device", file=sys.stderr)
    predictor = predict.fit(samples, device=devices.pop() if len(devices) == 1 else "mixed",
                            models=models)
    if args.save_predictor:
        predictor.save(args.save_predictor)
    graph = _served_named(args.model, args)
    prof = predicted_profile(graph, device, predictor)
    if args.out:
        prof.save(args.out)
    if args.json:
        json.dump(prof.to_json(), sys.stdout, indent=1)
        print()
        return 0
    kinds = ", ".join(f"{k} ({n})" for k, n in sorted(predictor.samples.items()) if k != predict.ANY)
    print(f"predictor: {len(samples)} nodes of {len(models)} profile(s) ({', '.join(models)}); "
          f"regressions for {kinds}, and one for every other kind")
    print(f"{graph.name}: predicted {prof.total_s * 1e3:.2f} ms a frame on {prof.device.name} "
          f"({len(graph)} nodes)")
    if args.out:
        print(f"predicted profile (marked predicted) written to {args.out}")
    if args.save_predictor:
        print(f"predictor written to {args.save_predictor} (services: --predictor / DADS_PREDICTOR)")
    return 0


def _served_named(name: str, args: argparse.Namespace):  # -> ModelGraph
    from common.model.graph import trace
    from common.model.models import input_shape_for, load_served, synthetic_frame

    return trace(load_served(name, None, args.seed), synthetic_frame(0, input_shape_for(name)),
                 name=name)


def _graph_of(prof):  # -> ModelGraph whose nodes the profile times
    """The served model a profile was measured on, or the bare one (its inputs' shapes)."""
    import torch

    from common.model.graph import trace
    from common.model.models import load_model, load_served

    shape = tuple(prof.input_shapes[0])
    for build, x in ((load_served, torch.zeros(shape, dtype=torch.uint8)),
                     (load_model, torch.zeros(shape))):
        graph = trace(build(prof.model), x, name=prof.model)
        if graph.fingerprint[:16] == prof.fingerprint[:16]:
            return graph
    raise DadsError(f"the profile of {prof.model!r} matches neither the served nor the bare model "
                    "of that name here (another torch/torchvision?): profile it again")


def cmd_bwmap(args: argparse.Namespace) -> int:
    from common.planning import partition
    from common.planning.bwmap import bandwidth_map
    from common.planning.mincut import CutSolver
    from common.planning.units import PRESETS, format_bandwidth, format_bytes

    g = _costs(args)
    codecs = _codec_policy(args, g)
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
    ns = argparse.Namespace(model=args.model, graph=None, weights=None, seed=0, input_shape=None,
                            edge_profile=None, cloud_profile=None, cloud_speedup=args.cloud_speedup,
                            input_bytes="frame")
    print(f"== profiling {args.model} on this machine (cached after the first run)")
    g = _costs(ns)
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


def cmd_ctl(args: argparse.Namespace) -> int:
    """Send an operator control to the planner: bandwidth override, pinned algorithm or cut."""
    import asyncio

    import zmq

    from common.runtime.security import from_options
    from common.runtime.transport import Channel
    from common.runtime.wire import Control

    cut: tuple[str, ...] | None = None
    if args.unpin_cut:
        cut = ()
    elif args.pin_cut:
        doc = json.loads(Path(args.pin_cut).read_text())
        nodes = doc.get("edge_nodes") if isinstance(doc, dict) else doc
        if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
            raise SystemExit(f"{args.pin_cut}: expected a list of node names or a plan JSON "
                             "with 'edge_nodes'")
        cut = tuple(nodes)
    goal = None
    if args.latency_goal is not None:
        from common.planning.units import parse_duration

        try:
            goal = 0.0 if args.latency_goal in ("0", "none") else parse_duration(args.latency_goal)
        except ValueError as exc:
            raise SystemExit(f"dads ctl: --latency-goal: {exc}") from None
    msg = Control(args.bandwidth, args.algorithm, cut, goal, edge=args.edge)
    if msg == Control():
        raise SystemExit("dads ctl: nothing to send; give --bandwidth, --algorithm, "
                         "--latency-goal or a cut")

    keys = from_options(args.keys, args.insecure, "operator")

    async def send() -> None:
        ch = Channel.open(zmq.PUSH, args.planner, bind=False, keys=keys, server="planner")
        ch.sock.setsockopt(zmq.IMMEDIATE, 0)  # queue until connected
        ch.sock.setsockopt(zmq.LINGER, 2000)
        await ch.send(msg)
        ch.sock.close(linger=2000)

    asyncio.run(send())
    said = []
    if msg.force_bandwidth_bps is not None:
        said.append("bandwidth " + (f"{msg.force_bandwidth_bps:g} bit/s" if msg.force_bandwidth_bps
                                    else "from the probe"))
    if msg.algorithm is not None:
        said.append(f"algorithm {msg.algorithm}")
    if cut is not None:
        said.append(f"cut pinned ({len(cut)} edge nodes)" if cut else "cut unpinned")
    if goal is not None:
        said.append(f"latency goal {goal * 1e3:g} ms" if goal else "no latency goal")
    print(f"sent to {args.planner}: {', '.join(said)}")
    return 0


def _service_command(module: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(importlib.import_module(module).main(args))

    return run


#: The long-running commands: each module's `add_arguments` and `main` (imported only when run).
SERVICES: dict[str, tuple[str, str]] = {
    "broker": ("services.broker.service", "run the broker (edges in front, workers behind)"),
    "cloud-worker": ("services.cloud_worker.service", "run a cloud worker"),
    "edge-agent": ("services.edge_agent.service", "run the edge agent"),
    "planner": ("services.planner.service", "run the planner"),
    "up": ("launch.up", "run the whole system on this machine (loopback)"),
    "testbed": ("launch.testbed", "two hosts (netns) with a shaped real link"),
}


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `dads` parser; of the services, only `command`'s options are built (they import torch)."""
    parser = argparse.ArgumentParser(
        prog="dads",
        description="Dynamic Adaptive DNN Surgery: split DNN inference between an edge device "
        "and a pool of cloud workers, at the cut that minimises latency or maximises throughput.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("profile", help="measure per-layer latency of a model on this device",
                       description="Measure each layer's latency (median of --repeats passes after "
                       "--warmup) and write a profile JSON keyed by model fingerprint and device.")
    _add_model_args(p)
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up passes (default 3)")
    p.add_argument("--repeats", type=int, default=10, help="timed passes (default 10)")
    p.add_argument("--out", metavar="FILE", help="profile JSON (default: the profile cache)")
    p.add_argument("--plot", metavar="DIR", help="also save output-size and latency figures here")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("split-check", help="verify that split execution is exact on random cuts",
                       description="Split the model at edge-only, cloud-only and N random valid "
                       "cuts; check that edge part + cloud part reproduce the model's output.")
    _add_model_args(p)
    p.add_argument("--cuts", type=int, default=10, help="random cuts to check (default 10)")
    p.add_argument("--tolerance", type=float, default=1e-5,
                   help="max |diff| relative to the output scale (default 1e-5)")
    p.set_defaults(func=cmd_split_check)

    p = sub.add_parser("costgraph", help="combine an edge and a cloud profile into a cost graph",
                       description="Write the planner's input (DESIGN §3 cost graph JSON).")
    _add_model_args(p)
    p.add_argument("--edge", required=True, metavar="PROFILE", help="edge device profile JSON")
    p.add_argument("--cloud", required=True, metavar="PROFILE", help="cloud device profile JSON")
    p.add_argument("--input-bytes", type=_input_bytes, metavar="N|frame",
                   help="bytes sent when the raw input crosses: a number, or 'frame' (uint8 RGB)")
    p.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    p.set_defaults(func=cmd_costgraph)

    from common.planning.partition import ALGORITHMS

    p = sub.add_parser("plan", help="compute a partition plan (DSL, DSH, baselines)",
                       description="Plan where to cut: print per-stage times, crossing tensors and "
                       "the speedup over edge-only and cloud-only; --json prints the DESIGN §3 plan.",
                       epilog="bandwidth: a rate (5.85mbit, 300kbit, 2gbit, 1e6bps) or a DADS "
                       "preset: cat1 (0.13 Mbit/s), 3g (1.1), 4g (5.85), wifi (18.88)")
    _add_costs_args(p)
    p.add_argument("--bandwidth", type=_bandwidth, metavar="RATE",
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

    p = sub.add_parser("benchmark", help="profile a model here, as one tier (Scission)",
                       description="Scission's benchmarking step: profile the served model on "
                       "this machine and write it as tier NAME's profile, so several machines "
                       "can each benchmark themselves and one `dads plan --tiers` combines them.")
    _add_model_args(p)
    p.add_argument("--tier", required=True, metavar="NAME", help="this machine's tier name")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up passes (default 3)")
    p.add_argument("--repeats", type=int, default=10, help="timed passes (default 10)")
    p.add_argument("--out", metavar="FILE", help="profile JSON (default MODEL-TIER.json)")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("codecs", help="each codec's fidelity on a model, on your images",
                       description="Measure what each lossy codec costs in fidelity: top-1 "
                       "agreement with the lossless pipeline and relative output error, with the "
                       "frame codecs on the input and the activation codecs at --nodes cuts along "
                       "the model. The table (--out) is what `--fidelity top1:0.99` plans with.")
    _add_model_args(p)
    p.add_argument("--images", required=True, metavar="DIR",
                   help="a folder of real photographs (noise says nothing about JPEG)")
    p.add_argument("--limit", type=int, default=32, metavar="N", help="images used (default 32)")
    p.add_argument("--nodes", type=int, default=6, metavar="K",
                   help="activations along the model to try each activation codec at (default 6)")
    p.add_argument("--codecs", default="all", metavar="LIST", help="codecs to measure (all)")
    p.add_argument("--size-frames", type=int, default=4, metavar="N",
                   help="images to measure encoded sizes on (default 4)")
    p.add_argument("--out", metavar="FILE", help="write the fidelity table (JSON) here")
    p.add_argument("--json", action="store_true", help="print the table as JSON")
    p.set_defaults(func=cmd_codecs)

    p = sub.add_parser("train-exits", help="train the early-exit example (3 exits, digits)",
                       description="Train digits_exits, a small CNN with three early exits, on "
                       "scikit-learn's bundled handwritten digits (a seeded 80/20 split); write "
                       "its weights with each exit's test accuracy, which the cost graph marks.")
    p.add_argument("--out", default="digits_exits.pth", metavar="FILE",
                   help="weights file (default digits_exits.pth)")
    p.add_argument("--epochs", type=int, default=20, help="training epochs (default 20)")
    p.add_argument("--seed", type=int, default=0, help="seed of the split and init (default 0)")
    p.add_argument("--threads", type=int, default=0, help="torch threads (default: torch's)")
    p.set_defaults(func=cmd_train_exits)

    p = sub.add_parser("predict", help="predict a model's profile from other models' profiles",
                       description="Edgent's latency predictors: per op kind, a regression of node "
                       "time on shape features (multiply-accumulates, input and output elements, "
                       "parameter bytes) fitted on measured profiles, predicts MODEL's profile "
                       "on that device without running it. The profile is marked predicted.")
    p.add_argument("model", help="the model to predict (served: uint8 frames in)")
    p.add_argument("--from", dest="sources", required=True, nargs="+", metavar="PROFILE|MODEL",
                   help="what to fit on: profile files (P.json), or model names, profiled here")
    p.add_argument("--device", default="cpu", help="the device of names in --from (default cpu)")
    p.add_argument("--seed", type=int, default=0, help=argparse.SUPPRESS)
    p.add_argument("--out", metavar="FILE", help="write the predicted profile here")
    p.add_argument("--save-predictor", metavar="FILE",
                   help="write the fitted predictor (for the services' --predictor)")
    p.add_argument("--json", action="store_true", help="print the predicted profile as JSON")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("bwmap", help="the optimal DSL cut for every bandwidth",
                       description="Compute every breakpoint of the optimal latency as a function "
                       "of bandwidth (a few min-cut solves), so plans switch by lookup.")
    _add_costs_args(p)
    p.add_argument("--min", type=_bandwidth, default=1e4, metavar="RATE", help="default 10kbit")
    p.add_argument("--max", type=_bandwidth, default=1e10, metavar="RATE", help="default 10gbit")
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

    for name, (module, text) in SERVICES.items():
        if name != command:  # listed in --help; its options (and torch) load only when chosen
            sub.add_parser(name, help=text, add_help=False)
            continue
        import importlib

        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=text, description=(mod.__doc__ or text).strip().split("\n\n")[0])
        mod.add_arguments(p)
        p.set_defaults(func=_service_command(module))

    p = sub.add_parser("keys", help="create CURVE keys: one pair per role (edge, worker, ...)",
                       description="Create the key pairs every socket authenticates with "
                       "(README, 'Trust model'): `init DIR` makes one per role; `add DIR ROLE NAME` "
                       "another edge, worker or operator (ROLE-NAME.key).")
    keys_sub = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    k = keys_sub.add_parser("init", help="one key pair per role in DIR (secrets mode 600)")
    k.add_argument("dir", metavar="DIR")
    k.add_argument("--force", action="store_true", help="replace the keys DIR holds")
    k = keys_sub.add_parser("add", help="another key pair of a role, e.g. a second camera")
    k.add_argument("dir", metavar="DIR")
    k.add_argument("role", choices=["edge", "worker", "operator"])
    k.add_argument("name", help="letters, digits, - and _ (the file is ROLE-NAME.key)")
    p.set_defaults(func=cmd_keys)

    p = sub.add_parser("health", help="is a service's event loop alive? (for healthchecks)",
                       description="Read a service's /metrics and check that its event loop beat "
                       "recently: exit 0 if so, 1 with the reason if not.")
    p.add_argument("--port", type=int, required=True, help="the service's metrics port")
    p.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1")
    p.add_argument("--max-age", type=float, default=10.0, metavar="S",
                   help="the loop's last beat may be at most S s old (default 10)")
    p.set_defaults(func=cmd_health)

    p = sub.add_parser("ctl", help="operator controls for a running planner",
                       description="Force the bandwidth the planner plans for, pin one planner "
                       "algorithm or one exact cut; each setting left out stays as it is.")
    from common.runtime import config

    p.add_argument("--planner", default=config.endpoint("DADS_PLANNER_HOST", "DADS_TELEMETRY_PORT"),
                   help="the planner's telemetry address")
    p.add_argument("--keys", default=config.env("DADS_KEYS") or None, metavar="DIR",
                   help="key directory holding an operator key (env DADS_KEYS)")
    p.add_argument("--insecure", action="store_true", default=config.env("DADS_INSECURE") == "1",
                   help="send in plaintext (a planner run with --insecure)")
    p.add_argument("--bandwidth", type=lambda t: 0.0 if t in ("0", "probe") else _bandwidth(t),
                   metavar="RATE", help="a rate, or 'probe' to lift the override")
    from common.planning.partition import ALGORITHMS

    p.add_argument("--edge", default="", metavar="NAME",
                   help="with --bandwidth: for this edge alone (its --name; default every edge)")
    p.add_argument("--algorithm", choices=["auto", *ALGORITHMS],
                   help="plan with this algorithm only ('auto': DSL or DSH by load, the default)")
    pin = p.add_mutually_exclusive_group()
    p.add_argument("--latency-goal", metavar="DURATION",
                   help="an early-exit model's latency goal, e.g. 30ms (0 or none: lift it)")
    pin.add_argument("--pin-cut", metavar="FILE", help="run exactly this cut: a JSON list of the "
                     "served graph's edge node names, or a plan JSON (DESIGN §3) holding them")
    pin.add_argument("--unpin-cut", action="store_true", help="lift a pinned cut")
    p.set_defaults(func=cmd_ctl)
    return parser


def cmd_keys(args: argparse.Namespace) -> int:
    from common.runtime.security import add_key, init_keys

    if args.action == "init":
        made = init_keys(args.dir, force=args.force)
        print(f"{len(made)} key pairs in {args.dir}: {', '.join(p.stem for p in made)}")
        print("cloud machine: the whole directory. edge machine: edge.key_secret, edge.key, "
              "broker.key, planner.key. operator: operator.key_secret + planner.key.")
    else:
        made = [add_key(args.dir, args.role, args.name)]
        print(f"{made[0].with_suffix('.key_secret')} created; copy {made[0].name} to the cloud "
              f"machine's key directory and restart broker and planner to admit it")
    return 0


def cmd_health(args: argparse.Namespace) -> int:
    import urllib.request

    from common.runtime.metrics import LOOP_BEAT

    try:
        with urllib.request.urlopen(f"http://{args.host}:{args.port}/metrics", timeout=3) as r:
            text = r.read().decode()
    except OSError as exc:
        print(f"unhealthy: no metrics on {args.host}:{args.port} ({exc})", file=sys.stderr)
        return 1
    beats = [float(line.split()[-1]) for line in text.splitlines() if line.startswith(LOOP_BEAT)]
    if not beats:
        print(f"unhealthy: {LOOP_BEAT} not exported (not a dads service?)", file=sys.stderr)
        return 1
    age = time.time() - beats[0]
    if age > args.max_age:
        print(f"unhealthy: the event loop last beat {age:.0f} s ago", file=sys.stderr)
        return 1
    print(f"healthy: the event loop beat {age:.1f} s ago")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser(_command(argv)).parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    return as_command(f"dads {args.command}", lambda: func(args))


if __name__ == "__main__":
    sys.exit(main())
