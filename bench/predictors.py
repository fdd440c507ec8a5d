"""Latency predictors (Edgent), leave one model out: how well a device is planned unprofiled.

    python -m bench.predictors [--quick] [--models a,b] [--device cpu|cuda] [--threads N]

Every zoo model is profiled on this device (cached); for each model, a predictor is fitted on
the profiles of all the others and predicts the held-out one from its shapes alone. Per node:
the relative error of nodes that take at least `--floor` of the model's time (smaller ones are
below the timer's noise); per model: the error of the predicted total, and what it does to the
plan: DSL on the predicted profile, judged on the measured one, against DSL on the measured one
(the latency the prediction costs), at each DADS uplink.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import figure, markdown_table, parser, save_raw, write_report

MODELS = ["alexnet", "vgg16", "resnet18", "googlenet", "inception_v3", "mobilenet_v2",
          "densenet121", "resnet50"]


def profiles(models: list[str], device: str, threads: int | None) -> dict[str, Any]:
    from common.model.features import node_features
    from common.model.graph import trace
    from common.model.models import input_shape_for, load_served, synthetic_frame
    from common.model.profiler import cached_profile

    out = {}
    for m in models:
        t0 = time.perf_counter()
        graph = trace(load_served(m), synthetic_frame(0, input_shape_for(m)), m)
        prof = cached_profile(graph, device, threads=threads, progress=False)
        out[m] = {"graph": graph, "features": node_features(graph), "profile": prof}
        print(f"  {m}: {len(graph)} nodes, profile in {time.perf_counter() - t0:.0f} s",
              file=sys.stderr, flush=True)
    return out


def held_out(data: dict[str, Any], held: str, floor: float, slowdown: float) -> dict[str, Any]:
    from common.planning import costgraph, partition, predict
    from common.planning.profile import scaled
    from common.planning.units import PRESETS

    samples = [(kind, feats, data[m]["profile"].node_times_s[v])
               for m in data if m != held for v, (kind, feats) in data[m]["features"].items()]
    pred = predict.fit(samples, models=[m for m in data if m != held])
    measured = data[held]["profile"]
    guess = pred.predict(data[held]["features"])
    total = sum(measured.node_times_s.values())
    rows = [(v, guess[v], t) for v, t in measured.node_times_s.items() if t >= floor * total]
    errors = [abs(p - t) / t for _, p, t in rows]
    predicted_profile = predict.as_profile(measured.model, measured.fingerprint, measured.device,
                                           measured.input_shapes, guess)
    dag = data[held]["graph"].dag
    regret = {}
    for name, rate in PRESETS.items():  # the plan made on the prediction, run on the truth
        truth = costgraph.build(dag, scaled(measured, 1 / slowdown), scaled(measured, 10.0))
        guessed = costgraph.build(dag, scaled(predicted_profile, 1 / slowdown),
                                  scaled(measured, 10.0))
        best = partition.dsl(truth, rate).predicted.latency_s
        chosen = partition.evaluate(truth, partition.dsl(guessed, rate).edge_nodes, rate)
        regret[name] = chosen.latency_s / best - 1
    return {"model": held, "nodes": len(rows), "node_median": statistics.median(errors),
            "node_p90": sorted(errors)[int(0.9 * (len(errors) - 1))], "node_worst": max(errors),
            "model_error": sum(guess.values()) / total - 1, "plan_regret": regret,
            "points": [(p, t) for _, p, t in rows]}


def plot(records: list[dict[str, Any]], path: Path) -> None:
    with figure(path, 1, 1, figsize=(5.5, 5)) as (_, ax):
        for r in records:
            ax.scatter([t * 1e3 for _, t in r["points"]], [p * 1e3 for p, _ in r["points"]],
                       s=8, label=r["model"])
        lo = min(min(t, p) for r in records for p, t in r["points"]) * 1e3
        hi = max(max(t, p) for r in records for p, t in r["points"]) * 1e3
        ax.plot([lo, hi], [lo, hi], "k--", lw=1)
        ax.set(xscale="log", yscale="log", xlabel="measured node time (ms)",
               ylabel="predicted, model held out (ms)", title="per-node latency predictors")
        ax.legend(fontsize=7)


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "predictors.md")
    ap.add_argument("--quick", action="store_true", help="four small models")
    ap.add_argument("--models", help=f"comma-separated (default: {','.join(MODELS)})")
    ap.add_argument("--device", default="cpu", help="where to profile (default cpu)")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    ap.add_argument("--floor", type=float, default=0.005,
                    help="nodes under this share of the model's time are not scored (0.005)")
    ap.add_argument("--edge-slowdown", type=float, default=10.0, metavar="F",
                    help="for the plan regret: the edge F times slower than this device (10)")
    args = ap.parse_args(argv)
    models = args.models.split(",") if args.models else (
        ["alexnet", "resnet18", "googlenet", "mobilenet_v2"] if args.quick else MODELS)
    data = profiles(models, args.device, args.threads)
    records = [held_out(data, m, args.floor, args.edge_slowdown) for m in models]
    device = next(iter(data.values()))["profile"].device
    png = save_raw(records, Path(args.out), plot)
    uplinks = list(records[0]["plan_regret"])
    rows = [[r["model"], r["nodes"], f"{r['node_median']:.0%}", f"{r['node_p90']:.0%}",
             f"{r['node_worst']:.0%}", f"{r['model_error']:+.0%}",
             *(f"{r['plan_regret'][u]:.1%}" for u in uplinks)] for r in records]
    med = statistics.median(abs(r["model_error"]) for r in records)
    text = f"""## Latency predictors (Edgent), leave one model out

Device: {device.name} ({device.kind}, {device.threads} threads). For each model, per-op-kind
regressions (non-negative least squares of node time on multiply-accumulates, input and output
elements and parameter bytes) fitted on the other {len(models) - 1} models' profiles predict its
profile from its shapes alone. Node errors count nodes that take at least {args.floor:.1%} of
the model's time. Plan regret: DSL planned on the predicted edge profile (edge
{args.edge_slowdown:g}x slower than this device, cloud 10x faster), run on the measured one,
against DSL on the measured one.

{markdown_table(["model", "nodes scored", "node error median", "p90", "worst",
                 "model total error", *(f"plan regret {u}" for u in uplinks)], rows)}

Median |model total error|: {med:.0%}.

![predicted vs measured]({png})
"""
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
