"""`dads`: the command line. Thin: every subcommand parses, calls `common`, prints.

One module per command group, each owning its commands' options: `models` (profiles and
models), `planning`, `control` (the services and `dads ctl`), `admin` (keys, health); `args`
holds what they share."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from cli import admin, control, models, planning
from common.errors import as_command

__all__ = ["main", "build_parser"]

GROUPS = (models, planning, control, admin)

EPILOG = """\
examples:
  dads up --story                               the whole system here, adapting (make demo)
  dads explore                                  profile + plan the default model here (offline)
  dads profile resnet18 --plot plots/           profile on this machine, save figures
  dads split-check googlenet --cuts 20          verify the split on 20 random cuts
  dads costgraph resnet18 --edge E.json --cloud C.json --out costs.json
  dads plan --graph costs.json --bandwidth 4g   the DSL plan at DADS's 4G uplink
  dads plan resnet18 --bandwidth 3mbit --algorithm dsh --workers 4 --json
  dads bwmap googlenet --plot map.png           every bandwidth breakpoint of the DSL plan
  dads plan googlenet --images photos/ --bandwidth 3g   cut and codecs, lossless (bit-exact)
  dads codecs googlenet --images photos/ --out fid.json  each lossy codec's fidelity
  dads predict resnet50 --from alexnet vgg16 googlenet --out r50.json   a profile, unprofiled
  dads train-exits --out digits.pth             a 3-exit CNN on scikit-learn's digits (~1 min)
  dads benchmark resnet18 --tier edge --out edge.json    this machine's profile, as tier "edge"
  dads plan resnet18 --tiers device,edge,cloud --tier-profile edge=edge.json \
       --tier-speedup device=0.1 --tier-speedup cloud=10 --links 3g,wifi --top 10
  dads plan digits_exits --weights digits.pth --bandwidth 3g --latency-goal 200ms --edge-slowdown 100
  dads plan googlenet --images photos/ --bandwidth 3g --fidelity top1:0.99 --fidelity-table fid.json
"""


def _command(argv: Sequence[str]) -> str | None:
    """The subcommand named on the command line (the first word that is not an option)."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The `dads` parser; of the services, only `command`'s options are built (they import torch)."""
    parser = argparse.ArgumentParser(
        prog="dads",
        description="Dynamic Adaptive DNN Surgery: split DNN inference between an edge device "
        "and a pool of cloud workers, at the cut that minimises latency or maximises throughput.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for group in GROUPS:
        group.register(sub, command)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    try:  # a service's options import it (torch: seconds); Ctrl-C then is a stop, not a crash
        args = build_parser(_command(argv)).parse_args(argv)
    except KeyboardInterrupt:
        return 130
    func: Callable[[argparse.Namespace], int] = args.func
    return as_command(f"dads {args.command}", lambda: func(args))



if __name__ == "__main__":
    sys.exit(main())
