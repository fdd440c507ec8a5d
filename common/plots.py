"""Figures a person would rather look at than read: per-layer profiles, cuts, bandwidth maps.

matplotlib with the Agg backend (files only, no display needed). Inputs are plain data.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402

__all__ = ["LayerRow", "plot_profile"]


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
