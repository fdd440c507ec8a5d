"""Edgent's figures on the running system: the exit and the cut the planner picks.

    python -m bench.edgent [--quick] [--goal 30ms] [--goals 10ms,20ms,40ms,80ms] [--fixed 3g]

digits_exits (three exits; trained here on scikit-learn's digits unless `--weights` is given),
the test split's digits as the camera, the edge emulated `--edge-slowdown` times slower than a
core of this CPU, one worker. (1) A fixed latency goal, each DADS uplink: the exit and the cut
the planner chooses, the measured latency and the accuracy of the answers (against the digits'
labels). (2) A fixed uplink, several goals: accuracy and measured latency against the goal.
Over the test bed's shaped link where this process may build it (root), emulated otherwise.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import figure, log_dir, markdown_table, parser, save_raw, write_report
from bench.live import LIGHT, Live
from common.planning.units import PRESETS

MODEL = "digits_exits"


def camera(folder: Path, count: int) -> tuple[Path, list[int]]:
    """The test split's first `count` digits as image files, and their labels."""
    from PIL import Image

    from common.model import exits

    folder.mkdir(parents=True, exist_ok=True)
    frames, labels = exits.digits_frames()
    _, test = exits.split_indices(len(labels))
    chosen = test[:count].tolist()
    for i, idx in enumerate(chosen):
        Image.fromarray(frames[idx].permute(1, 2, 0).numpy()).save(folder / f"{i:04d}.png")
    return folder, [int(labels[i]) for i in chosen]


def run_case(live: Live, uplink: str, photos: Path, labels: list[int], frames: int,
             **keys: Any) -> dict[str, Any]:
    live.set_uplink(uplink)
    with live.edge([*LIGHT, "--source", str(photos), "--loop"]) as edge:
        plan = live.pin("auto")  # the planner's own choice: Edgent's exit and cut
        m = edge.latency(plan, frames)
    right = [x["classes"][0] == labels[x["frame_id"] % len(labels)] for x in m.lines]
    rec = {**keys, "uplink": uplink, "exit": plan.exit, "exit_index": None,
           "accuracy_test_split": plan.extra.get("accuracy"), "edge_nodes": len(plan.edge_nodes),
           "tensors": len(plan.transfer), "latency_s": m.latency_s,
           "predicted_s": plan.predicted.latency_s, "frames": len(m.lines),
           "measured_accuracy": sum(right) / len(right) if right else None, "link": live.link}
    print(f"  {keys} {uplink}: exit {plan.exit}, {len(plan.edge_nodes)} nodes on the edge, "
          f"{m.latency_s * 1e3:.1f} ms", file=sys.stderr, flush=True)
    return rec


def measure(weights: Path, photos: Path, labels: list[int], goal: str, goals: list[str],
            uplinks: list[str], fixed: str, slowdown: float, frames: int) -> list[dict[str, Any]]:
    logs = log_dir("edgent")
    out: list[dict[str, Any]] = []
    for g in [goal, *[x for x in goals if x != goal]]:
        live = Live(MODEL, logs / g, slowdown, planner_args=["--tick", "0.2", "--latency-goal", g])
        live.env["DADS_WEIGHTS"] = str(weights)
        cases = [(u, "uplinks") for u in (uplinks if g == goal else [])]
        cases += [(fixed, "goals")] if g in goals else []
        with live:
            for uplink, part in cases:
                out.append(run_case(live, uplink, photos, labels, frames, goal=g, part=part))
    return out


def plot(records: list[dict[str, Any]], path: Path) -> None:
    exits = sorted({r["exit"] for r in records})
    with figure(path, 1, 2, figsize=(10, 4)) as (_, (a, b)):
        ups = [r for r in records if r["part"] == "uplinks"]
        a.bar(range(len(ups)), [r["latency_s"] * 1e3 for r in ups],
              color=[f"C{exits.index(r['exit'])}" for r in ups])
        a.set_xticks(range(len(ups)), [r["uplink"] for r in ups])
        a.set(ylabel="measured latency (ms)", title=f"goal {ups[0]['goal'] if ups else ''}: "
              "exit (colour) per uplink")
        gs = [r for r in records if r["part"] == "goals"]
        b.plot([r["latency_s"] * 1e3 for r in gs], [r["measured_accuracy"] for r in gs], "o-")
        for r in gs:
            b.annotate(r["goal"], (r["latency_s"] * 1e3, r["measured_accuracy"]))
        b.set(xlabel="measured latency (ms)", ylabel="accuracy of the answers",
              title=f"goals at {gs[0]['uplink'] if gs else ''}")


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "edgent.md")
    ap.add_argument("--quick", action="store_true", help="two uplinks, two goals, few frames")
    ap.add_argument("--weights", help="trained digits_exits weights (default: train them now)")
    ap.add_argument("--goal", default="30ms", help="the fixed goal across uplinks (30ms)")
    ap.add_argument("--goals", default="5ms,15ms,30ms,60ms", help="goals at --fixed (5,15,30,60 ms)")
    ap.add_argument("--fixed", default="3g", help="the fixed uplink for the goals (3g)")
    ap.add_argument("--uplinks", default=",".join(PRESETS), help="uplinks for the fixed goal")
    ap.add_argument("--edge-slowdown", type=float, default=100.0, metavar="F",
                    help="the edge: a core of this CPU F times slower (default 100: a tiny "
                    "model, so a tiny device)")
    ap.add_argument("--frames", type=int, default=30, help="answers per case (default 30)")
    args = ap.parse_args(argv)
    from common.model import exits

    if args.weights:
        weights = Path(args.weights)
    else:
        weights = exits.save(exits.train(), Path(tempfile.mkdtemp(prefix="dads-exits-")) / "w.pth")
    accuracy = exits.load_accuracy(weights)
    frames = 6 if args.quick else args.frames
    uplinks = ["cat1", "wifi"] if args.quick else args.uplinks.split(",")
    goals = ["5ms", "30ms"] if args.quick else args.goals.split(",")
    photos, labels = camera(Path(tempfile.mkdtemp(prefix="dads-digits-")), frames + 8)
    records = measure(weights, photos, labels, args.goal, goals, uplinks, args.fixed,
                      args.edge_slowdown, frames)
    out = Path(args.out)
    png = save_raw({"records": records, "exit_accuracy": accuracy}, out,
                   lambda d, p: plot(d["records"], p))

    def row(r: dict[str, Any]) -> list[Any]:
        return [r["goal"], r["uplink"], r["exit"], f"{r['accuracy_test_split']:.1%}",
                f"{r['edge_nodes']}/{r['tensors']}", f"{r['predicted_s'] * 1e3:.1f}",
                f"{r['latency_s'] * 1e3:.1f}", f"{r['measured_accuracy']:.0%} of {r['frames']}"]

    head = ["goal", "uplink", "exit chosen", "its test accuracy", "cut (edge nodes/tensors)",
            "predicted ms", "measured ms", "answers right"]
    text = f"""## Edgent: early exit and cut chosen together, on the running system

digits_exits: three exits with test accuracy {", ".join(f"{a:.1%}" for a in accuracy)}
(scikit-learn's digits, seeded 80/20 split). Camera: the test split's digits. Edge: a core of
this CPU emulated {args.edge_slowdown:g}x slower; one worker (this CPU); uplink
{records[0]["link"] if records else "-"}. Light load (closed loop), median of {frames} answers.

### A fixed goal ({args.goal}) across uplinks

{markdown_table(head, [row(r) for r in records if r["part"] == "uplinks"])}

### Goals at a fixed uplink ({args.fixed})

{markdown_table(head, [row(r) for r in records if r["part"] == "goals"])}

![edgent]({png})
"""
    write_report(text, str(out))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
