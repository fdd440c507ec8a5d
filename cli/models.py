"""Models and profiles: `dads profile`, `split-check`, `benchmark`, `codecs`, `train-exits`,
`predict`."""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

from cli.args import add_model_args, check_images, images, served, served_graph
from common.errors import DadsError


def cmd_profile(args: argparse.Namespace) -> int:
    from common.model.plots import LayerRow, plot_profile
    from common.model.profiler import profile_graph
    from common.planning.profile import cache_path

    graph = served(args)
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

    graph = served(args)
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


def cmd_benchmark(args: argparse.Namespace) -> int:
    """Scission's benchmarking step: this machine's profile of the model, named as a tier."""
    from common.model.profiler import profile_graph

    graph = served(args)
    prof = profile_graph(graph, args.device, args.warmup, args.repeats, args.threads)
    out = prof.save(args.out or f"{graph.name}-{args.tier}.json")
    print(f"{graph.name} on {prof.device.name} ({prof.device.kind}, {prof.device.threads} threads): "
          f"{prof.total_s * 1e3:.2f} ms a frame; tier {args.tier!r} profile written to {out}")
    print(f"plan with it: dads plan {graph.name} --tiers ...,{args.tier},... "
          f"--tier-profile {args.tier}={out}")
    return 0


def cmd_codecs(args: argparse.Namespace) -> int:
    from common.model import codecprofile
    from common.planning.units import format_bytes

    check_images(args.images)
    graph = served(args)
    frames = images(args.images, graph, args.limit)
    names = None if args.codecs == "all" else {n.strip() for n in args.codecs.split(",")}
    print(f"{graph.name}: {len(frames)} image(s) from {args.images}; "
          f"{'real weights' if args.weights else 'seeded random weights'}", file=sys.stderr)
    sizes = codecprofile.measure(graph, [(f,) for f in frames[: args.size_frames]], names,
                                 progress=not args.json)
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

    from tqdm import tqdm

    bar = tqdm(total=args.epochs, desc="training digits_exits", unit="epoch")

    def say(epoch: int, epochs: int, loss: float) -> None:
        bar.set_postfix(loss=f"{loss:.3f}")
        bar.update(1)

    try:
        trained = exits.train(epochs=args.epochs, seed=args.seed, log=say)
    finally:
        bar.close()
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
            graph = served_graph(source, seed=args.seed)
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
    graph = served_graph(args.model, seed=args.seed)
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


def _add_profiling_args(p: argparse.ArgumentParser) -> None:
    """How `profile` and `benchmark` measure: the same passes, the same device choice."""
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto (default auto)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    p.add_argument("--warmup", type=int, default=3, help="warm-up passes (default 3)")
    p.add_argument("--repeats", type=int, default=10, help="timed passes (default 10)")


def register(sub: argparse._SubParsersAction, command: str | None) -> None:
    """This group's commands and their options."""
    p = sub.add_parser("profile", help="measure per-layer latency of a model on this device",
                       description="Measure each layer's latency (median of --repeats passes after "
                       "--warmup) and write a profile JSON keyed by model fingerprint and device.")
    add_model_args(p)
    _add_profiling_args(p)
    p.add_argument("--out", metavar="FILE", help="profile JSON (default: the profile cache)")
    p.add_argument("--plot", metavar="DIR", help="also save output-size and latency figures here")
    p.set_defaults(func=cmd_profile)

    p = sub.add_parser("split-check", help="verify that split execution is exact on random cuts",
                       description="Split the model at edge-only, cloud-only and N random valid "
                       "cuts; check that edge part + cloud part reproduce the model's output.")
    add_model_args(p)
    p.add_argument("--cuts", type=int, default=10, help="random cuts to check (default 10)")
    p.add_argument("--tolerance", type=float, default=1e-5,
                   help="max |diff| relative to the output scale (default 1e-5)")
    p.set_defaults(func=cmd_split_check)

    p = sub.add_parser("benchmark", help="profile a model here, as one tier (Scission)",
                       description="Scission's benchmarking step: profile the served model on "
                       "this machine and write it as tier NAME's profile, so several machines "
                       "can each benchmark themselves and one `dads plan --tiers` combines them.")
    add_model_args(p)
    p.add_argument("--tier", required=True, metavar="NAME", help="this machine's tier name")
    _add_profiling_args(p)
    p.add_argument("--out", metavar="FILE", help="profile JSON (default MODEL-TIER.json)")
    p.set_defaults(func=cmd_benchmark)

    p = sub.add_parser("codecs", help="each codec's fidelity on a model, on your images",
                       description="Measure what each lossy codec costs in fidelity: top-1 "
                       "agreement with the lossless pipeline and relative output error, with the "
                       "frame codecs on the input and the activation codecs at --nodes cuts along "
                       "the model. The table (--out) is what `--fidelity top1:0.99` plans with.")
    add_model_args(p)
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
