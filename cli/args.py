"""What several command groups share: model and cost-graph options, the served graph, the
rate and byte parsers."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from common.errors import DadsError

DEFAULT_MODEL = "googlenet"
DEFAULT_CLOUD_SPEEDUP = 10.0


def shape(text: str) -> tuple[int, ...]:
    try:
        dims = tuple(int(d) for d in text.replace("x", ",").split(",") if d)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1,3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise argparse.ArgumentTypeError(f"{text!r} is not a shape like 1,3,224,224")
    return dims


def add_model_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="a torchvision model name (e.g. resnet18) or package.module:factory")
    p.add_argument("--weights", metavar="PATH", help="load real weights from a local .pth "
                   "(default: random weights from --seed)")
    p.add_argument("--seed", type=int, default=0, help="seed of the random weights (default 0)")
    p.add_argument("--input-shape", type=shape, metavar="N,C,H,W",
                   help="example input shape (default: the model's natural one, batch 1)")


def bandwidth(text: str) -> float:
    from common.planning.units import parse_bandwidth

    try:
        return parse_bandwidth(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_costs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", nargs="?", help="a model (as for `dads profile`), when no --graph")
    p.add_argument("--graph", metavar="COSTS.json", help="a cost graph (DESIGN §3) to plan on")
    p.add_argument("--weights", metavar="PATH", help="local .pth weights of the model")
    p.add_argument("--seed", type=int, default=0, help="seed of random weights (default 0)")
    p.add_argument("--input-shape", type=shape, metavar="N,C,H,W", help="example input shape")
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
    p.add_argument("--input-bytes", type=input_bytes, metavar="N|frame",
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


def input_bytes(text: str) -> int | str:
    if text == "frame":
        return text
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("a number of bytes, or 'frame'") from None


def resolve_input_bytes(value: int | str | None, graph) -> int | None:
    """'frame': the input sent as a uint8 frame, one byte per element of the input tensor."""
    if value != "frame":
        return value  # type: ignore[return-value]
    numel = 1
    for d in graph.example_inputs[0].shape:
        numel *= d
    return numel


def costs(args: argparse.Namespace):  # -> nx.DiGraph
    from common.planning import costgraph
    from common.planning.profile import Profile, scaled

    if args.graph:
        if args.model:
            raise DadsError("give a model or --graph, not both")
        return costgraph.load(args.graph)
    if not args.model:
        raise DadsError("say what to plan: a model name, or --graph COSTS.json")
    policy(args)  # a policy that cannot be used, said before the model is profiled
    check_images(args.images)
    from common.model.profiler import cached_profile

    graph = served(args)  # what the services run: one graph, one set of names, one profile
    edge = Profile.load(args.edge_profile) if args.edge_profile else cached_profile(graph, "cpu")
    if args.images:
        edge = with_codecs(args, graph, edge)
    if args.edge_slowdown != 1.0:
        edge = scaled(edge, 1.0 / args.edge_slowdown)
    if args.cloud_profile:
        cloud = Profile.load(args.cloud_profile)
    else:
        cloud = scaled(edge, args.cloud_speedup)
        print(f"note: no --cloud-profile, the cloud is modelled as {args.cloud_speedup:g}x "
              "faster than this machine", file=sys.stderr)
    return costgraph.build(graph.dag, edge, cloud, resolve_input_bytes(args.input_bytes, graph))


def with_codecs(args: argparse.Namespace, graph, profile):  # -> Profile
    """`profile` with each node's codecs measured on --images (sizes; encode and decode times
    on this machine)."""
    from dataclasses import replace

    from common.model import codecprofile

    frames = images(args.images, graph, args.codec_frames)
    print(f"note: codecs measured on {len(frames)} image(s) of {args.images}", file=sys.stderr)
    return replace(profile, codecs=codecprofile.measure(graph, [(f,) for f in frames],
                                                        progress=True))


def has_exits(args: argparse.Namespace) -> bool:
    from common.model.exits import load_accuracy

    return bool(getattr(args, "weights", None) and load_accuracy(args.weights))


def served(args: argparse.Namespace):  # -> ModelGraph of the model as the services run it
    """The model the options name (MODEL, --weights, --seed, --input-shape), as served."""
    return served_graph(args.model, args.weights, args.seed, args.input_shape)


def served_graph(model: str, weights: str | None = None, seed: int = 0,
                 shape: tuple[int, ...] | None = None):  # -> ModelGraph
    """The model as the services run it (uint8 frames in), its early exits marked: the one
    graph every command plans, profiles and prints."""
    from common.model.exits import load_accuracy, mark_exits
    from common.model.graph import trace
    from common.model.models import input_shape_for, load_served, synthetic_frame

    shape = shape or input_shape_for(model)
    if len(shape) != 4 or shape[1] != 3:
        raise DadsError(f"--input-shape {','.join(map(str, shape))}: the model is served camera "
                        "frames, N,3,H,W (uint8 RGB), e.g. 1,3,224,224")
    graph = trace(load_served(model, weights, seed), synthetic_frame(0, shape), name=model)
    mark_exits(graph.dag, graph.outputs, load_accuracy(weights))
    return graph


def check_images(folder: str | None) -> None:
    """--images said wrong before a model loads: a folder that is not there."""
    if folder and not Path(folder).is_dir():
        raise DadsError(f"--images {folder}: no such folder (a folder of photos from your "
                        "cameras)")


def images(folder: str, graph, limit: int) -> list:  # -> list[torch.Tensor] frames
    import itertools

    from services.edge_agent.sources import open_source

    shape = tuple(graph.example_inputs[0].shape)
    frames = list(itertools.islice(open_source(folder, shape), max(1, limit)))
    if not frames:
        raise DadsError(f"no images in {folder}")
    return frames


def policy(args: argparse.Namespace):  # -> (fidelity.Budget, the --codecs wanted)
    """--fidelity and --codecs, checked before any work: a policy that would plan otherwise
    than asked is refused (`fidelity.check`)."""
    from common.codec import codecs
    from common.planning import fidelity

    budget, wanted = fidelity.parse(args.fidelity), fidelity.parse_codecs(args.codecs, codecs.NAMES)
    fidelity.check(budget, wanted, bool(args.fidelity_table), codecs.LOSSY)
    return budget, wanted


def codec_policy(args: argparse.Namespace, g) -> frozenset[str]:
    """The codecs `dads plan` may use: the ones the cost graph lists, as the flags allow."""
    from common.planning import costgraph, fidelity

    budget, wanted = policy(args)
    table = fidelity.load_table(args.fidelity_table) if args.fidelity_table else None
    if table and table.get("fingerprint") != g.graph.get("fingerprint"):
        print(f"warning: {args.fidelity_table} was measured on another model (or weights): "
              "no lossy codec is admitted by it", file=sys.stderr)
    return fidelity.select(costgraph.codec_names(g), costgraph.codec_names(g, lossy=True),
                           wanted, budget, table,
                           g.graph.get("fingerprint"))


def pairs(items: list[str] | None, what: str) -> dict[str, str]:
    out = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise DadsError(f"{what} {item!r}: expected NAME=VALUE")
        out[key] = value
    return out


def byte_count(text: str) -> int:
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
