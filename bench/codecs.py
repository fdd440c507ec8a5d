"""Codec-aware plans against raw ones: the cut and the encoding of every crossing tensor.

    python -m bench.codecs [--quick] [--models a,b] [--uplinks cat1,3g,4g,wifi] [--live MODEL]

Per zoo model, as the services serve it (uint8 camera frames in): codec sizes and encode times
measured on real photographs (scikit-image's bundled samples, and crops of them) on this CPU,
stretched `--edge-slowdown` times for the edge; each lossy codec's fidelity (`dads codecs`: top-1
agreement with the lossless pipeline, relative output error) on the same photographs. Then, per
uplink and cloud (a CPU-like cloud `--cloud-speedup` times faster than this core, and a modelled
GPU cloud `--gpu-speedup` times faster; codecs decode on the cloud's CPU, at this core's speed),
the DSL plan (light-load latency) and the DSH plan (k = 1 throughput) under four policies: raw
(today's plans), lossless (bit-exact results), a 99% top-1 agreement budget, and any codec.
The tables are planned (the planner's predictions on measured costs); `--live MODEL` (default
googlenet) then runs DSL under the raw, lossless and 99%-budget policies on the real services,
over the test bed's shaped link where this process may build it (root), with the photographs as
the camera: measured latency, and every lossless result checked bit-exact against raw.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

from bench.common import figure, markdown_table, parser, save_raw, write_report
from common.planning.units import PRESETS

MODELS = ["alexnet", "vgg16", "resnet18", "googlenet", "inception_v3", "mobilenet_v2",
          "densenet121", "resnet50"]
POLICIES = {"raw": ("none", "lossless"), "lossless": ("auto", "lossless"),
            "top1≥99%": ("auto", "top1:0.99"), "any": ("auto", "any")}
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "hubble_deep_field",
          "immunohistochemistry", "retina")


def sample_photos(folder: Path, count: int) -> Path:
    """Real photographs that ship inside a package (scikit-image's samples): each whole, then
    its quadrants, then its ninths, until `count` images (at most 98) are written."""
    import skimage.data
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    crops = [(k, y, x) for k in (1, 2, 3) for y in range(k) for x in range(k)]
    n = 0
    for k, y, x in crops:
        for name in PHOTOS:
            if n >= count:
                return folder
            img = getattr(skimage.data, name)()
            h, w = img.shape[:2]
            img = img[y * h // k:(y + 1) * h // k, x * w // k:(x + 1) * w // k, :3]
            Image.fromarray(img).save(folder / f"{n:03d}-{name}-{k}{y}{x}.png")
            n += 1
    return folder


def measure_model(model: str, photos: Path, size_frames: int, fid_frames: int,
                  nodes: int) -> dict[str, Any]:
    """The served model's graph, its CPU profile with codecs, and the fidelity table."""
    import itertools

    import torch

    from common.model import codecprofile
    from common.model.graph import trace
    from common.model.models import input_shape_for, load_served, synthetic_frame
    from common.model.profiler import cached_profile
    from services.edge_agent.sources import open_source

    t0 = time.perf_counter()
    shape = input_shape_for(model)
    graph = trace(load_served(model), synthetic_frame(0, shape), name=model)
    threads = torch.get_num_threads()
    profile = cached_profile(graph, "cpu", threads=1, progress=False, repeats=3, warmup=1)
    torch.set_num_threads(threads)  # one core is the edge; the rest only measures fidelity
    frames = list(itertools.islice(open_source(str(photos), shape), max(size_frames, fid_frames)))
    table = codecprofile.measure(graph, [(f,) for f in frames[:size_frames]])
    fid = codecprofile.fidelity(graph, frames[:fid_frames], nodes=nodes)
    print(f"  {model}: {len(graph)} nodes, codecs and fidelity in {time.perf_counter() - t0:.0f} s",
          file=sys.stderr, flush=True)
    return {"graph": graph, "profile": replace(profile, codecs=table), "fidelity": fid}


def cost_graph(measured: dict[str, Any], slowdown: float, speedup: float):  # -> nx.DiGraph
    from common.planning import costgraph
    from common.planning.profile import scaled

    profile = measured["profile"]
    edge = scaled(profile, 1.0 / slowdown)
    cloud = scaled(profile, speedup)
    cloud = replace(cloud, codecs=profile.codecs)  # decoding runs on the cloud's CPU, not its GPU
    return costgraph.build(measured["graph"].dag, edge, cloud)


def plan_cases(model: str, measured: dict[str, Any], uplinks: list[str], clouds: dict[str, float],
               slowdown: float) -> list[dict[str, Any]]:
    from common.codec.codecs import NAMES
    from common.planning import costgraph, dag, fidelity, partition
    from common.planning.mincut import CutSolver
    from common.planning.units import parse_bandwidth

    out = []
    for cloud_name, speedup in clouds.items():
        g = cost_graph(measured, slowdown, speedup)
        inputs = set(g.graph["inputs"])
        for policy, (wanted, budget) in POLICIES.items():
            names = fidelity.select(costgraph.codec_names(g), costgraph.codec_names(g, lossy=True),
                                    fidelity.parse_codecs(wanted, NAMES), fidelity.parse(budget),
                                    measured["fidelity"], g.graph["fingerprint"])
            solver = CutSolver(g, names)
            for uplink in uplinks:
                bw = parse_bandwidth(uplink)
                light = partition.dsl(g, bw, codecs=names, solver=solver)
                heavy = partition.dsh(g, bw, codecs=names, solver=solver)
                edge = set(light.edge_nodes)
                kind = ("edge-only" if not light.transfer else
                        "cloud-only" if edge == inputs else
                        "multi-tensor" if len(light.transfer) > 1 else "intermediate")
                out.append({
                    "model": model, "cloud": cloud_name, "policy": policy, "uplink": uplink,
                    "latency_s": light.predicted.latency_s, "cut": kind,
                    "edge_nodes": len(edge), "tensors": len(light.transfer),
                    "transfer_bytes": light.transfer_bytes,
                    "codecs": sorted({c for c in light.codecs.values() if c != "raw"}),
                    "dsh_fps": heavy.predicted.throughput_fps,
                    "raw_bytes": sum(g.nodes[v]["output_bytes"]
                                     for v in dag.transfer(g, frozenset(edge))),
                })
    return out


def digits_accuracy(epochs: int = 20) -> list[dict[str, Any]]:
    """Real accuracy under each codec: digits_exits trained here, its test split with labels;
    a frame codec on each frame, an activation codec on each block's output in turn (worst)."""

    from common.codec import codecs
    from common.model import codecprofile, exits
    from common.model.graph import trace
    from common.model.models import Preprocess

    trained = exits.train(epochs=epochs)
    model = exits.DigitsExits()
    model.load_state_dict(trained.state_dict)
    served = Preprocess(model).eval()
    frames, labels = exits.digits_frames()
    _, test = exits.split_indices(len(labels))
    graph = trace(served, frames[:1], "digits_exits")
    blocks = [v for v in graph.nodes if v.endswith(("block1_3", "block2_3", "block3_3"))]
    rows = []
    for codec in [codecs.get(codecs.RAW), *(c for c in codecs.CODECS.values()
                                           if c.name != codecs.RAW)]:
        cuts = graph.inputs if codec.image or codec.name == codecs.RAW else blocks
        worst = None
        for node in cuts:
            if not codec.applies(graph.nodes[node].spec.dtype, graph.nodes[node].spec.shape):
                continue
            right = [0, 0, 0]
            for i in test.tolist():
                outs = codecprofile.run_with_codec(graph, node, codec, (frames[i:i + 1],))
                for k, o in enumerate(outs):
                    right[k] += int(o.argmax() == labels[i])
            acc = [r / len(test) for r in right]
            worst = acc if worst is None or acc[2] < worst[2] else worst
        if worst is not None:
            rows.append({"codec": codec.name, "lossy": codec.lossy, "cuts": len(cuts),
                         "accuracy": worst})
    print(f"  digits_exits accuracy under each codec on {len(test)} test digits",
          file=sys.stderr, flush=True)
    return rows


def measure_live(model: str, photos: Path, table: dict[str, Any], uplinks: list[str],
                 slowdown: float, frames: int) -> list[dict[str, Any]]:
    """DSL under raw, lossless and the 99% budget on the running services, photos as camera."""
    import json

    from bench.common import log_dir
    from bench.live import LIGHT, Live

    logs = log_dir("codecs")
    fid = logs / "fidelity.json"
    fid.write_text(json.dumps(table))
    out: list[dict[str, Any]] = []
    for policy in ("raw", "lossless", "top1≥99%"):
        wanted, budget = POLICIES[policy]
        args = ["--tick", "0.2", "--codecs", wanted, "--fidelity", budget,
                "--fidelity-table", str(fid)]
        with Live(model, logs / policy.replace("≥", "-"), slowdown, planner_args=args) as live:
            for uplink in uplinks:
                live.set_uplink(uplink)
                with live.edge([*LIGHT, "--source", str(photos), "--loop",
                                "--want-output"]) as edge:
                    plan = live.pin("dsl")
                    m = edge.latency(plan, frames)
                p = plan.predicted
                out.append({"model": model, "policy": policy, "uplink": uplink,
                            "link": live.link, "latency_s": m.latency_s,
                            "predicted_s": p.latency_s, "codecs": plan.codecs,
                            "edge_nodes": len(plan.edge_nodes), "tensors": len(plan.transfer),
                            "transfer_bytes": plan.transfer_bytes,
                            "outputs": {str(x["frame_id"]): x["output"] for x in m.lines}})
                print(f"  live {model} {uplink} {policy}: {m.latency_s * 1e3:.0f} ms (predicted "
                      f"{p.latency_s * 1e3:.0f} ms), {plan.codecs}", file=sys.stderr, flush=True)
    return out


def live_table(records: list[dict[str, Any]]) -> str:
    rows = []
    for r in records:
        raw = _get(records, model=r["model"], uplink=r["uplink"], policy="raw")
        same = [f for f in r["outputs"] if raw and f in raw["outputs"]]
        exact = ("-" if r["policy"] != "lossless" or not same else
                 "yes" if all(r["outputs"][f] == raw["outputs"][f] for f in same) else "NO")
        codecs = sorted({c for c in r["codecs"].values() if c != "raw"}) or ["raw"]
        rows.append([r["model"], r["uplink"], r["policy"], f"{r['predicted_s'] * 1e3:.0f}",
                     f"{r['latency_s'] * 1e3:.0f}" if r["latency_s"] else "-",
                     f"{raw['latency_s'] / r['latency_s']:.2f}x" if raw and r["latency_s"] else "-",
                     f"{r['edge_nodes']}/{r['tensors']}", ", ".join(codecs),
                     r["transfer_bytes"], exact])
    return markdown_table(["model", "uplink", "policy", "predicted ms", "measured ms",
                           "raw / policy (measured)", "cut", "codecs", "bytes sent",
                           "bit-exact vs raw"], rows)


def _get(records: list[dict[str, Any]], **keys: Any) -> dict[str, Any] | None:
    return next((r for r in records if all(r.get(k) == v for k, v in keys.items())), None)


def tables(records: list[dict[str, Any]], fidelity: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    clouds = list(dict.fromkeys(r["cloud"] for r in records))
    models = list(dict.fromkeys(r["model"] for r in records))
    uplinks = list(dict.fromkeys(r["uplink"] for r in records))
    for cloud in clouds:
        rows = []
        for model in models:
            for up in uplinks:
                raw, ll, top, anyc = (_get(records, model=model, cloud=cloud, uplink=up, policy=p)
                                      for p in POLICIES)
                if raw is None:
                    continue
                row = [model, up]
                for r in (raw, ll, top, anyc):
                    row.append(f"{r['latency_s'] * 1e3:.0f}" if r else "-")
                row += [f"{raw['latency_s'] / ll['latency_s']:.2f}x" if ll else "-",
                        f"{raw['latency_s'] / top['latency_s']:.2f}x" if top else "-",
                        f"{top['cut']} {','.join(top['codecs']) or 'raw'}" if top else "-",
                        f"{raw['dsh_fps']:.2f} / {top['dsh_fps']:.2f}" if top else "-"]
                rows.append(row)
        out[cloud] = markdown_table(
            ["model", "uplink", "raw ms", "lossless ms", "top1≥99% ms", "any ms",
             "raw / lossless", "raw / top1≥99%", "top1≥99% cut, codecs", "DSH fps raw / top1≥99%"],
            rows)
    summary = []
    for cloud in clouds:
        for policy in POLICIES:
            rs = [r for r in records if r["cloud"] == cloud and r["policy"] == policy]
            ratios = [_get(records, model=r["model"], cloud=cloud, uplink=r["uplink"],
                           policy="raw")["latency_s"] / r["latency_s"] for r in rs]
            mid = [r for r in rs if r["cut"] in ("intermediate", "multi-tensor")]
            slow = [x for r, x in zip(rs, ratios, strict=True) if r["uplink"] in ("3g", "4g")]
            summary.append([cloud, policy, len(rs), len(mid),
                            sum(r["cut"] == "multi-tensor" for r in rs),
                            f"{statistics.geometric_mean(ratios):.2f}x" if ratios else "-",
                            f"{min(ratios):.2f}x" if ratios else "-",
                            f"{sum(x >= 3 for x in slow)}/{len(slow)}"])
    out["summary"] = markdown_table(
        ["cloud", "policy", "cases", "intermediate cut wins", "of them multi-tensor",
         "raw / policy latency (geomean)", "worst", "≥ 3x at 3G and 4G"], summary)
    fid_rows = []
    for model, table in fidelity.items():
        for name, row in sorted(table["codecs"].items()):
            fid_rows.append([model, name, "yes" if row["lossy"] else "no",
                             f"{row['top1_agreement']:.1%}", f"{row['rel_error']:.2e}",
                             len(row["cuts"])])
    out["fidelity"] = markdown_table(["model", "codec", "lossy", "top-1 agreement (worst cut)",
                                      "relative error (worst)", "cuts measured"], fid_rows)
    return out


def plot(records: list[dict[str, Any]], path: Path) -> None:
    clouds = list(dict.fromkeys(r["cloud"] for r in records))
    models = list(dict.fromkeys(r["model"] for r in records))
    uplinks = [u for u in ("3g", "4g") if any(r["uplink"] == u for r in records)] or \
        list(dict.fromkeys(r["uplink"] for r in records))[:2]
    panels = [(c, u) for c in clouds for u in uplinks]
    with figure(path, 1, len(panels), figsize=(4.6 * len(panels), 4), squeeze=False) as (_, axes):
        width = 0.2
        for ax, (cloud, up) in zip(axes[0], panels, strict=True):
            for j, policy in enumerate(POLICIES):
                vals = [(_get(records, model=m, cloud=cloud, uplink=up, policy=policy) or
                         {"latency_s": 0})["latency_s"] * 1e3 for m in models]
                ax.bar([i + (j - 1.5) * width for i in range(len(models))], vals, width,
                       label=policy)
            ax.set_xticks(range(len(models)), models, rotation=45, ha="right")
            ax.set(yscale="log", title=f"{cloud} cloud, {up}", ylabel="DSL latency (ms)")
        axes[0][0].legend(fontsize=8)


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "codecs.md")
    ap.add_argument("--quick", action="store_true", help="two models, fewer photos")
    ap.add_argument("--models", help=f"comma-separated (default: {','.join(MODELS)})")
    ap.add_argument("--uplinks", help=f"comma-separated (default: {','.join(PRESETS)})")
    ap.add_argument("--edge-slowdown", type=float, default=10.0, metavar="F",
                    help="the edge is one core of this CPU F times slower (default 10)")
    ap.add_argument("--cloud-speedup", type=float, default=10.0, metavar="F",
                    help="the CPU-like cloud: F times faster than this core (default 10)")
    ap.add_argument("--gpu-speedup", type=float, default=100.0, metavar="F",
                    help="the modelled GPU cloud: F times faster than this core (default 100)")
    ap.add_argument("--photos", type=int, default=16, help="photographs for fidelity (16)")
    ap.add_argument("--nodes", type=int, default=6, help="cuts per activation codec (6)")
    ap.add_argument("--live", default="googlenet", metavar="MODEL",
                    help="measure this model's plans on the running services (default googlenet; "
                    "'none' to skip)")
    ap.add_argument("--live-uplinks", default="3g,4g", metavar="LIST",
                    help="uplinks of the live run (default 3g,4g)")
    args = ap.parse_args(argv)
    models = args.models.split(",") if args.models else (
        ["alexnet", "googlenet"] if args.quick else MODELS)
    uplinks = args.uplinks.split(",") if args.uplinks else list(PRESETS)
    photos_n, nodes = (6, 3) if args.quick else (args.photos, args.nodes)
    clouds = {"CPU-like": args.cloud_speedup, "GPU (modelled)": args.gpu_speedup}
    photos = sample_photos(Path(tempfile.mkdtemp(prefix="dads-photos-")), 98)
    records: list[dict[str, Any]] = []
    fidelity: dict[str, Any] = {}
    live: list[dict[str, Any]] = []
    digits = digits_accuracy(epochs=6 if args.quick else 20)
    for model in models:
        measured = measure_model(model, photos, 4, photos_n, nodes)
        fidelity[model] = measured["fidelity"]
        records += plan_cases(model, measured, uplinks, clouds, args.edge_slowdown)
        report(records, fidelity, live, digits, args, photos_n, Path(args.out))
    if args.live != "none":
        table = fidelity.get(args.live) or measure_model(
            args.live, photos, 4, photos_n, nodes)["fidelity"]
        frames = 2 if args.quick else 3
        uplinks = ["3g"] if args.quick else args.live_uplinks.split(",")
        live = measure_live(args.live, photos, table, uplinks, args.edge_slowdown, frames)
        report(records, fidelity, live, digits, args, photos_n, Path(args.out))
    return 0


def report(records: list[dict[str, Any]], fidelity: dict[str, Any], live: list[dict[str, Any]],
           digits: list[dict[str, Any]], args: argparse.Namespace, photos: int,
           out: Path) -> None:
    png = save_raw({"plans": records, "fidelity": fidelity, "live": live, "digits": digits}, out,
                   lambda d, p: plot(d["plans"], p))
    digits_table = markdown_table(
        ["codec", "lossy", "cuts tried", "exit 1", "exit 2", "exit 3 (final)"],
        [[r["codec"], "yes" if r["lossy"] else "no", r["cuts"],
          *(f"{a:.1%}" for a in r["accuracy"])] for r in digits])
    t = tables(records, fidelity)
    live_part = "" if not live else f"""
### Measured on the running services

{live[0]["model"]}, DSL pinned, light load (closed loop, median of the frames after a warm one),
the photographs as the camera, the uplink {live[0]["link"]}. The edge is emulated
{args.edge_slowdown:g}x slower than a core of this CPU, the worker is this CPU: the CPU-like
regime. Bit-exact: every lossless result equals the raw plan's, element for element.

{live_table(live)}
"""
    per_cloud = "\n\n".join(f"#### {cloud} cloud\n\n{table}" for cloud, table in t.items()
                            if cloud not in ("summary", "fidelity"))
    text = f"""## Codec-aware plans: the cut and every crossing tensor's encoding together

Planned with the project's planner on measured costs: the served models (uint8 frames in),
per-node times profiled on one core of this CPU, the edge {args.edge_slowdown:g}x slower; codec
sizes measured on real photographs (scikit-image's bundled samples), encode times on this core
stretched like the edge, decode at this core's speed on the cloud. Clouds: CPU-like
({args.cloud_speedup:g}x this core) and a modelled GPU ({args.gpu_speedup:g}x; no GPU was lent:
a uniform speedup, not a measured one). Policies: raw (the plans before codecs), lossless
(PNG frames, zstd activations: bit-exact results), top1≥99% (lossy codecs whose top-1
agreement with the lossless pipeline is at least 99% at every cut measured, on {photos}
photographs), any (every codec). Latency is DSL's (light load), throughput DSH's with one
worker.

### How often each policy wins, and by how much

{t["summary"]}

### Per model and uplink (DSL latency, ms)

{per_cloud}

![latency]({png})

### Fidelity of each codec (`dads codecs`, {photos} photographs)

Seeded random weights: the classes a random model picks barely depend on the picture, so top-1
agreement is a weak signal here (it reads high); the relative output error is the stronger one.
With real weights (`--weights`), `dads codecs` measures the real model.

{t["fidelity"]}

### Real accuracy under each codec (a trained model)

`digits_exits` trained here on scikit-learn's digits (seeded 80/20 split); accuracy of each exit
against the labels of the held-out digits, with a frame codec on every frame, or an activation
codec on each block's output in turn (the cut that loses most is shown). Raw is the baseline.
Unlike the seeded zoo models above, these are real accuracies.

{digits_table}
{live_part}"""
    write_report(text, str(out))


if __name__ == "__main__":
    raise SystemExit(main())
