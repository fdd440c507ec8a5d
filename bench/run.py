"""`make bench`: run every benchmark and write docs/BENCHMARKS.md from fresh measurements.

    python -m bench.run [--quick]
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from bench import foundations, planner_speed
from bench.common import DOCS
from common.profiler import _cpu_name


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="a few models only (CI smoke test)")
    args = ap.parse_args(argv)
    quick = ["--quick"] if args.quick else []
    parts = [
        ("foundations.md", lambda: foundations.main([*quick])),
        ("planner_speed.md", lambda: planner_speed.main([*quick, "--exact"])),
    ]
    for _, fn in parts:
        fn()
    header = [
        "# Benchmarks",
        "",
        f"Measured {time.strftime('%Y-%m-%d')} by `make bench{' ARGS=--quick' if quick else ''}` on "
        f"{_cpu_name()} ({torch.get_num_threads()} torch threads), Python "
        f"{platform.python_version()}, torch {torch.__version__}. Every number below is "
        "measured by the scripts in `bench/`; none is typed in.",
        "",
    ]
    body = [(DOCS / name).read_text() for name, _ in parts]
    (DOCS / "BENCHMARKS.md").write_text("\n".join(header + body))
    print(f"wrote {DOCS / 'BENCHMARKS.md'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
