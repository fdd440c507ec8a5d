"""Planner quality on the running system: regret of DSL's cut, and the cost model's error.

    python -m bench.quality [--quick] [--cases alexnet:3g,googlenet:4g]

For each model and uplink, the planner is pinned (operator `Control`) to every single cut point
of the layer order (evenly sampled where there are more than `--points`) and to a sample of
DAG cuts (random closed sets, several tensors crossing), and each is measured under light load
(closed loop) like DSL's own cut. Regret = DSL's measured latency / the best measured latency
- 1 (target ≤ 5%). Every measured cut also gives measured / predicted, end to end and per stage.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
from pathlib import Path
from typing import Any

from bench.common import (
    add_devices,
    figure,
    log_dir,
    markdown_table,
    parser,
    resumed,
    save_raw,
    write_report,
)
from bench.live import LIGHT, Live, hardware
from common.planning import dag

CASES = ["alexnet:3g", "alexnet:4g", "resnet18:4g", "googlenet:4g", "googlenet:wifi"]
QUICK = ["alexnet:3g"]


def candidates(model: str, points: int, dag_cuts: int, seed: int = 0
               ) -> list[tuple[str, frozenset[str]]]:
    """Single cut points (prefixes of the layer order) and random DAG cuts, each cut once."""
    from common.model.graph import trace
    from common.model.models import input_shape_for, load_served, synthetic_frame

    g = trace(load_served(model).eval(), synthetic_frame(0, input_shape_for(model)), model).dag
    order = dag.layer_order(g)
    first = len(dag.inputs_of(g))
    ends = list(range(first, len(order) + 1))
    if len(ends) > points:
        ends = sorted({ends[round(i * (len(ends) - 1) / (points - 1))] for i in range(points)})
    seen: set[frozenset[str]] = set()
    out = []
    for end in ends:
        cut = frozenset(order[:end])
        if cut not in seen:
            seen.add(cut)
            out.append(("point", cut))
    rng = random.Random(seed)
    for _ in range(50 * dag_cuts):
        if sum(kind == "dag" for kind, _ in out) >= dag_cuts:
            break
        cut = dag.random_cut(g, rng)
        if cut not in seen and len(dag.transfer(g, cut)) >= 2:
            seen.add(cut)
            out.append(("dag", cut))
    return out


def measure_case(model: str, uplink: str, slowdown: float, frames: int, points: int,
                 dag_cuts: int, logs: Path, cloud_device: str = "cpu") -> list[dict[str, Any]]:
    cands = candidates(model, points, dag_cuts)
    records = []
    with Live(model, logs / f"{model}-{uplink}", slowdown, cloud_device=cloud_device) as live:
        live.set_uplink(uplink)
        with live.edge(LIGHT) as edge:
            todo: list[tuple[str, frozenset[str] | None]] = [("dsl", None), *cands]
            for i, (kind, cut) in enumerate(todo):
                plan = live.pin("dsl") if cut is None else live.pin(cut=tuple(sorted(cut)))
                m = edge.latency(plan, frames)
                p = plan.predicted
                records.append({
                    "model": model, "uplink": uplink, "kind": kind,
                    "edge_nodes": len(plan.edge_nodes), "tensors": len(plan.transfer),
                    "cut": sorted(plan.edge_nodes), "latency_s": m.latency_s,
                    "predicted_s": p.latency_s,
                    "stages": {s: (m.stage_s(s), getattr(p, f"{s}_s"))
                               for s in ("edge", "transfer", "cloud")}})
                print(f"  {model} {uplink} [{i + 1}/{len(todo)}] {kind}: "
                      f"{len(plan.edge_nodes)} edge nodes, {len(plan.transfer)} tensor(s): "
                      f"{(m.latency_s or 0) * 1e3:.0f} ms (predicted {p.latency_s * 1e3:.0f})",
                      file=sys.stderr, flush=True)
    return records


def summarise(records: list[dict[str, Any]]) -> tuple[list[list[object]], list[list[object]]]:
    regret_rows, error_rows = [], []
    for case in dict.fromkeys((r["model"], r["uplink"]) for r in records):
        rs = [r for r in records if (r["model"], r["uplink"]) == case and r["latency_s"]]
        by_cut = _by_cut(rs)  # DSL's cut is often one of the points too: one cut, one latency
        dsl = next(r for r in rs if r["kind"] == "dsl")
        dsl_s = by_cut[tuple(dsl["cut"])]
        best = min(rs, key=lambda r: by_cut[tuple(r["cut"])])
        best_s = by_cut[tuple(best["cut"])]
        regret = dsl_s / best_s - 1
        pred_best = min(rs, key=lambda r: r["predicted_s"])
        regret_rows.append([
            *case, len(by_cut), sum(r["kind"] == "dag" for r in rs),
            f"{dsl['edge_nodes']}/{dsl['tensors']}", f"{dsl_s * 1e3:.0f}",
            "DSL's" if best_s == dsl_s else f"{best['kind']} {best['edge_nodes']}/{best['tensors']}",
            f"{best_s * 1e3:.0f}", f"{regret * 100:.1f}%", "yes" if regret <= 0.05 else "no",
            "yes" if pred_best["predicted_s"] >= dsl["predicted_s"] - 1e-9 else "no"])
        ratios = [r["latency_s"] / r["predicted_s"] for r in rs]
        stage = {s: [r["stages"][s][0] / r["stages"][s][1] for r in rs
                     if r["stages"][s][1] > 1e-3 and r["stages"][s][0] is not None]
                 for s in ("edge", "transfer", "cloud")}
        error_rows.append([*case, len(rs), _spread(ratios), *(_spread(stage[s]) for s in stage)])
    return regret_rows, error_rows


def _by_cut(records: list[dict[str, Any]]) -> dict[tuple[str, ...], float]:
    """Measured latency per distinct cut: the median over the runs of that cut."""
    runs: dict[tuple[str, ...], list[float]] = {}
    for r in records:
        runs.setdefault(tuple(r["cut"]), []).append(r["latency_s"])
    return {cut: statistics.median(v) for cut, v in runs.items()}


def _spread(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):.2f} ({min(values):.2f}–{max(values):.2f})"


def plot(records: list[dict[str, Any]], path: Path) -> None:
    cases = list(dict.fromkeys((r["model"], r["uplink"]) for r in records))
    with figure(path, 1, len(cases), figsize=(4 * len(cases), 3.8), squeeze=False) as (_, axes):
        for ax, case in zip(axes[0], cases, strict=True):
            rs = [r for r in records if (r["model"], r["uplink"]) == case and r["latency_s"]]
            for kind, marker in (("point", "o"), ("dag", "^"), ("dsl", "*")):
                sel = [r for r in rs if r["kind"] == kind]
                ax.scatter([r["predicted_s"] * 1e3 for r in sel], [r["latency_s"] * 1e3 for r in sel],
                           marker=marker, s=120 if kind == "dsl" else 25, label=kind)
            lim = max(max(r["latency_s"], r["predicted_s"]) for r in rs) * 1e3 * 1.1
            ax.plot([0, lim], [0, lim], color="grey", lw=1, ls="--")
            ax.set(xlabel="predicted latency (ms)", ylabel="measured latency (ms)",
                   title=f"{case[0]}, {case[1]}", xscale="log", yscale="log")
        axes[0][0].legend(fontsize=8)


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "quality.md")
    ap.add_argument("--quick", action="store_true", help=f"only {', '.join(QUICK)}, fewer cuts")
    ap.add_argument("--cases", help=f"model:uplink,... (default {','.join(CASES)})")
    ap.add_argument("--points", type=int, default=24, help="single cut points at most (24)")
    ap.add_argument("--dag-cuts", type=int, default=8, help="random multi-tensor cuts (8)")
    ap.add_argument("--frames", type=int, default=3, help="frames per cut after a warm one (3)")
    add_devices(ap)
    ap.add_argument("--resume", action="store_true",
                    help="keep the cases already in the report's .json, measure the others")
    args = ap.parse_args(argv)
    cases = args.cases.split(",") if args.cases else QUICK if args.quick else CASES
    points, dag_cuts, frames = (6, 2, 2) if args.quick else (args.points, args.dag_cuts, args.frames)
    logs = log_dir("quality")
    records: list[dict[str, Any]] = []
    out = Path(args.out)
    case_of = lambda r: f"{r['model']}:{r['uplink']}"  # noqa: E731
    if args.resume and (records := resumed(out, case_of, "quality")):
        cases = [c for c in cases if c not in {case_of(r) for r in records}]
        report(records, args, frames, out)  # also re-renders a finished run
    for case in cases:  # the report is rewritten after each case: a cut-short run still counts
        model, _, uplink = case.partition(":")
        records += measure_case(model, uplink, args.edge_slowdown, frames, points, dag_cuts, logs,
                                args.cloud_device)
        report(records, args, frames, out)
    return 0


def report(records: list[dict[str, Any]], args: argparse.Namespace, frames: int, out: Path) -> None:
    png = save_raw(records, out, plot)
    regret, error = summarise(records)
    text = f"""## Planner quality: regret and prediction error, measured

{hardware(args.cloud_device)}; edge emulated {args.edge_slowdown:g}x slower, one torch thread each side; light load
(closed loop), median of {frames} frames after a warm one per cut; the planner pinned to each cut.
Regret = DSL's measured latency / the best measured latency among all the distinct cuts tried
− 1 (target ≤ 5%); a cut run twice (DSL's cut is often also a cut point) counts once, at the
median of its runs. "DSL optimal on the model" checks that no tried cut has a lower *predicted*
latency than DSL's (it must not: DSL is the exact minimum under the cost model).

{markdown_table(["model", "uplink", "cuts tried", "of them DAG cuts", "DSL cut (edge nodes/tensors)",
                 "DSL ms", "best measured cut", "best ms", "regret", "≤ 5%",
                 "DSL optimal on the model"], regret)}

### Measured / predicted, over every cut tried: median (min–max)

{markdown_table(["model", "uplink", "cuts", "end to end", "edge", "link+hops", "cloud"], error)}

![measured vs predicted]({png})
"""
    write_report(text, str(out))


if __name__ == "__main__":
    raise SystemExit(main())
