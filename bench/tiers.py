"""Scission's question: does an edge server between the device and the cloud pay?

    python -m bench.tiers [--quick] [--models a,b] [--device-slowdown 10] [--edge-slowdown 4]
                          [--cloud-speedup 10] [--model alexnet --link1 wifi --link2 5mbit]
                          [--no-measured]

(1) Planned, on the zoo: the best placement over device -> edge server -> cloud (exact: the
layered minimum cut) against the best two-tier one -- device + cloud (the edge server only
forwards: a chain's tensors cross both links) and device + edge server (no cloud) -- for every
pair of link rates. The device is a core of this CPU `--device-slowdown` times slower, the edge
server `--edge-slowdown` times slower (a small box beside the camera), the cloud
`--cloud-speedup` times faster (modelled: no GPU here).
(2) Measured, on the running system over the chain test bed (three network namespaces, both
links shaped by `tc tbf`; root only): one model, the same three placements pinned in turn,
closed-loop latency against the prediction. The cloud there is a core of this CPU, so the
device and the edge server are emulated slower by the same ratios.
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from bench.common import figure, log_dir, markdown_table, parser, save_raw, write_report
from bench.predictors import MODELS, profiles

LINK1 = ["3g", "4g", "wifi", "50mbit", "1gbit"]  # device -> edge server (DADS uplinks, a LAN)
LINK2 = ["5mbit", "10mbit", "50mbit", "200mbit", "1gbit"]  # edge server -> cloud (a backhaul)
TIERS = ("device", "edge", "cloud")
SHAPES = {"3-tier": frozenset(), "device+cloud": frozenset({1}), "device+edge": frozenset({2})}


def problem(graph: Any, profile: Any, speeds: tuple[float, float, float],
            links: tuple[float, float], excluded: frozenset[int] = frozenset()) -> Any:
    """The placement problem of a served model: each tier's times are this profile's / speed."""
    from common.planning import tiers

    times = tuple({v: t / s for v, t in profile.node_times_s.items()} for s in speeds)
    return tiers.TierProblem(graph.dag, TIERS, times, links, excluded=excluded)


def best_of_each(graph: Any, profile: Any, speeds: tuple[float, float, float],
                 links: tuple[float, float]) -> dict[str, Any]:
    from common.planning import tiers

    return {name: tiers.solve(problem(graph, profile, speeds, links, ex))
            for name, ex in SHAPES.items()}


def shape_of(placement: Any) -> str:
    """Which tiers a placement computes on, e.g. "device+edge+cloud"."""
    used = [TIERS[t] for t in range(3) if placement.nodes_on(t) and not
            (t == 0 and len(placement.nodes_on(0)) == 1)]  # the input alone computes nothing
    return "+".join(used) or "device"


def planned(data: dict[str, Any], speeds: tuple[float, float, float]) -> list[dict[str, Any]]:
    from common.planning.units import parse_bandwidth

    out = []
    for model, d in data.items():
        for l1 in LINK1:
            for l2 in LINK2:
                best = best_of_each(d["graph"], d["profile"], speeds,
                                    (parse_bandwidth(l1), parse_bandwidth(l2)))
                two = min(best["device+cloud"].latency_s, best["device+edge"].latency_s)
                out.append({"model": model, "link1": l1, "link2": l2,
                            **{f"{k}_s": p.latency_s for k, p in best.items()},
                            "gain": two / best["3-tier"].latency_s,
                            "shape": min(("device+cloud", "device+edge"),
                                         key=lambda k: best[k].latency_s),
                            "uses": shape_of(best["3-tier"]),
                            "link_bytes": list(best["3-tier"].link_bytes)})
    return out


def measured(data: dict[str, Any], model: str, speeds: tuple[float, float, float], link1: str,
             link2: str, frames: int) -> list[dict[str, Any]]:
    """The three placements pinned in turn on the chain test bed; closed-loop latency.

    The cloud there is a core of this CPU, not `speeds[2]` times one: the run is the planned
    system slowed down by that factor throughout -- every tier's compute and both links (their
    rates divided by it) -- so its placements are the planned ones and so is its prediction,
    times the factor."""
    from bench.live import LIGHT
    from common.planning.units import parse_bandwidth
    from launch.testbed import ChainBed
    from services.edge_agent.results import read_results

    d = data[model]
    best = best_of_each(d["graph"], d["profile"], speeds,
                        (parse_bandwidth(link1), parse_bandwidth(link2)))
    # the cloud is this CPU: the device and the edge server are slower by the same ratios
    device_slow, edge_slow, factor = speeds[2] / speeds[0], speeds[2] / speeds[1], speeds[2]
    live1, live2 = (parse_bandwidth(x) / factor for x in (link1, link2))
    logs = log_dir("tiers")
    out = []
    with ChainBed(logs, tag=f"b{int(time.time()) % 10000}") as bed:
        bed.shape(0, live1)
        bed.shape(1, live2)
        bed.start_tiers(model, list(TIERS), ["--links", f"{live2:.0f}", "--tick", "0.2",
                                             "--initial-bandwidth", f"{live1:.0f}"],
                        {1: ["--slowdown", f"{edge_slow:g}"]})
        results = logs / "device.jsonl"
        device = bed.start_device("device", ["--model", model, "--threads", "1", "--frames", "0",
                                             "--edge-slowdown", f"{device_slow:g}", "--output",
                                             str(results), *LIGHT])
        for name, placement in best.items():
            plan = bed.pin(placement.nodes_on(0), [placement.nodes_on(1)])
            deadline = time.monotonic() + 300
            while True:
                lines = [x for x in read_results(results) if x["plan_id"] == plan["plan_id"]
                         and not x["dropped"]]
                if len(lines) >= frames + 1 or time.monotonic() > deadline:
                    break
                if device.poll() is not None:
                    raise RuntimeError(f"the device's edge agent exited; see {logs}/device.log")
                time.sleep(0.2)
            lat = sorted(x["latency_s"] for x in sorted(lines, key=lambda x: x["frame_id"])[1:])
            out.append({"model": model, "placement": name, "link1": link1, "link2": link2,
                        "slowed": factor, "live_links_bps": [live1, live2],
                        "predicted_s": placement.latency_s * factor,
                        "measured_s": statistics.median(lat) if lat else None,
                        "frames": len(lat), "uses": shape_of(placement),
                        "nodes": [len(placement.nodes_on(t)) for t in range(3)],
                        "link_bytes": list(placement.link_bytes),
                        "workers": sorted({x["worker"] for x in lines})})
            print(f"  measured {name}: {out[-1]['measured_s']} s (predicted "
                  f"{out[-1]['predicted_s']:.3f} s) via {out[-1]['workers']}", file=sys.stderr,
                  flush=True)
    return out


def plot(records: dict[str, Any], path: Path) -> None:
    rows = records["planned"]
    with figure(path, 1, 2, figsize=(11, 4.2)) as (_, (a, b)):
        grid = [[math.exp(statistics.fmean(math.log(r["gain"]) for r in rows
                                           if r["link1"] == l1 and r["link2"] == l2))
                 for l2 in LINK2] for l1 in LINK1]
        im = a.imshow(grid, cmap="viridis", origin="lower")
        a.set_xticks(range(len(LINK2)), LINK2)
        a.set_yticks(range(len(LINK1)), LINK1)
        for i, row in enumerate(grid):
            for j, v in enumerate(row):
                a.text(j, i, f"{v:.2f}x", ha="center", va="center", color="w", fontsize=9)
        a.set(xlabel="edge server -> cloud", ylabel="device -> edge server",
              title="best two-tier / three-tier latency\n(geomean over the models)")
        a.figure.colorbar(im, ax=a)
        models = sorted({r["model"] for r in rows})
        at = [r for r in rows if r["link1"] == "wifi" and r["link2"] == "5mbit"]
        x = range(len(models))
        for k, (name, color) in enumerate(zip(SHAPES, ("C0", "C1", "C2"), strict=True)):
            b.bar([i + (k - 1) * 0.27 for i in x],
                  [next(r[f"{name}_s"] for r in at if r["model"] == m) * 1e3 for m in models],
                  0.27, label=name, color=color)
        b.set_xticks(list(x), models, rotation=30, ha="right")
        b.set(ylabel="planned latency (ms)", yscale="log", title="wifi + 5mbit, per model")
        b.legend()


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "tiers.md")
    ap.add_argument("--quick", action="store_true", help="two models, the measured run short")
    ap.add_argument("--models", default=",".join(MODELS), help="zoo models (default: 8)")
    ap.add_argument("--device-slowdown", type=float, default=10.0, metavar="F",
                    help="the device: a core of this CPU F times slower (default 10)")
    ap.add_argument("--edge-slowdown", type=float, default=4.0, metavar="F",
                    help="the edge server: a core of this CPU F times slower (default 4)")
    ap.add_argument("--cloud-speedup", type=float, default=10.0, metavar="F",
                    help="the cloud: F times faster than a core of this CPU (default 10)")
    ap.add_argument("--model", default="alexnet", help="the measured run's model (alexnet)")
    ap.add_argument("--link1", default="wifi", help="the measured run's device link (wifi)")
    ap.add_argument("--link2", default="5mbit", help="the measured run's backhaul (5mbit)")
    ap.add_argument("--frames", type=int, default=15, help="answers per measured case (15)")
    ap.add_argument("--no-measured", action="store_true", help="plan only (no test bed)")
    args = ap.parse_args(argv)
    from launch import testbed

    models = ["alexnet", "googlenet"] if args.quick else args.models.split(",")
    if args.model not in models and not args.no_measured:
        models.append(args.model)
    speeds = (1.0 / args.device_slowdown, 1.0 / args.edge_slowdown, args.cloud_speedup)
    data = profiles(models, "cpu", 1)
    plan_rows = planned(data, speeds)
    live = not args.no_measured and testbed.available()
    meas = measured(data, args.model, speeds, args.link1, args.link2,
                    4 if args.quick else args.frames) if live else []
    out = Path(args.out)
    png = save_raw({"planned": plan_rows, "measured": meas}, out, plot)
    wins = [r for r in plan_rows if r["gain"] > 1.0 + 1e-9]
    split = [r for r in plan_rows if r["uses"].endswith("edge+cloud")]
    fixed = {k: math.exp(statistics.fmean(math.log(r[f"{k}_s"] / r["3-tier_s"]) for r in plan_rows))
             for k in ("device+cloud", "device+edge")}
    pairs = [(l1, l2) for l1 in LINK1 for l2 in LINK2]
    geo = {p: math.exp(statistics.fmean(math.log(r["gain"]) for r in plan_rows
                                        if (r["link1"], r["link2"]) == p)) for p in pairs}
    shapes = {p: "{} / {}".format(*(sum(1 for r in plan_rows if (r["link1"], r["link2"]) == p
                                        and r["shape"] == k) for k in ("device+cloud", "device+edge")))
              for p in pairs}
    per_model = [[r["model"], f"{r['3-tier_s'] * 1e3:.1f}", f"{r['device+cloud_s'] * 1e3:.1f}",
                  f"{r['device+edge_s'] * 1e3:.1f}", f"{r['gain']:.2f}x", r["uses"]]
                 for r in plan_rows if (r["link1"], r["link2"]) == ("wifi", "5mbit")]
    meas_rows = [[r["placement"], r["uses"], "/".join(map(str, r["nodes"])),
                  " / ".join(f"{b / 1e3:.0f} kB" for b in r["link_bytes"]),
                  f"{r['predicted_s'] * 1e3:.0f}",
                  f"{r['measured_s'] * 1e3:.0f}" if r["measured_s"] else "-", r["frames"],
                  ", ".join(r["workers"])] for r in meas]
    text = f"""## Three tiers (Scission): device -> edge server -> cloud

Device: a core of this CPU {args.device_slowdown:g}x slower; edge server: {args.edge_slowdown:g}x
slower; cloud: {args.cloud_speedup:g}x faster (modelled). Profiles measured here (served models: uint8
frames in). Two-tier baselines on the same chain: device + cloud (the edge server forwards
only, so a tensor crosses both links) and device + edge server (no cloud). Each is the exact
optimum of its shape (the layered minimum cut, `common.planning.tiers`).

### Planned, {len(models)} models x {len(pairs)} link pairs

The three-tier placement beats the best two-tier one in {len(wins)} of {len(plan_rows)} cases
(by up to {max(r["gain"] for r in plan_rows):.2f}x) and computes on both the edge server and the
cloud in {len(split)}. Against a fixed two-tier deployment it gains {fixed["device+cloud"]:.2f}x
over device + cloud and {fixed["device+edge"]:.2f}x over device + edge server (geometric means
over every model and link pair): mostly by choosing, per link pair, where the model runs.

Why so rarely split: a camera frame crosses as uint8, smaller than almost every activation
(fp32, and wider early on), so a cut inside the model seldom sends less than the frame; where
one does (alexnet's convolutional features, 37 kB against a 151 kB frame) and the backhaul is
slow, the edge server computes up to it and the cloud does the rest. Codecs (docs/codecs.md)
change that balance; plans over tiers do not use them yet.

Geometric mean over the models of (best two-tier latency / three-tier latency):

{markdown_table(["device -> edge", *LINK2], [[l1, *(f"{geo[(l1, l2)]:.2f}x" for l2 in LINK2)] for l1 in LINK1])}

Which two-tier shape is the better one, per link pair (of {len(models)} models: device + cloud /
device + edge server) -- the choice a fixed two-tier deployment cannot make:

{markdown_table(["device -> edge", *LINK2], [[l1, *(shapes[(l1, l2)] for l2 in LINK2)] for l1 in LINK1])}

Per model at wifi + 5mbit (ms):

{markdown_table(["model", "3-tier", "device+cloud", "device+edge", "gain", "3-tier computes on"], per_model)}

### Measured over the chain test bed

{f"{args.model}, the planned system at {args.link1} + {args.link2} slowed down "
 f"{args.cloud_speedup:g}x throughout (the cloud here is a core of this CPU, not "
 f"{args.cloud_speedup:g}x one): the edge server and the device emulated "
 f"{args.cloud_speedup * args.edge_slowdown:g}x and {args.cloud_speedup * args.device_slowdown:g}x "
 f"slower, the links shaped to 1/{args.cloud_speedup:g} of their rates (`tc tbf` on veth pairs "
 "between three network namespaces). So the placements are the planned ones and the "
 f"predictions {args.cloud_speedup:g}x the planned latencies. Closed loop, median of the "
 "answers after a warm one. The device's emulation is the least faithful part: its real "
 "compute, stretched 100x, is stretched with whatever the other services' threads cost it on "
 "this 2-core machine." if meas else
 "Not run (needs root for the test bed, or `--no-measured`)."}

{markdown_table(["placement", "computes on", "nodes per tier", "bytes per link", "predicted ms",
                 "measured ms", "answers", "through"], meas_rows) if meas else ""}

![tiers]({png})
"""
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
