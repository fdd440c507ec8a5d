"""`dads`: the command line. Thin: every subcommand parses, calls `common`, prints."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from common.errors import DadsError

__all__ = ["main", "build_parser"]

EPILOG = """\
examples:
  dads profile resnet18 --plot plots/          profile on this machine, save figures
  dads split-check googlenet --cuts 20          verify the split on 20 random cuts
  dads costgraph resnet18 --edge E.json --cloud C.json --out costs.json
  dads split-check mypkg.models:build --input-shape 1,3,128,128
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
    from common.graph import trace
    from common.models import example_input, load_model

    model = load_model(args.model, args.weights, args.seed)
    return trace(model, example_input(args.model, args.input_shape), name=args.model)


def cmd_profile(args: argparse.Namespace) -> int:
    from common.plots import LayerRow, plot_profile
    from common.profile import cache_path
    from common.profiler import profile_graph

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

    from common import dag
    from common.split import check_cut

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
    from common import costgraph
    from common.profile import Profile

    graph = _trace(args)
    g = costgraph.build(graph.dag, Profile.load(args.edge), Profile.load(args.cloud), args.input_bytes)
    if args.out:
        print(f"cost graph of {graph.name} ({len(g)} nodes) written to {costgraph.save(g, args.out)}")
    else:
        json.dump(costgraph.to_json(g), sys.stdout)
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
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
    p.add_argument("--input-bytes", type=int, metavar="N",
                   help="bytes sent when the raw input crosses (default: the input tensor's)")
    p.add_argument("--out", metavar="FILE", help="output file (default: stdout)")
    p.set_defaults(func=cmd_costgraph)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except DadsError as exc:
        print(f"dads {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
