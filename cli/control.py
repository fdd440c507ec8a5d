"""The services (`dads broker`, `cloud-worker`, `edge-agent`, `planner`, `up`, `testbed`) and
`dads ctl`, the operator's controls of a running planner."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from cli.args import bandwidth
from common.errors import DadsError

SERVICES: dict[str, tuple[str, str]] = {
    "broker": ("services.broker.service", "run the broker (edges in front, workers behind)"),
    "cloud-worker": ("services.cloud_worker.service", "run a cloud worker"),
    "edge-agent": ("services.edge_agent.service", "run the edge agent"),
    "planner": ("services.planner.service", "run the planner"),
    "up": ("launch.up", "run the whole system on this machine (loopback)"),
    "testbed": ("launch.testbed", "two hosts (netns) with a shaped real link"),
}


def _service_command(module: str) -> Callable[[argparse.Namespace], int]:
    def run(args: argparse.Namespace) -> int:
        import importlib

        return int(importlib.import_module(module).main(args))

    return run


def cmd_ctl(args: argparse.Namespace) -> int:
    """Send an operator control to the planner and wait for its answer: applied (with the plans
    it made), refused (exit 1, with the planner's reason) or unanswered (exit 2, with why)."""
    from common.runtime.operator import ControlRefused, Operator
    from common.runtime.security import from_options
    from common.runtime.wire import Control

    cut: tuple[str, ...] | None = None
    if args.unpin_cut:
        cut = ()
    elif args.pin_cut:
        cut = _cut_file(args.pin_cut)
    goal = None
    if args.latency_goal is not None:
        from common.planning.units import parse_duration

        try:
            goal = 0.0 if args.latency_goal in ("0", "none") else parse_duration(args.latency_goal)
        except ValueError as exc:
            raise DadsError(f"--latency-goal: {exc}") from None
    if args.edge and args.bandwidth is None:
        raise DadsError("--edge sets one edge's --bandwidth; the other controls apply to every "
                        "edge")
    msg = Control(args.bandwidth, args.algorithm, cut, goal, edge=args.edge)
    if msg == Control():
        raise DadsError("nothing to send; give --bandwidth, --algorithm, --latency-goal, "
                        "--pin-cut or --unpin-cut")
    said = []
    if msg.force_bandwidth_bps is not None:
        from common.planning.units import format_bandwidth

        said.append("bandwidth " + (format_bandwidth(msg.force_bandwidth_bps)
                                    if msg.force_bandwidth_bps else "from the probe"))
    if msg.algorithm is not None:
        said.append(f"algorithm {msg.algorithm}")
    if cut is not None:
        said.append(f"cut pinned ({len(cut)} edge nodes)" if cut else "cut unpinned")
    if goal is not None:
        said.append(f"latency goal {goal * 1e3:g} ms" if goal else "no latency goal")
    with Operator(args.planner, from_options(args.keys, args.insecure, "operator")) as op:
        try:
            reply = op.control(msg, args.timeout)
        except ControlRefused as exc:
            print(f"dads ctl: {', '.join(said)}: {exc}", file=sys.stderr)
            return 1
    print(f"{args.planner}: {', '.join(said)}: {reply.detail}")
    for line in reply.plans:
        print(f"  {line}")
    return 0


def _cut_file(path: str) -> tuple[str, ...]:
    """A pinned cut's edge nodes: a JSON list of names, or a plan (`dads plan --json`)."""
    try:
        doc = json.loads(Path(path).read_text())
    except OSError as exc:
        raise DadsError(f"--pin-cut {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise DadsError(f"--pin-cut {path}: not JSON ({exc})") from None
    nodes = doc.get("edge_nodes") if isinstance(doc, dict) else doc
    if not isinstance(nodes, list) or not all(isinstance(n, str) for n in nodes):
        raise DadsError(f"--pin-cut {path}: expected a list of node names or a plan JSON with "
                        "'edge_nodes' (`dads plan MODEL --json`)")
    return tuple(nodes)


def register(sub: argparse._SubParsersAction, command: str | None) -> None:
    """This group's commands and their options."""
    for name, (module, text) in SERVICES.items():
        if name != command:  # listed in --help; its options (and torch) load only when chosen
            sub.add_parser(name, help=text, add_help=False)
            continue
        import importlib

        mod = importlib.import_module(module)
        p = sub.add_parser(name, help=text, description=(mod.__doc__ or text).strip().split("\n\n")[0])
        mod.add_arguments(p)
        p.set_defaults(func=_service_command(module))

    p = sub.add_parser("ctl", help="operator controls for a running planner",
                       description="Force the bandwidth the planner plans for, pin one planner "
                       "algorithm or one exact cut; each setting left out stays as it is.")
    from common.runtime import config

    p.add_argument("--planner", default=config.endpoint("DADS_PLANNER_HOST", "DADS_TELEMETRY_PORT"),
                   help="the planner's telemetry address")
    p.add_argument("--keys", default=config.env("DADS_KEYS") or None, metavar="DIR",
                   help="key directory holding an operator key (env DADS_KEYS)")
    p.add_argument("--insecure", action="store_true", default=config.env("DADS_INSECURE") == "1",
                   help="send in plaintext (a planner run with --insecure)")
    p.add_argument("--bandwidth", type=lambda t: 0.0 if t in ("0", "probe") else bandwidth(t),
                   metavar="RATE", help="a rate, or 'probe' to lift the override")
    from common.planning.partition import ALGORITHMS

    p.add_argument("--edge", default="", metavar="NAME",
                   help="with --bandwidth: for this edge alone (its --name; default every edge)")
    p.add_argument("--algorithm", choices=["auto", *ALGORITHMS],
                   help="plan with this algorithm only ('auto': DSL or DSH by load, the default)")
    pin = p.add_mutually_exclusive_group()
    p.add_argument("--latency-goal", metavar="DURATION",
                   help="an early-exit model's latency goal, e.g. 30ms (0 or none: lift it)")
    pin.add_argument("--pin-cut", metavar="FILE", help="run exactly this cut: a JSON list of the "
                     "served graph's edge node names, or a plan JSON (DESIGN §3) holding them")
    pin.add_argument("--unpin-cut", action="store_true", help="lift a pinned cut")
    p.add_argument("--timeout", type=float, default=config.CONTROL_TIMEOUT_S, metavar="S",
                   help="wait this long for the planner's answer (default "
                   f"{config.CONTROL_TIMEOUT_S:g})")
    p.set_defaults(func=cmd_ctl)
