"""The DADS paper's evaluation, measured on the running system.

    python -m bench.paper [--quick] [--models a,b] [--uplinks cat1,3g,4g,wifi]

Per model and uplink: end-to-end latency under light load of edge-only, cloud-only,
Neurosurgeon (best prefix of the layer order) and DSL; throughput under heavy load (20 fps) of
edge-only, cloud-only, DSL and DSH with one cloud worker, then DSL and DSH with four. Every
number is measured on real services (`bench.live`); the planner is pinned to each algorithm in
turn and told the link's rate. The edge device is this machine's CPU slowed down by
`--edge-slowdown` (emulated: its compute time is stretched), the cloud workers are this
machine's CPU with one thread each. Edge-only sends nothing, so it is measured on the first
uplink only and repeated in the other rows.
"""

from __future__ import annotations

import argparse
import os
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
from bench.live import LIGHT, Live, Measured, hardware, heavy_args, link_description
from common.planning.units import PRESETS

MODELS = ["alexnet", "vgg16", "resnet18", "googlenet", "inception_v3", "mobilenet_v2",
          "densenet121", "resnet50"]
LIGHT_ALGOS = ["cloud_only", "neurosurgeon", "dsl"]
HEAVY_ALGOS = ["cloud_only", "dsl", "dsh"]


def _record(m: Measured, **keys: Any) -> dict[str, Any]:
    p = m.plan.predicted
    return {**keys, "algorithm": m.plan.algorithm, "plan_id": m.plan.plan_id,
            "edge_nodes": len(m.plan.edge_nodes), "tensors": len(m.plan.transfer),
            "transfer_bytes": m.plan.transfer_bytes, "frames": len(m.lines),
            "latency_s": m.latency_s, "throughput_fps": m.throughput_fps,
            "measured": {s: m.stage_s(s) for s in ("edge", "transfer", "cloud")},
            "predicted": {"latency_s": p.latency_s, "edge_s": p.edge_s,
                          "transfer_s": p.transfer_s, "cloud_s": p.cloud_s,
                          "throughput_fps": p.throughput_fps}}


def measure_model(model: str, uplinks: list[str], slowdown: float, frames: int, span_s: float,
                  big_k: int, logs: Path, cloud_device: str = "cpu") -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def say(r: dict[str, Any]) -> None:
        out.append(r)
        got = (f"{r['throughput_fps']:.2f} fps" if r["load"] == "heavy" and r["throughput_fps"]
               else f"{r['latency_s'] * 1e3:.0f} ms" if r["latency_s"] is not None else "-")
        print(f"  {model} {r['uplink']} {r['load']} k={r['k']} {r['algorithm']}: {got} "
              f"(predicted {r['predicted']['latency_s'] * 1e3:.0f} ms, "
              f"{r['predicted']['throughput_fps']:.2f} fps)", file=sys.stderr, flush=True)

    with Live(model, logs / model, slowdown, cloud_device=cloud_device) as live:
        print(f"{model}: services up, uplink {live.link}", file=sys.stderr, flush=True)
        for i, uplink in enumerate(uplinks):
            live.set_uplink(uplink)
            algos = (["edge_only"] if i == 0 else []) + LIGHT_ALGOS
            with live.edge(LIGHT) as edge:
                for algo in algos:
                    plan = live.pin(algo)
                    say(_record(edge.latency(plan, frames), model=model, uplink=uplink,
                                load="light", k=live.workers))
            algos = (["edge_only"] if i == 0 else []) + HEAVY_ALGOS
            with live.edge(heavy_args(window=4)) as edge:
                for algo in algos:
                    plan = live.pin(algo)
                    say(_record(edge.throughput(plan, 4, span_s, skip=2), model=model,
                                uplink=uplink, load="heavy", k=live.workers))
        live.add_workers(big_k - live.workers)
        for uplink in uplinks:
            live.set_uplink(uplink)
            with live.edge(heavy_args(window=big_k + 3)) as edge:
                for algo in ("dsl", "dsh"):
                    plan = live.pin(algo)
                    say(_record(edge.throughput(plan, 4, span_s, skip=big_k + 1), model=model,
                                uplink=uplink, load="heavy", k=live.workers))
    return out


def _get(records: list[dict[str, Any]], **keys: Any) -> dict[str, Any] | None:
    for r in records:
        if all(r.get(k) == v for k, v in keys.items()):
            return r
    return None


def _ms(r: dict[str, Any] | None) -> str:
    return f"{r['latency_s'] * 1e3:.0f}" if r and r["latency_s"] is not None else "-"


def _fps(r: dict[str, Any] | None) -> str:
    return f"{r['throughput_fps']:.2f}" if r and r["throughput_fps"] else "-"


def _ratio(a: float | None, b: float | None) -> str:
    return f"{a / b:.2f}x" if a and b else "-"


def _cut(r: dict[str, Any] | None) -> str:
    """A plan's cut as edge nodes/crossing tensors: 1/1 is cloud-only, N/0 edge-only."""
    return f"{r['edge_nodes']}/{r['tensors']}" if r else "-"


def _lat(r: dict[str, Any] | None) -> float | None:
    return r["latency_s"] if r else None


def _thr(r: dict[str, Any] | None) -> float | None:
    return r["throughput_fps"] if r else None


def tables(records: list[dict[str, Any]], big_k: int) -> tuple[str, str, str]:
    lat_rows, thr_rows, over_rows = [], [], []
    models = list(dict.fromkeys(r["model"] for r in records))
    uplinks = list(dict.fromkeys(r["uplink"] for r in records))
    for model in models:
        eo_l = _get(records, model=model, load="light", algorithm="edge_only")
        eo_h = _get(records, model=model, load="heavy", algorithm="edge_only")
        for up in uplinks:
            if not any(r["model"] == model and r["uplink"] == up and r["algorithm"] != "edge_only"
                       for r in records):
                continue  # this model was not measured on this uplink
            co, ns, dsl = (_get(records, model=model, uplink=up, load="light", algorithm=a)
                           for a in ("cloud_only", "neurosurgeon", "dsl"))
            d, n = _lat(dsl), _lat(ns)
            lower = f"{(1 - d / n) * 100:.0f}%" if d and n else "-"
            lat_rows.append([model, up, _ms(eo_l), _ms(co), _ms(ns), _ms(dsl), _cut(ns), _cut(dsl),
                             _ratio(_lat(eo_l), d), _ratio(_lat(co), d), lower])
            co_h, dsl1, dsh1, dslk, dshk = (
                _get(records, model=model, uplink=up, load="heavy", algorithm=a, k=k)
                for a, k in (("cloud_only", 1), ("dsl", 1), ("dsh", 1), ("dsl", big_k), ("dsh", big_k)))
            thr_rows.append([model, up, _fps(eo_h), _fps(co_h), _fps(dsl1), _fps(dsh1), _fps(dslk),
                             _fps(dshk), _ratio(_thr(dsh1), _thr(eo_h)),
                             _ratio(_thr(dsh1), _thr(co_h)), _ratio(_thr(dshk), _thr(eo_h)),
                             _ratio(_thr(dshk), _thr(co_h))])
    for r in records:
        if r["load"] == "light" and r["latency_s"] is not None:
            m, p = r["measured"], r["predicted"]
            over_rows.append([r["model"], r["uplink"], r["algorithm"],
                              f"{p['latency_s'] * 1e3:.0f}", f"{r['latency_s'] * 1e3:.0f}",
                              f"{r['latency_s'] / p['latency_s']:.2f}",
                              _ratio(m["edge"], p["edge_s"]), _ratio(m["transfer"], p["transfer_s"]),
                              _ratio(m["cloud"], p["cloud_s"])])
    lat = markdown_table(["model", "uplink", "edge-only", "cloud-only", "Neurosurgeon", "DSL",
                          "Neurosurgeon cut", "DSL cut", "DSL vs edge-only", "DSL vs cloud-only",
                          "DSL lower than Neurosurgeon"], lat_rows)
    thr = markdown_table(["model", "uplink", "edge-only", "cloud-only", "DSL k=1", "DSH k=1",
                          f"DSL k={big_k}", f"DSH k={big_k}", "DSH k=1 vs edge-only",
                          "DSH k=1 vs cloud-only", f"DSH k={big_k} vs edge-only",
                          f"DSH k={big_k} vs cloud-only"], thr_rows)
    over = markdown_table(["model", "uplink", "plan", "predicted ms", "measured ms",
                           "measured/predicted", "edge m/p", "link+hops m/p", "cloud m/p"], over_rows)
    return lat, thr, over


def plot(records: list[dict[str, Any]], path: Path) -> None:
    uplinks = list(dict.fromkeys(r["uplink"] for r in records))
    models = list(dict.fromkeys(r["model"] for r in records))
    with figure(path, 1, len(uplinks), figsize=(4.5 * len(uplinks), 4), squeeze=False) as (_, axes):
        width = 0.2
        for ax, up in zip(axes[0], uplinks, strict=True):
            for j, algo in enumerate(["edge_only", "cloud_only", "neurosurgeon", "dsl"]):
                vals = []
                for model in models:
                    r = _get(records, model=model, load="light", algorithm=algo,
                             **({} if algo == "edge_only" else {"uplink": up}))
                    vals.append(r["latency_s"] * 1e3 if r and r["latency_s"] else 0)
                ax.bar([i + (j - 1.5) * width for i in range(len(models))], vals, width, label=algo)
            ax.set_xticks(range(len(models)), models, rotation=45, ha="right")
            ax.set(yscale="log", title=f"light load, {up}", ylabel="latency (ms)")
        axes[0][0].legend(fontsize=8)


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "paper.md")
    ap.add_argument("--quick", action="store_true", help="alexnet on wifi and 3g, fewer frames")
    ap.add_argument("--models", help=f"comma-separated (default: {','.join(MODELS)})")
    ap.add_argument("--uplinks", help=f"comma-separated presets or rates (default: {','.join(PRESETS)})")
    add_devices(ap)
    ap.add_argument("--workers", type=int, default=4, help="the larger pool for DSH (default 4)")
    ap.add_argument("--resume", action="store_true",
                    help="keep the models already in the report's .json, measure the others")
    args = ap.parse_args(argv)
    models = args.models.split(",") if args.models else ["alexnet"] if args.quick else MODELS
    uplinks = args.uplinks.split(",") if args.uplinks else ["wifi", "3g"] if args.quick else list(PRESETS)
    frames, span = (2, 2.0) if args.quick else (3, 6.0)
    logs = log_dir("paper")
    out = Path(args.out)
    records: list[dict[str, Any]] = []
    if args.resume and (records := resumed(out, lambda r: r["model"], "paper")):
        models = [m for m in models if m not in {r["model"] for r in records}]
        report(records, args, frames, span, out)  # also re-renders a finished run
    for model in models:  # the report is rewritten after each model: a cut-short run still counts
        records += measure_model(model, uplinks, args.edge_slowdown, frames, span, args.workers,
                                 logs, args.cloud_device)
        report(records, args, frames, span, out)
    return 0


def report(records: list[dict[str, Any]], args: argparse.Namespace, frames: int, span: float,
           out: Path) -> None:
    png = save_raw(records, out, plot)
    lat, thr, over = tables(records, args.workers)
    cloud = ("the same CPU, one torch thread per worker" if args.cloud_device == "cpu"
             else f"{args.cloud_device} (one worker process each)")
    text = f"""## The DADS evaluation, measured on the running system

{hardware(args.cloud_device)}. The edge device is emulated {args.edge_slowdown:g}x slower than a
core of this CPU (its compute time is stretched), one torch thread. Cloud: {cloud}. Uplink: {link_description()}, planner told its rate. Light load: closed loop (one frame at a time,
as at the paper's 0.1 fps), median of {frames} frames after a warm one. Heavy load: 20 fps
offered, results per second in steady state over at least {span:g} s. k = cloud workers
(on a CPU cloud the {args.workers} workers of the last columns share this machine's {os.cpu_count()}
cores, so their gain is bounded by the cores, not by the planner).

### End-to-end latency under light load (ms)

{lat}

Cuts are *edge nodes/crossing tensors*: 1/1 is cloud-only (only the input on the edge), N/0 is
edge-only. Where two columns ran the same cut, their difference is the run-to-run spread of the
link and the shared cores, not the planner. On a cloud that is a CPU core (about
{args.edge_slowdown:g}x the emulated edge), the zoo models' intermediate activations are larger
than the uint8 frame, so DSL's best cut is usually one of the two ends; the DAG-only cuts that
give DADS its margin over Neurosurgeon need a cloud that is far faster than the edge (a GPU:
`--cloud-device cuda`) or a slower edge.

![latency]({png})

### Throughput under heavy load (frames/s)

{thr}

### Measured against predicted (light load)

Measured end-to-end latency / the planner's prediction for the same cut (target ≤ 1.10), and
per stage (link+hops: everything that is neither edge nor cloud compute).

{over}
"""
    write_report(text, str(out))


if __name__ == "__main__":
    raise SystemExit(main())
