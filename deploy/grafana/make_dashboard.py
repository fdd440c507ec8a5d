"""Writes deploy/grafana/dashboards/dads.json (run after changing the panels below)."""

from __future__ import annotations

import json
from pathlib import Path

PANELS: list[tuple[str, list[tuple[str, str]], str]] = [
    ("End-to-end latency", [
        ("p50", 'histogram_quantile(0.5, sum by (le) (rate(dads_frame_latency_seconds_bucket[1m])))'),
        ("p95", 'histogram_quantile(0.95, sum by (le) (rate(dads_frame_latency_seconds_bucket[1m])))'),
    ], "s"),
    ("Frames per second", [
        ("results", "sum(rate(dads_frames_out_total[1m]))"),
        ("arrivals", "sum(rate(dads_frames_in_total[1m]))"),
    ], "none"),
    ("Stage times (p50)", [
        ("{{stage}}", 'histogram_quantile(0.5, sum by (le, stage) (rate(dads_stage_seconds_bucket[1m])))'),
    ], "s"),
    ("Predicted stage times", [("{{edge}} {{stage}}", "dads_predicted_stage_seconds")], "s"),
    ("Bandwidth estimate", [("{{edge}}", "dads_bandwidth_estimate_bytes_per_second * 8")], "bps"),
    ("Current plan", [("{{algorithm}} / {{regime}}", "dads_plan_info{job=\"planner\"}"),
                      ("plan id", "dads_plan_id")], "none"),
    ("Plan changes", [("changes / 5m", "increase(dads_plan_changes_total{job=\"planner\"}[5m])")],
     "none"),
    ("Workers ready", [("broker", "dads_workers_ready{job=\"broker\"}")], "none"),
    ("Drops, retries, errors", [
        ("dropped", "sum(rate(dads_frames_dropped_total[1m]))"),
        ("retried", "sum(rate(dads_frames_retried_total[1m]))"),
        ("{{kind}}", "sum by (kind) (rate(dads_errors_total[1m]))"),
    ], "none"),
    ("Queues", [("{{job}} {{queue}}", "dads_queue_depth"),
                ("load factor {{edge}}", "dads_load_factor")], "none"),
]


def dashboard() -> dict:
    panels = []
    for i, (title, targets, unit) in enumerate(PANELS):
        panels.append({
            "id": i + 1, "type": "timeseries", "title": title,
            "datasource": {"type": "prometheus", "uid": "prometheus"},
            "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "targets": [{"refId": chr(65 + j), "expr": expr, "legendFormat": legend}
                        for j, (legend, expr) in enumerate(targets)],
        })
    return {"uid": "dads", "title": "dads: split inference", "schemaVersion": 39, "version": 1,
            "refresh": "5s", "time": {"from": "now-15m", "to": "now"}, "panels": panels}


if __name__ == "__main__":
    out = Path(__file__).parent / "dashboards" / "dads.json"
    out.write_text(json.dumps(dashboard(), indent=1) + "\n")
    print(f"wrote {out}")
