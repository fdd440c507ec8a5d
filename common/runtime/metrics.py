"""Every Prometheus metric of every service, named once (DESIGN §6).

Conventions: prefix `dads_`, base units (`_seconds`, `_bytes`), counters end in `_total`, labels
only from bounded sets (stage, error code, event), never a request id. Each service builds the
set it exports on its own registry, and serves it with `serve()`; handlers only observe.
"""

from __future__ import annotations

import contextlib
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info, start_http_server

from common.errors import DadsError

__all__ = ["LATENCY_BUCKETS", "LOOP_BEAT", "EdgeMetrics", "BrokerMetrics", "WorkerMetrics", "PlannerMetrics",
           "Tally", "serve"]

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                   30.0, 60.0)
STAGES = ("edge", "transfer", "cloud", "wait")  # a plan's predicted stages, and its measured wait


def _errors(reg: CollectorRegistry) -> Counter:
    return Counter("dads_errors_total", "Errors by kind (wire codes, timeouts, internal)",
                   ["kind"], registry=reg)


def _stage(reg: CollectorRegistry) -> Histogram:
    return Histogram("dads_stage_seconds", "Measured time of one pipeline stage per frame",
                     ["stage"], buckets=LATENCY_BUCKETS, registry=reg)


LOOP_BEAT = "dads_event_loop_beat_timestamp_seconds"


def _loop_beat(reg: CollectorRegistry) -> Gauge:
    """Set by the event loop itself each second: `dads health` tells a live loop from a dead one
    (the /metrics server runs in a thread of its own and answers either way)."""
    return Gauge(LOOP_BEAT, "Unix time of the event loop's last beat", registry=reg)


def _auth_failures(reg: CollectorRegistry) -> Counter:
    return Counter("dads_auth_failures_total",
                   "Peers refused: handshakes without a key this socket admits (role: the socket's "
                   "domain) and messages their role may not send (role: the one required)",
                   ["role"], registry=reg)


def _plan_info(reg: CollectorRegistry) -> Info:
    return Info("dads_plan", "The plan in force (id, algorithm, regime)", registry=reg)


def _codec_bytes(reg: CollectorRegistry) -> Counter:
    return Counter("dads_codec_bytes_total",
                   "Crossing tensors' bytes before (raw) and after (encoded) their codec",
                   ["codec", "form"], registry=reg)


def _codec_time(reg: CollectorRegistry) -> Histogram:
    return Histogram("dads_codec_seconds", "Encoding (edge) or decoding (worker) one crossing "
                     "tensor", ["codec"], buckets=LATENCY_BUCKETS, registry=reg)


class EdgeMetrics:
    def __init__(self) -> None:
        self.registry = reg = CollectorRegistry()
        self.frame_latency = Histogram("dads_frame_latency_seconds",
                                       "End-to-end latency per frame (capture to result)",
                                       buckets=LATENCY_BUCKETS, registry=reg)
        self.stage = _stage(reg)
        self.bytes_sent = Counter("dads_bytes_sent_total", "Tensor bytes sent to the cloud",
                                  registry=reg)
        self.codec_bytes = _codec_bytes(reg)
        self.codec_time = _codec_time(reg)
        self.frames_in = Counter("dads_frames_in_total", "Frames read from the source", registry=reg)
        self.frames_out = Counter("dads_frames_out_total", "Frames with a result", registry=reg)
        self.frames_stale = Counter("dads_frames_stale_total",
                                    "Frames of a live stream skipped: a newer one came before "
                                    "the pipeline took them", registry=reg)
        self.frames_dropped = Counter("dads_frames_dropped_total",
                                      "Frames given up (shed, deadline passed or refused)",
                                      registry=reg)
        self.frames_shed = Counter("dads_frames_shed_total",
                                   "Frames of a live source shed (also counted as dropped): the "
                                   "pipeline was busy and a fresher frame came, or the plan "
                                   "cannot sustain the camera's rate", registry=reg)
        self.frames_retried = Counter("dads_frames_retried_total", "Requests sent again",
                                      registry=reg)
        self.queue_depth = Gauge("dads_queue_depth", "Frames waiting", ["queue"], registry=reg)
        self.plan = _plan_info(reg)
        self.plan_changes = Counter("dads_plan_changes_total", "Plans applied", registry=reg)
        self.errors = _errors(reg)
        self.loop_beat = _loop_beat(reg)


class BrokerMetrics:
    def __init__(self) -> None:
        self.registry = reg = CollectorRegistry()
        self.workers_ready = Gauge("dads_workers_ready", "Workers alive and registered",
                                   registry=reg)
        self.queue_depth = Gauge("dads_queue_depth", "Requests waiting", ["queue"], registry=reg)
        self.requests = Counter("dads_requests_total", "Requests by event",
                                ["event"], registry=reg)  # received, dispatched, answered, requeued
        self.queue_wait = Histogram("dads_queue_wait_seconds", "Time a request waited for a worker",
                                    buckets=LATENCY_BUCKETS, registry=reg)
        self.edge_requests = Counter(
            "dads_edge_requests_total",
            "Requests per edge by event: received, answered, or the error code they were "
            "answered with (edge: the name of its key, e.g. edge-cam1; 'insecure' without keys)",
            ["edge", "event"], registry=reg)
        self.errors = _errors(reg)
        self.loop_beat = _loop_beat(reg)
        self.auth_failures = _auth_failures(reg)


class WorkerMetrics:
    def __init__(self) -> None:
        self.registry = reg = CollectorRegistry()
        self.stage = _stage(reg)
        self.requests = Counter("dads_requests_total", "Requests by event", ["event"], registry=reg)
        self.split_build = Histogram("dads_split_build_seconds", "Building a cloud part for a plan",
                                     buckets=LATENCY_BUCKETS, registry=reg)
        self.plans_cached = Gauge("dads_plans_cached", "Cloud parts held, one per plan",
                                  registry=reg)
        self.codec_bytes = _codec_bytes(reg)
        self.codec_time = _codec_time(reg)
        self.errors = _errors(reg)
        self.loop_beat = _loop_beat(reg)


class PlannerMetrics:
    def __init__(self) -> None:
        self.registry = reg = CollectorRegistry()
        self.bandwidth = Gauge("dads_bandwidth_estimate_bytes_per_second",
                               "The planner's estimate of each edge's uplink", ["edge"],
                               registry=reg)
        self.bandwidth_steps = Counter("dads_bandwidth_steps_total",
                                       "Steps of the uplink rate detected by the change test",
                                       registry=reg)
        self.bandwidth_bounded = Gauge("dads_bandwidth_bounded",
                                       "1 while a transfer stuck on the uplink bounds the "
                                       "estimate (a step down not yet measured)", registry=reg)
        self.plan = _plan_info(reg)
        self.plan_id = Gauge("dads_plan_id", "Id of the plan in force", registry=reg)
        self.plan_changes = Counter("dads_plan_changes_total", "Plans published with a new id",
                                    registry=reg)
        self.predicted = Gauge("dads_predicted_stage_seconds",
                               "Each edge's plan, its predicted stage times", ["edge", "stage"],
                               registry=reg)
        self.load_factor = Gauge("dads_load_factor", "Each edge's arrival rate x its plan's "
                                 "slowest stage (>= 1: cannot keep up)", ["edge"], registry=reg)
        self.arrival_rate = Gauge("dads_arrival_frames_per_second",
                                  "Each edge's observed frame arrival rate", ["edge"], registry=reg)
        self.workers = Gauge("dads_workers_ready", "Workers the plan is made for", registry=reg)
        self.regime_heavy = Gauge("dads_regime_heavy", "1 while an edge is under heavy load (DSH, "
                                  "or the pool shared), 0 under light (DSL)", ["edge"],
                                  registry=reg)
        self.profiles_predicted = Gauge(
            "dads_profiles_predicted", "Profiles in use that are predicted from the model's "
            "shapes, not measured (side: edge or cloud)", ["side"], registry=reg)
        self.calibration = Gauge("dads_calibration_ratio",
                                 "Each edge's measured / predicted stage time (predicted: the "
                                 "profile's times as calibrated; 1 once the model has caught up)",
                                 ["edge", "stage"], registry=reg)
        self.profile_contradicted = Gauge(
            "dads_profile_contradicted", "1 while an edge's measurements have contradicted a "
            "profile (edge: its own; cloud: the workers') by over 1.5x for 30 s: re-measure it",
            ["edge", "stage"], registry=reg)
        self.edges = Gauge("dads_edges", "Edge agents planned for (silent ones expire)",
                           registry=reg)
        self.edge_latency = Gauge("dads_edge_predicted_latency_seconds",
                                  "Each edge's plan, its predicted latency (one series per live "
                                  "edge, removed when it expires; at most the planner's cap)",
                                  ["edge"], registry=reg)
        self.pool_demand = Gauge("dads_pool_demand",
                                 "The edges' cloud demand over the workers (worker-seconds per "
                                 "second per worker; joint plans above 0.9)", registry=reg)
        self.pool_workers_wanted = Gauge(
            "dads_pool_workers_wanted",
            "Cloud workers the edges' latency plans need to stay light: each edge's arrival rate "
            "times its latency plan's cloud time per frame, at most 0.8 busy (scale the pool "
            "to this: HPA/KEDA, compose --scale)", registry=reg)
        self.errors = _errors(reg)
        self.loop_beat = _loop_beat(reg)
        self.auth_failures = _auth_failures(reg)

    def forget_edge(self, edge: str) -> None:
        """An expired edge's series go with it (the `edge` label stays bounded by the live
        edges, at most the planner's cap)."""
        for gauge in (self.bandwidth, self.load_factor, self.arrival_rate, self.regime_heavy,
                      self.edge_latency):
            with contextlib.suppress(KeyError):
                gauge.remove(edge)
        for gauge, stages in ((self.predicted, STAGES), (self.calibration, ("edge", "cloud")),
                              (self.profile_contradicted, ("edge", "cloud"))):
            for stage in stages:
                with contextlib.suppress(KeyError):
                    gauge.remove(edge, stage)


class Tally:
    """Counter increments held as plain ints on a hot path and added to their counters in one
    go (`flush`, from the loop's tick or when it idles): a Prometheus counter's `inc` takes a
    lock and a few Python calls, and the broker counts several things per message. A scrape sees
    the counts as of the last flush (at most a tick, a second, behind)."""

    def __init__(self) -> None:
        self.counts: dict[Any, int] = {}  # counter (a labelled child) -> increments held

    def add(self, counter: Any, n: int = 1) -> None:
        self.counts[counter] = self.counts.get(counter, 0) + n

    def flush(self) -> None:
        counts, self.counts = self.counts, {}
        for counter, n in counts.items():
            counter.inc(n)


def serve(registry: CollectorRegistry, port: int, addr: str = "0.0.0.0") -> int:
    """Serve /metrics; port 0 picks a free port. Returns the port."""
    try:
        server, _ = start_http_server(port, addr=addr, registry=registry)
    except OSError as exc:  # a busy port: what to do, in one line
        raise DadsError(f"cannot serve /metrics on {addr}:{port}: {exc.strerror or exc} (another "
                        "process has it? choose another with --metrics-port, or 0 for any free "
                        "port)") from None
    return int(server.server_port)
