"""Scaling: throughput against the number of cloud workers, and against the pipelined bound.

    python -m bench.scaling [--quick] [--model googlenet] [--workers 1,2,4]

The edge offers frames as fast as the pipeline takes them (a saturating edge: `--fps 0`, a
window of 2k+4 frames), the planner is pinned to cloud-only so the cloud stage is the one that
scales, and workers are added between measurements. Two bounds for k workers, 1/max(stage):
the planner's prediction (profiled stage times, each worker on its own core) and the same with
the stage times measured in the run (edge and cloud compute as they really took, so workers
that share cores count what they really got). The target is ≥ 90% of the measured-stage bound:
what the runtime loses to dispatch, queues and hops.
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path
from typing import Any

from bench.common import figure, log_dir, markdown_table, parser, save_raw, write_report
from bench.live import Live, hardware, heavy_args


def run(model: str, counts: list[int], uplink: str, min_done: int, span_s: float,
        logs: Path) -> list[dict[str, Any]]:
    rows = []
    with Live(model, logs, edge_slowdown=1.0, workers=counts[0]) as live:
        live.set_uplink(uplink)
        for k in counts:
            live.add_workers(k - live.workers)
            with live.edge([*heavy_args(fps=0, window=2 * k + 4)]) as edge:
                plan = live.pin("cloud_only")
                m = edge.throughput(plan, min_done, span_s, skip=2 * k + 4)
            edge_s = statistics.median(x["edge_s"] for x in m.lines)
            cloud_s = statistics.median(x["cloud_s"] for x in m.lines)
            p = plan.predicted
            measured_bound = 1.0 / max(edge_s, p.transfer_s, cloud_s / k)
            rows.append({"model": model, "workers": k, "throughput_fps": m.throughput_fps,
                         "predicted_bound_fps": p.throughput_fps,
                         "measured_bound_fps": measured_bound, "edge_s": edge_s,
                         "cloud_s": cloud_s, "transfer_s": p.transfer_s, "results": len(m.lines),
                         "uplink": live.link})
            r = rows[-1]
            print(f"  {model} k={k}: {r['throughput_fps']:.2f} fps; bound {measured_bound:.2f} "
                  f"(measured stages), {p.throughput_fps:.2f} (predicted); cloud stage "
                  f"{cloud_s * 1e3:.0f} ms", file=sys.stderr, flush=True)
    return rows


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    ks = [r["workers"] for r in rows]
    with figure(path, figsize=(5, 3.8)) as (_, ax):
        ax.plot(ks, [r["throughput_fps"] for r in rows], "o-", label="measured")
        ax.plot(ks, [r["measured_bound_fps"] for r in rows], "s--", label="bound, measured stages")
        ax.plot(ks, [r["predicted_bound_fps"] for r in rows], "x:", label="bound, planner's prediction")
        ax.set(xlabel="cloud workers", ylabel="frames/s", xticks=ks, title=f"{rows[0]['model']}, cloud-only")
        ax.legend(fontsize=8)


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "scaling.md")
    ap.add_argument("--quick", action="store_true", help="1 and 2 workers, shorter windows")
    ap.add_argument("--model", default="googlenet", help="default googlenet")
    ap.add_argument("--workers", default="1,2,4", help="worker counts (default 1,2,4)")
    ap.add_argument("--uplink", default="1gbit", help="the link's rate (default 1gbit: not the limit)")
    args = ap.parse_args(argv)
    counts = [1, 2] if args.quick else [int(k) for k in args.workers.split(",")]
    min_done, span = (6, 2.0) if args.quick else (30, 10.0)
    rows = run(args.model, counts, args.uplink, min_done, span, log_dir("scaling"))
    out = Path(args.out)
    png = save_raw(rows, out, plot)
    table = markdown_table(
        ["workers", "measured fps", "bound (measured stages)", "of bound", "≥ 90%",
         "bound (predicted)", "of predicted", "cloud stage ms", "edge stage ms"],
        [[r["workers"], f"{r['throughput_fps']:.2f}", f"{r['measured_bound_fps']:.2f}",
          f"{r['throughput_fps'] / r['measured_bound_fps'] * 100:.0f}%",
          "yes" if r["throughput_fps"] >= 0.9 * r["measured_bound_fps"] else "no",
          f"{r['predicted_bound_fps']:.2f}", f"{r['throughput_fps'] / r['predicted_bound_fps'] * 100:.0f}%",
          f"{r['cloud_s'] * 1e3:.0f}", f"{r['edge_s'] * 1e3:.1f}"] for r in rows])
    text = f"""## Scaling with cloud workers

{args.model}, planner pinned to cloud-only, a saturating edge, uplink {args.uplink}
({rows[0]['uplink']}); {hardware()}, one torch thread per worker. Throughput in steady state
over at least {span:g} s. Bounds are 1/max(edge, link, cloud/k).

{table}

![scaling]({png})
"""
    write_report(text, str(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
