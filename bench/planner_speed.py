"""Planner speed and quality per zoo model: DSL, DSH, bandwidth map, exact ILP, DSH's ratio.

    python -m bench.planner_speed [--quick] [--models a,b] [--exact]

DSL is timed end to end (auxiliary graph built and solved), as the planner runs it on a plan
change; DSH and the map reuse one solver, as the planner does.
"""

from __future__ import annotations

import argparse
import sys

from bench.common import DOCS, markdown_table, median_time, write_report, zoo_costs
from common.model.models import ZOO
from common.planning import partition
from common.planning.bwmap import bandwidth_map
from common.planning.mincut import CutSolver
from common.planning.units import PRESETS

QUICK = ["resnet18", "googlenet", "densenet121"]


def run(models: list[str], exact: bool, runs: int) -> tuple[list[list[object]], list[list[object]]]:
    speed, ratios = [], []
    for name in models:
        g, _ = zoo_costs(name)
        bw = PRESETS["4g"]
        dsl_s = median_time(lambda g=g, bw=bw: partition.dsl(g, bw), runs)
        solver = CutSolver(g)
        solve_s = median_time(lambda s=solver, bw=bw: s.solve(1.0, 8.0 / bw, 1.0), runs)
        dsh_s = median_time(lambda g=g, s=solver, bw=bw: partition.dsh(g, bw, 4, solver=s), max(3, runs // 10))
        bmap = bandwidth_map(g, solver=solver)
        map_s = median_time(lambda g=g, s=solver: bandwidth_map(g, solver=s), max(3, runs // 10))
        ns_s = median_time(lambda g=g, bw=bw: partition.neurosurgeon(g, bw), max(3, runs // 10))
        speed.append([name, len(g), g.number_of_edges(), f"{dsl_s * 1e3:.2f}", f"{solve_s * 1e3:.2f}",
                      f"{dsh_s * 1e3:.0f}", f"{map_s * 1e3:.1f}", len(bmap.segments),
                      f"{ns_s * 1e3:.1f}"])
        print(" | ".join(map(str, speed[-1])), file=sys.stderr)
        if exact:
            for k in (1, 4):
                for preset in ("3g", "wifi"):
                    bwk = PRESETS[preset]
                    heur = partition.dsh(g, bwk, k, solver=solver)
                    opt = partition.exact_throughput(g, bwk, k, time_limit_s=60)
                    ratio = heur.predicted.bottleneck_s / opt.predicted.bottleneck_s
                    ratios.append([name, preset, k, f"{heur.predicted.throughput_fps:.2f}",
                                   f"{opt.predicted.throughput_fps:.2f}", f"{ratio:.4f}",
                                   "yes" if opt.extra["optimal"] else "time limit"])
    return speed, ratios


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}, fewer runs")
    ap.add_argument("--models", help="comma-separated zoo models (default: all)")
    ap.add_argument("--exact", action="store_true", help="also solve the exact ILP (slow)")
    ap.add_argument("--out", default=str(DOCS / "planner_speed.md"), help="markdown report")
    args = ap.parse_args(argv)
    models = args.models.split(",") if args.models else QUICK if args.quick else list(ZOO)
    speed, ratios = run(models, args.exact, 20 if args.quick else 100)
    text = ["## Planner speed (4G uplink, cloud modelled 10x faster, times in ms, median)", "",
            markdown_table(["model", "nodes", "edges", "DSL", "min-cut solve", "DSH (k=4)",
                            "bandwidth map", "map cuts", "Neurosurgeon"], speed)]
    if ratios:
        text += ["", "## DSH vs exact throughput (ILP, HiGHS)", "",
                 markdown_table(["model", "uplink", "k", "DSH fps", "exact fps",
                                 "bottleneck ratio", "proven optimal"], ratios)]
    report = "\n".join(text) + "\n"
    write_report(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
