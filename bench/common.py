"""Shared helpers of the benchmark scripts: cost graphs of zoo models, timing, tables."""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import networkx as nx

DOCS = Path(__file__).resolve().parent.parent / "docs"


def zoo_costs(name: str, cloud_speedup: float = 10.0, repeats: int = 3) -> tuple[nx.DiGraph, float]:
    """The cost graph of a zoo model: measured here (cached), cloud modelled as faster.

    Returns the graph and the seconds spent building it (trace + profile when not cached).
    """
    from common.model.graph import trace
    from common.model.models import example_input, load_model
    from common.model.profiler import cached_profile
    from common.planning import costgraph
    from common.planning.profile import scaled

    t0 = time.perf_counter()
    graph = trace(load_model(name), example_input(name), name)
    edge = cached_profile(graph, "cpu", progress=False, repeats=repeats, warmup=1)
    numel = 1
    for d in graph.example_inputs[0].shape:
        numel *= d
    g = costgraph.build(graph.dag, edge, scaled(edge, cloud_speedup), input_bytes=numel)
    return g, time.perf_counter() - t0


def median_time(fn: Callable[[], object], runs: int) -> float:
    fn()  # warm
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def write_report(text: str, out: str) -> None:
    """Print a benchmark's markdown report and save it (docs/ by default)."""
    print(text)
    DOCS.mkdir(exist_ok=True)
    Path(out).write_text(text)


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def parser(doc: str | None, report: str) -> argparse.ArgumentParser:
    """The argument parser every benchmark starts from: its docstring as help, `--out`."""
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", default=str(DOCS / report), help=f"markdown report (default docs/{report})")
    return ap


def add_devices(ap: argparse.ArgumentParser, default_slowdown: float = 10.0) -> None:
    """The edge (this machine's CPU, one thread, emulated slower) and the cloud workers' device."""
    ap.add_argument("--edge-slowdown", type=float, default=default_slowdown, metavar="F",
                    help=f"the edge device is this machine F times slower (default {default_slowdown:g})")
    ap.add_argument("--cloud-device", default="cpu", metavar="DEV",
                    help="the cloud workers' torch device: cpu (default) or cuda[:N]; the edge "
                    "stays on the CPU")


def log_dir(part: str) -> Path:
    """A fresh directory for one run's service logs, said on stderr (where to look on failure)."""
    path = Path(tempfile.mkdtemp(prefix=f"dads-{part}-"))
    print(f"bench.{part}: logs in {path}", file=sys.stderr)
    return path


def save_raw(records: Any, out: Path, plot: Callable[[Any, Path], None]) -> str:
    """Write a report's raw records (.json) and its plot (.png) beside it; the plot's file name."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.with_suffix(".json").write_text(json.dumps(records, indent=1))
    plot(records, out.with_suffix(".png"))
    return out.with_suffix(".png").name


def resumed(out: Path, key: Callable[[dict[str, Any]], str], part: str) -> list[dict[str, Any]]:
    """The records of a report's .json (`--resume`); says on stderr which keys it keeps."""
    if not out.with_suffix(".json").exists():
        return []
    records: list[dict[str, Any]] = json.loads(out.with_suffix(".json").read_text())
    print(f"bench.{part}: resuming; kept {', '.join(sorted({key(r) for r in records}))}",
          file=sys.stderr)
    return records


@contextlib.contextmanager
def figure(path: Path, *grid: int, dpi: int = 110, **kw: Any) -> Iterator[tuple[Any, Any]]:
    """`plt.subplots(*grid, **kw)` drawn headless (Agg), laid out and saved to `path` on exit."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(*grid, **kw)
    try:
        yield fig, axes
        fig.tight_layout()
        fig.savefig(path, dpi=dpi)
    finally:
        plt.close(fig)
