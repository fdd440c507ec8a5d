"""Per zoo model: node count, trace time, profiling time, forward time, split build time.

    python -m bench.foundations [--quick] [--models a,b]

The split build time is what a worker pays on a plan change: the median over random valid cuts
of `split_graph` (both parts generated from an already traced model).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time

import torch

from bench.common import DOCS, markdown_table, write_report
from common.model.graph import trace
from common.model.models import ZOO, example_input, load_model
from common.model.profiler import profile_graph
from common.model.split import split_graph
from common.planning import dag

QUICK = ["resnet18", "googlenet", "densenet121"]


def measure(name: str, cuts: int) -> list[object]:
    model, x = load_model(name), example_input(name)
    t0 = time.perf_counter()
    graph = trace(model, x, name)
    trace_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    prof = profile_graph(graph, "cpu", progress=False)  # the CLI defaults: 3 warm-up, 10 repeats
    profile_s = time.perf_counter() - t0
    rng = random.Random(0)
    builds = []
    for _ in range(cuts):
        edge = dag.random_cut(graph.dag, rng)
        t0 = time.perf_counter()
        split_graph(graph, edge)
        builds.append(time.perf_counter() - t0)
    return [name, len(graph), f"{trace_s:.2f}", f"{profile_s:.1f}", f"{prof.total_s * 1e3:.1f}",
            f"{prof.summed_s / prof.total_s:.2f}", f"{statistics.median(builds) * 1e3:.1f}",
            f"{max(builds) * 1e3:.1f}"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}")
    ap.add_argument("--models", help="comma-separated zoo models (default: all)")
    ap.add_argument("--cuts", type=int, default=10, help="random cuts per model (default 10)")
    ap.add_argument("--out", default=str(DOCS / "foundations.md"), help="markdown report")
    args = ap.parse_args(argv)
    models = args.models.split(",") if args.models else QUICK if args.quick else list(ZOO)
    rows = []
    for name in models:
        rows.append(measure(name, args.cuts))
        print(" | ".join(map(str, rows[-1])), file=sys.stderr)
    report = "\n".join([
        f"## Models, profiling and split build (CPU, {torch.get_num_threads()} threads)", "",
        markdown_table(["model", "fx nodes", "trace s", "profiling s", "forward ms",
                        "per-node sum / forward", "split build ms (median)", "split build ms (max)"],
                       rows),
    ]) + "\n"
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
