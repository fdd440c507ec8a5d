"""`make bench`: run the benchmarks and write docs/BENCHMARKS.md from fresh measurements.

    python -m bench.run [--quick] [--only paper,transport] [--out-dir docs]

Each part writes its own report (markdown + plot + raw JSON) in the output folder; BENCHMARKS.md
is assembled from every part report found there, so one part can be re-measured alone. The whole
suite takes about an hour on a 2-core machine; `--quick` runs every part at a smoke-test size in
a few minutes (CI runs it once, asserting nothing about speed).
"""

from __future__ import annotations

import argparse
import importlib
import platform
import sys
import time
from pathlib import Path

from bench.common import DOCS

#: (part, extra arguments of the full run), in the order of the report.
PARTS: list[tuple[str, list[str]]] = [
    ("paper", []),
    ("codecs", []),
    ("edgent", []),
    ("tiers", []),
    ("many_edges", []),
    ("edges_load", []),
    ("predictors", []),
    ("quality", []),
    ("transport", []),
    ("scaling", []),
    ("replan", []),
    ("control", []),
    ("soak", []),
    ("planner_speed", ["--exact"]),
    ("foundations", []),
]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="every part at a smoke-test size")
    ap.add_argument("--only", help=f"comma-separated parts ({', '.join(p for p, _ in PARTS)})")
    ap.add_argument("--out-dir", default=str(DOCS), help="where reports go (default docs/)")
    ap.add_argument("--assemble", action="store_true",
                    help="measure nothing: only rebuild BENCHMARKS.md from the part reports")
    args = ap.parse_args(argv)
    names = [p for p, _ in PARTS]
    chosen = [] if args.assemble else args.only.split(",") if args.only else names
    unknown = set(chosen) - set(names)
    if unknown:
        ap.error(f"unknown part(s) {', '.join(sorted(unknown))}: choose from {', '.join(names)}")
    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, extra in PARTS:
        if name not in chosen:
            continue
        print(f"== bench.{name}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        module = importlib.import_module(f"bench.{name}")
        module.main([*(["--quick"] if args.quick else extra), "--out", str(out_dir / f"{name}.md")])
        print(f"== bench.{name}: {time.monotonic() - t0:.0f} s", file=sys.stderr, flush=True)
    assemble(out_dir, quick=args.quick)
    return 0


def assemble(out_dir: Path, quick: bool = False) -> Path:
    import torch

    from common.model.profiler import _cpu_name

    header = [
        "# Benchmarks",
        "",
        f"Assembled {time.strftime('%Y-%m-%d')} by `make bench{' ARGS=--quick' if quick else ''}` on "
        f"{_cpu_name()} ({torch.get_num_threads()} torch threads), Python "
        f"{platform.python_version()}, torch {torch.__version__}. Every number below is "
        "measured by the scripts in `bench/` (each part says how); none is typed in. Each "
        "part's raw measurements are in the `.json` file beside its report.",
        "",
        "GPU cloud (a worker on a lent GPU): not measured yet; no GPU was lent to the sessions "
        "that wrote this.",
        "",
    ]
    body = [(out_dir / f"{name}.md").read_text() for name, _ in PARTS
            if (out_dir / f"{name}.md").exists()]
    path = out_dir / "BENCHMARKS.md"
    path.write_text("\n".join(header + body))
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    raise SystemExit(main())
