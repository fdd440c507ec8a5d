"""The runtime, end to end: real processes, real ZeroMQ sockets on loopback.

One broker, planner and two workers serve the whole module; each test streams with its own edge
agent. The edge is an emulated slow device (--edge-slowdown 8), so plans send work to the cloud.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import time

import msgpack
import msgpack_numpy
import numpy as np
import pytest
import torch
import zmq

from common.model.graph import trace
from common.model.models import input_shape_for, load_served, synthetic_frame
from common.model.split import relative_error
from common.planning.dag import random_cut, transfer
from common.runtime.wire import PROTOCOL_VERSION, Kind
from tests.system import MODEL, System, assert_exact, metric, read_lines, shared_cache_system

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory):
    with shared_cache_system(tmp_path_factory, planner_args=["--initial-bandwidth", "1gbit"]) as s:
        yield s


def test_every_frame_gets_the_exact_result(system: System, reference) -> None:
    lines = system.stream("edge-e2e", frames=16, fps=4)
    assert_exact(lines, reference, 16)
    workers = {line["worker"] for line in lines}
    assert workers == {"worker-0", "worker-1"}, workers  # the pool shares the work
    assert all(line["plan_id"] >= 1 for line in lines)


def test_a_video_file_streams_through_exactly(system: System, tmp_path) -> None:
    """A video (encoded here) as the source: every frame answered, equal to the whole model run
    on the same decoded frame."""
    from services.edge_agent.sources import open_source
    from tests.test_sources import encode_video

    video = encode_video(tmp_path / "clip.mp4")
    lines = system.stream("edge-video", frames=8, fps=4, extra=["--source", str(video)])
    model, shape = load_served(MODEL).eval(), input_shape_for(MODEL)
    frames = list(open_source(str(video), shape))
    assert sorted(line["frame_id"] for line in lines) == list(range(8))
    with torch.no_grad():
        for line in lines:
            assert not line["dropped"], line
            ref = model(frames[line["frame_id"]])
            out = torch.tensor(line["output"]).reshape(ref.shape)
            assert relative_error(out, ref) <= 1e-5, line["frame_id"]


def test_plan_change_mid_stream(system: System, reference) -> None:
    system.control(10e9)
    # every frame kept: once the slow emulated edge computes everything itself it falls behind,
    # and a live source would rightly shed frames (2 fps: the backlog drains within its deadline)
    proc, out = system.start_edge("edge-change", frames=0, fps=2, extra=["--no-shed", "--queue", "64"])
    deadline = time.monotonic() + 180
    while len(read_lines(out)) < 8:
        assert time.monotonic() < deadline and proc.poll() is None, system.log("edge-change")
        time.sleep(0.1)
    system.control(1e3)  # nothing may cross now: the planner must move everything to the edge
    while sum(line["worker"] == "edge" for line in read_lines(out)) < 3:
        assert time.monotonic() < deadline and proc.poll() is None, system.log("edge-change")
        time.sleep(0.1)
    assert system.stop_edge("edge-change") == 0
    system.ctl("probe")  # the operator CLI
    lines = read_lines(out)
    assert_exact(lines, reference, len(lines))
    plans = [line["plan_id"] for line in sorted(lines, key=lambda x: x["frame_id"])]
    assert plans == sorted(plans)  # applied at frame boundaries, never going back
    assert len(set(plans)) >= 2
    last = max(lines, key=lambda x: x["frame_id"])
    assert last["worker"] == "edge" and last["algorithm"] in ("dsl", "dsh")
    assert any(line["worker"].startswith("worker-") for line in lines)
    assert "plan" in system.log("planner") and "1 kbit/s" in system.log("planner")


def test_pinned_cut_carries_several_tensors(system: System, reference) -> None:
    """An operator pin (what the benchmarks use) of a DAG cut: every frame exact across it."""
    graph = trace(load_served(MODEL).eval(), synthetic_frame(0, input_shape_for(MODEL)), MODEL)
    rng = random.Random(3)
    cut = max((random_cut(graph.dag, rng) for _ in range(200)),
              key=lambda c: (len(transfer(graph.dag, c)), len(c)))
    assert len(transfer(graph.dag, cut)) >= 2
    system.control(algorithm="edge_only")
    # one frame a second: what the 8x slower camera keeps up with alone, busy machine or not (a
    # faster camera queues frames behind it that may outlive their deadline)
    proc, out = system.start_edge("edge-pin", frames=0, fps=1, extra=["--no-shed", "--queue", "64"])
    deadline = time.monotonic() + 180
    while len(read_lines(out)) < 4:
        assert time.monotonic() < deadline and proc.poll() is None, system.log("edge-pin")
        time.sleep(0.1)
    system.control(edge_nodes=tuple(sorted(cut)))
    while sum(line["algorithm"] == "pinned" for line in read_lines(out)) < 4:
        assert time.monotonic() < deadline and proc.poll() is None, system.log("edge-pin")
        time.sleep(0.1)
    assert system.stop_edge("edge-pin") == 0, system.log("edge-pin")
    system.control(algorithm="auto", edge_nodes=())
    lines = sorted(read_lines(out), key=lambda x: x["frame_id"])
    assert_exact(lines, reference, len(lines))
    assert lines[0]["algorithm"] == "edge_only" and lines[0]["worker"] == "edge"
    assert lines[-1]["algorithm"] == "pinned" and lines[-1]["worker"].startswith("worker-")
    assert "cut pinned" in system.log("planner")


def test_closed_loop_never_queues_a_frame(system: System, reference) -> None:
    """--closed-loop: each frame is captured after the last one is done (light-load latency)."""
    lines = system.stream("edge-closed", frames=5, fps=0, extra=["--closed-loop", "--window", "4"])
    assert_exact(lines, reference, 5)
    lines.sort(key=lambda x: x["frame_id"])
    for prev, nxt in zip(lines, lines[1:], strict=False):
        assert nxt["done_at"] - nxt["latency_s"] >= prev["done_at"] - 0.01, (prev, nxt)


def test_bad_pins_are_refused_and_counted(system: System, reference) -> None:
    """Refused on arrival, with the reason in the answer; or (a cut sent before any edge model
    was known) taken, then dropped at planning."""
    from common.runtime.operator import ControlRefused

    m = system.ports.metrics_base
    before = metric(system.scrape(m + 1), "dads_errors_total", kind="bad_input")
    with pytest.raises(ControlRefused, match="unknown algorithm 'fastest'"):
        system.control(algorithm="fastest")
    try:  # refused if an edge of an earlier test is still known, else dropped when one comes
        system.control(edge_nodes=("no_such_node",))
    except ControlRefused as exc:
        assert "no_such_node" in str(exc)
    assert_exact(system.stream("edge-bad-pin", frames=4, fps=4), reference, 4)  # still serving
    deadline = time.monotonic() + 30
    while metric(system.scrape(m + 1), "dads_errors_total", kind="bad_input") < before + 2:
        assert time.monotonic() < deadline, system.log("planner")[-2000:]
        time.sleep(0.2)
    assert system.procs["planner"].poll() is None


def _garbage() -> list[list[bytes]]:
    rng = random.Random(7)
    hostile = [
        [bytes(rng.getrandbits(8) for _ in range(64))],
        [bytes([Kind.REQUEST])],  # truncated multipart
        [bytes([Kind.REQUEST]), msgpack.packb({"v": PROTOCOL_VERSION, "request_id": 1})],
        [bytes([Kind.REQUEST]), msgpack.packb({"v": 99})],
        [bytes([Kind.REQUEST]), msgpack.packb({
            "v": PROTOCOL_VERSION, "request_id": 1, "frame_id": 1, "plan_id": 1,
            "fingerprint": "f", "sent_at": 0.0, "deadline_s": 1.0,
            "tensors": [{"name": "x", "dtype": "float32", "shape": [2**31], "nbytes": 2**33}]}),
         b"tiny"],
        [bytes([Kind.TELEMETRY]), msgpack.packb(
            {"v": 1, "sender": np.array([object()], dtype=object)}, default=msgpack_numpy.encode)],
        [b"\x06", b"\xc1" * 100],
    ]
    return hostile


def test_garbage_on_every_socket_is_counted_and_survived(system: System, reference) -> None:
    """Authenticated peers (an edge, a worker) that send garbage: refused, counted, survived."""
    targets = [(zmq.DEALER, system.ports.frontend, "edge", "broker"),
               (zmq.DEALER, system.ports.backend, "worker", "broker"),
               (zmq.DEALER, system.ports.telemetry, "edge", "planner")]
    for kind, endpoint, role, server in targets:
        s = system.socket(kind, endpoint, role, server)
        s.setsockopt(zmq.LINGER, 1000)
        for parts in _garbage():
            s.send_multipart(parts)
        time.sleep(0.3)
        s.close()
    time.sleep(1.0)
    m = system.ports.metrics_base
    broker, planner = system.scrape(m), system.scrape(m + 1)
    assert metric(broker, "dads_errors_total", kind="malformed") >= 2
    assert metric(broker, "dads_errors_total", kind="version") >= 1
    assert metric(broker, "dads_errors_total") >= 8
    assert metric(planner, "dads_errors_total", kind="pickle_refused") >= 1
    for name, proc in system.procs.items():
        assert proc.poll() is None or name.startswith("edge"), f"{name} died"
    assert_exact(system.stream("edge-after-garbage", frames=6, fps=4), reference, 6)


def test_metrics_of_design_section_6(system: System) -> None:
    m = system.ports.metrics_base
    proc, _ = system.start_edge("edge-metrics", frames=30, fps=5)
    deadline, edge = time.monotonic() + 180, ""
    while metric(edge, "dads_frames_out_total") < 3:  # scrape while it streams
        assert time.monotonic() < deadline and proc.poll() is None, system.log("edge-metrics")
        time.sleep(0.2)
        with contextlib.suppress(OSError):
            edge = system.scrape(system.edge_port)
    proc.wait(240)
    broker, planner, worker = system.scrape(m), system.scrape(m + 1), system.scrape(m + 2)
    for name in ("dads_frame_latency_seconds_bucket", "dads_stage_seconds_bucket",
                 "dads_bytes_sent_total", "dads_frames_in_total", "dads_frames_out_total",
                 "dads_frames_dropped_total", "dads_frames_retried_total", "dads_queue_depth",
                 "dads_plan_info", "dads_plan_changes_total"):
        assert f"\n{name}" in edge, name
    assert metric(edge, "dads_frames_out_total") > 0
    assert metric(edge, "dads_stage_seconds_count", stage="edge") > 0
    for name in ("dads_workers_ready", "dads_queue_depth", "dads_requests_total",
                 "dads_queue_wait_seconds_bucket", "dads_errors_total"):
        assert f"\n{name}" in broker, name
    assert metric(broker, "dads_workers_ready") == 2
    assert metric(worker, "dads_stage_seconds_count", stage="cloud") > 0
    for name in ("dads_bandwidth_estimate_bytes_per_second", "dads_plan_info", "dads_plan_id",
                 "dads_plan_changes_total", "dads_predicted_stage_seconds", "dads_load_factor"):
        assert f"\n{name}" in planner, name
    assert metric(planner, "dads_bandwidth_estimate_bytes_per_second") > 0
    assert "request_id" not in edge + broker + planner + worker  # no unbounded labels


def test_killed_worker_loses_no_frame(system: System, reference) -> None:
    frames = 30
    proc, out = system.start_edge("edge-kill", frames=frames, fps=5)
    deadline = time.monotonic() + 180
    while not any(line.get("worker") == "worker-0" for line in read_lines(out)):
        assert time.monotonic() < deadline and proc.poll() is None, system.log("edge-kill")
        time.sleep(0.05)
    os.kill(system.procs["worker-0"].pid, signal.SIGKILL)
    proc.wait(240)
    assert proc.returncode == 0
    lines = read_lines(out)
    assert sorted(line["frame_id"] for line in lines) == list(range(frames))  # none missing
    served = [line for line in lines if not line["dropped"]]
    assert_exact(served, reference, frames) if len(served) == frames else None
    for line in served:
        out_t = torch.tensor(line["output"]).reshape(1, -1)
        assert relative_error(out_t, reference(line["frame_id"])) <= 1e-5
    assert len(served) >= frames - 2  # the dead worker's request is re-queued, not lost
    assert {line["worker"] for line in served[-5:]} <= {"worker-1", "edge"}
    m = system.ports.metrics_base
    broker = system.scrape(m)
    assert metric(broker, "dads_workers_ready") == 1
    edge_log = system.log("edge-kill")
    assert "summary:" in edge_log


def test_a_live_camera_beyond_its_plan_sheds_and_latency_stays_bounded(
        system: System, reference) -> None:
    """10 fps into a plan that keeps ~2: the freshest frames are answered (each exact) at the
    plan's pace, the rest reported shed; no answer waits behind a queue (the last answered
    frames are as fresh as the first ones)."""
    system.control(algorithm="edge_only")  # the 8x slower camera: ~2 frames a second at most
    try:
        lines = system.stream("edge-shed", frames=40, fps=10, shed=True)
    finally:
        system.control(algorithm="auto")
    assert sorted(line["frame_id"] for line in lines) == list(range(40))  # every one accounted
    shed = [line for line in lines if line["dropped"]]
    answered = sorted((line for line in lines if not line["dropped"]), key=lambda x: x["frame_id"])
    assert shed and all(line["reason"] == "shed" for line in shed), shed[:3]
    # the pipeline is kept busy, not starved by over-shedding: its computes span most of the
    # 4 s the camera ran (a count would depend on this machine's speed and load)
    busy_s = sum(line["edge_s"] for line in answered)
    assert len(answered) >= 2 and busy_s >= 0.6 * 39 / 10, [
        (line["frame_id"], line["edge_s"]) for line in answered]
    for line in answered:
        out = torch.tensor(line["output"]).reshape(1, -1)
        assert relative_error(out, reference(line["frame_id"])) <= 1e-5
    edge_s = sorted(line["edge_s"] for line in answered)[len(answered) // 2]
    latest = [line["latency_s"] for line in answered[-5:]]
    # queueing would put the last frames seconds behind; shedding keeps each near its service
    # time (one compute, plus waiting at most one compute for the frame before it)
    assert max(latest) <= 3 * edge_s + 0.1, (latest, edge_s)
    assert f"({len(shed)} shed)" in system.log("edge-shed")  # counted, and said


def test_no_frame_queues_behind_a_transfer_stuck_on_a_slower_link(system: System) -> None:
    """The uplink steps from 20 Mbit/s to 100 kbit/s under a 150 kB frame (12 s to cross): no
    later frame is handed to the link behind it (the gate holds them, the freshest waiting,
    until the plan moves), and once the plan moves to the camera frames are answered here while
    the stuck one is still on the link (a new plan opens the gate)."""
    lines = system.stream("edge-stall", frames=24, fps=4, shed=True,
                          extra=["--uplink", "20mbit,100kbit@2"])
    assert sorted(line["frame_id"] for line in lines) == list(range(24))  # every one accounted
    answered = [line for line in lines if not line["dropped"]]
    t0 = min(line["done_at"] - line["latency_s"] for line in answered)
    def captured(line: dict) -> float:
        return line["done_at"] - line["latency_s"] - t0

    after = [line for line in answered if captured(line) >= 2.0]
    pool = [line for line in after if line["worker"] != "edge"]
    here = [line for line in after if line["worker"] == "edge"]
    # a frame handed over before the stall shows (the transfer has taken 3x what the estimate
    # allows, beyond the cloud's time) may queue behind it; none once it has shown, well within
    # a second here, though the link stays stuck for 12 s
    assert pool and not [x for x in pool if captured(x) >= 3.0], [
        (x["frame_id"], round(captured(x), 2), x["latency_s"]) for x in pool]
    assert here, "no frame answered on the camera after the step"
    # the camera answered while the stuck frame was still on the link (a new plan opens the gate)
    assert min(x["done_at"] for x in here) < min(x["done_at"] for x in pool), (here[:2], pool)


def test_an_offline_source_keeps_every_frame(system: System, reference) -> None:
    """fps 0 (a folder read as fast as the pipeline takes): back-pressure, nothing shed."""
    system.control(algorithm="edge_only")
    try:
        lines = system.stream("edge-offline", frames=4, fps=0, shed=True)
    finally:
        system.control(algorithm="auto")
    assert_exact(lines, reference, 4)
