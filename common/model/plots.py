"""Figures a person would rather look at than read: per-layer profiles, cuts, bandwidth maps.

matplotlib with the Agg backend (files only, no display needed). Inputs are plain data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
import networkx as nx
import numpy as np

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

__all__ = ["LayerRow", "plot_profile", "plot_cut", "plot_bandwidth_map"]


@dataclass(frozen=True)
class LayerRow:
    name: str
    op: str
    output_bytes: int
    time_s: float


def _op_colors(ops: Sequence[str], top: int = 9) -> tuple[list[str], dict[str, str]]:
    common = [op for op, _ in Counter(ops).most_common(top)]
    palette = plt.get_cmap("tab10").colors
    legend = {op: matplotlib.colors.to_hex(palette[i]) for i, op in enumerate(common)}
    legend["other"] = "#999999"
    return [legend.get(op, legend["other"]) for op in ops], legend


def _short(name: str, keep: int = 28) -> str:
    return name if len(name) <= keep else "…" + name[-keep:]


def _layer_bars(
    rows: Sequence[LayerRow], values: Sequence[float], ylabel: str, title: str, log: bool, out: Path
) -> Path:
    n = len(rows)
    width = min(max(8.0, n * 0.06), 32.0)
    fig, ax = plt.subplots(figsize=(width, 4.8), constrained_layout=True)
    colors, legend = _op_colors([r.op for r in rows])
    ax.bar(range(n), values, width=0.9 if n < 80 else 1.0, color=colors, linewidth=0)
    if log:
        ax.set_yscale("log")
    step = max(1, n // 40)
    ticks = list(range(0, n, step))
    ax.set_xticks(ticks)
    ax.set_xticklabels([_short(rows[i].name) for i in ticks], rotation=75, ha="right", fontsize=7)
    ax.set_xlim(-1, n)
    ax.set_xlabel(f"layer (fx node, execution order; every {step}. labelled)" if step > 1 else "layer")
    ax.set_ylabel(ylabel)
    ax.grid(axis="y", alpha=0.3)
    ax.legend(handles=[Patch(color=c, label=op) for op, c in legend.items()], title=title,
              fontsize=8, ncols=10, loc="lower left", bbox_to_anchor=(0, 1.01), frameon=False)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_profile(model: str, device: str, rows: Sequence[LayerRow], out_dir: Path) -> list[Path]:
    """Two figures: output size per layer, and latency per layer (as the original DSL's)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    mib = [max(r.output_bytes, 1) / 2**20 for r in rows]
    ms = [max(r.time_s, 1e-7) * 1e3 for r in rows]
    return [
        _layer_bars(rows, mib, "output size (MiB, log)", f"{model}: output size per layer",
                    True, out_dir / f"{model}-output-size.png"),
        _layer_bars(rows, ms, "latency (ms, log)",
                    f"{model}: latency per layer on {device} (total {sum(ms):.1f} ms)",
                    True, out_dir / f"{model}-latency.png"),
    ]


def _depths(g: nx.DiGraph) -> dict[str, int]:
    depth: dict[str, int] = {}
    for v in nx.topological_sort(g):
        depth[v] = max((depth[u] + 1 for u in g.predecessors(v)), default=0)
    return depth


def plot_cut(g: nx.DiGraph, edge_nodes: Iterable[str], title: str, out: Path) -> Path:
    """The DAG with the cut: edge side, cloud side, and the tensors that cross (in red)."""
    edge = set(edge_nodes)
    depth = _depths(g)
    layers: dict[int, list[str]] = {}
    for v in g:
        layers.setdefault(depth[v], []).append(v)
    pos = {}
    for d, vs in layers.items():
        for i, v in enumerate(vs):
            pos[v] = (d, i - (len(vs) - 1) / 2)
    n = len(g)
    width = min(max(8.0, len(layers) * 0.12), 40.0)
    height = min(max(4.0, max(len(vs) for vs in layers.values()) * 0.5), 12.0)
    fig, ax = plt.subplots(figsize=(width, height), constrained_layout=True)
    crossing = [(u, w) for u, w in g.edges if u in edge and w not in edge]
    inside = [e for e in g.edges if e not in set(crossing)]
    size = 60 if n < 60 else 14
    nx.draw_networkx_edges(g, pos, edgelist=inside, ax=ax, edge_color="#bbbbbb", width=0.6,
                           arrows=n < 60, node_size=size)
    nx.draw_networkx_edges(g, pos, edgelist=crossing, ax=ax, edge_color="#d62728", width=2.0,
                           arrows=True, node_size=size)
    colors = ["#1f77b4" if v in edge else "#ff7f0e" for v in g]
    nx.draw_networkx_nodes(g, pos, ax=ax, node_color=colors, node_size=size, linewidths=0)
    if n <= 40:
        nx.draw_networkx_labels(g, pos, ax=ax, font_size=7)
    sent = {u for u, _ in crossing}
    ax.legend(handles=[Patch(color="#1f77b4", label=f"edge ({len(edge)} nodes)"),
                       Patch(color="#ff7f0e", label=f"cloud ({n - len(edge)} nodes)"),
                       Patch(color="#d62728", label=f"crossing ({len(sent)} tensors)")],
              loc="lower left", bbox_to_anchor=(0, 1.01), ncols=3, frameon=False, title=title)
    ax.set_axis_off()
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_bandwidth_map(
    model: str,
    segments: Sequence[tuple[float, float, float, float]],
    edge_only_s: float,
    cloud_only: tuple[float, float],
    out: Path,
    presets: dict[str, float] | None = None,
) -> Path:
    """Optimal latency vs bandwidth, one colour band per cut, with edge-/cloud-only lines.

    `segments` rows: (min_bps, max_bps, compute_s, transfer_bytes); `cloud_only` is its
    (compute_s, transfer_bytes).
    """
    lo, hi = segments[0][0], segments[-1][1]
    xs = np.geomspace(lo, hi, 400)
    fig, ax = plt.subplots(figsize=(9, 5), constrained_layout=True)
    cmap = plt.get_cmap("tab20")
    for i, (a, b, compute, sent) in enumerate(segments):
        part = xs[(xs >= a) & (xs <= b)]
        if len(part) == 0:
            part = np.array([a, b])
        ax.axvspan(a, b, color=cmap(i % 20), alpha=0.15, linewidth=0)
        ax.plot(part, (compute + sent * 8.0 / part) * 1e3, color=cmap(i % 20), linewidth=2.5)
    ax.plot(xs, np.full_like(xs, edge_only_s * 1e3), "--", color="#1f77b4", label="edge-only")
    ax.plot(xs, (cloud_only[0] + cloud_only[1] * 8.0 / xs) * 1e3, "--", color="#ff7f0e",
            label="cloud-only")
    for name, bps in (presets or {}).items():
        if lo <= bps <= hi:
            ax.axvline(bps, color="#555555", linewidth=0.8, linestyle=":")
            ax.text(bps, 1.0, f" {name}", transform=ax.get_xaxis_transform(), fontsize=8,
                    va="top", rotation=90)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("uplink bandwidth (bit/s)")
    ax.set_ylabel("latency per frame (ms)")
    ax.set_title(f"{model}: DSL latency vs bandwidth ({len(segments)} cuts; bands = where each "
                 "cut is optimal)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(handles=[*ax.get_legend_handles_labels()[0],
                       Line2D([], [], color="black", linewidth=2.5, label="DSL (optimal cut)")])
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out
