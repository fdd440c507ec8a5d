"""Faults a deployment meets, with real processes and real sockets: services killed and restarted,
slow and hostile peers, mismatched models, a stop under load. Each finding of the "deployable"
issue has its test here (or, for pure logic, beside the state machine it lives in).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import zmq

from common.model.graph import trace
from common.model.models import input_shape_for, load_served, synthetic_frame
from common.planning.partition import Plan
from common.runtime.service import supervise
from common.runtime.wire import (
    Control,
    EdgeProfile,
    ErrorCode,
    ErrorReply,
    PlanMsg,
    Request,
    TensorMeta,
    decode,
    encode,
)
from tests.system import (
    MODEL,
    System,
    assert_exact,
    metric,
    read_lines,
    shared_cache_system,
    wait_lines,
)

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory):
    with shared_cache_system(tmp_path_factory, planner_args=["--initial-bandwidth", "1gbit"]) as s:
        yield s


def wait_for(predicate, timeout: float, what: str) -> float:
    """Seconds until `predicate()` holds; fails with `what` after `timeout`."""
    start = time.monotonic()
    while not predicate():
        assert time.monotonic() - start < timeout, what
        time.sleep(0.05)
    return time.monotonic() - start


def current_plan(system: System, timeout: float = 15.0) -> Plan:
    sub = system.socket(zmq.SUB, system.ports.plans, "operator", "planner")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    sub.setsockopt(zmq.RCVTIMEO, int(timeout * 1000))
    try:
        msg, _ = decode(sub.recv_multipart())
    finally:
        sub.close(linger=0)
    assert isinstance(msg, PlanMsg)
    return Plan.from_json(msg.plan)


def ask_broker(system: System, request: Request, frames: list[bytes]) -> ErrorReply:
    """One request through the real broker to a real worker, as an edge would send it."""
    dealer = system.socket(zmq.DEALER, system.ports.frontend, "edge", "broker")
    dealer.setsockopt(zmq.RCVTIMEO, 30_000)
    try:
        dealer.send_multipart(encode(request, frames))
        reply, _ = decode(dealer.recv_multipart())
    finally:
        dealer.close(linger=0)
    assert isinstance(reply, ErrorReply), reply
    return reply


def push_to_planner(system: System, *parts_list: list[bytes], role: str = "operator") -> None:
    sock = system.socket(zmq.DEALER, system.ports.telemetry, role, "planner")
    sock.setsockopt(zmq.LINGER, 2000)
    for parts in parts_list:
        sock.send_multipart(parts)
    sock.close()


def test_planner_killed_and_restarted_mid_stream(system: System, reference) -> None:
    """Finding 2: results keep flowing, the new planner's plans are followed, fresh edges work.
    The camera streams until three frames have been answered under the new planner's plans."""
    proc, out = system.start_edge("edge-planner-kill", frames=0, fps=2, extra=["--no-shed", "--queue", "64"])
    wait_lines(system, "edge-planner-kill", out, proc, 3)
    old_epoch = read_lines(out)[0]["plan_epoch"]
    os.kill(system.procs["planner"].pid, signal.SIGKILL)
    system.procs["planner"].wait(10)
    system.start_planner("planner-2", ["--initial-bandwidth", "1gbit"])
    system.wait_log("planner-2", "plan 1:", timeout=60)  # it has heard edge and workers again
    followed = wait_for(lambda: "planner epoch" in system.log("edge-planner-kill"), 5.0,
                        "the edge did not follow the restarted planner's plan within 5 s")
    wait_for(lambda: sum(x.get("plan_epoch", 0) > old_epoch for x in read_lines(out)) >= 3, 120,
             "no three frames answered under the new planner's plans")
    assert system.stop_edge("edge-planner-kill") == 0, system.log("edge-planner-kill")[-3000:]
    lines = read_lines(out)
    assert_exact(lines, reference, len(lines))  # nothing lost or wrong across the restart
    epochs = [line["plan_epoch"] for line in sorted(lines, key=lambda x: x["frame_id"])]
    assert epochs[-1] > old_epoch and epochs == sorted(epochs), (followed, epochs)
    fresh = system.stream("edge-after-restart", frames=4, fps=4)  # 0 of 12 before the fix
    assert_exact(fresh, reference, 4)
    assert all(line["plan_epoch"] == epochs[-1] for line in fresh)


def test_a_worker_that_joins_mid_stream_holds_frames_until_it_has_their_plan(
        system: System, reference) -> None:
    """Found by the compose test: a worker scaled in mid-stream was sent frames before it had
    heard the plan, refused them (unknown_plan), and after five quick retries to it the edge
    dropped them. Now a frame that names a plan newer than any the worker has waits for it."""
    from launch.up import start_workers

    system.control(algorithm="cloud_only")
    proc, out = system.start_edge("edge-join", frames=0, fps=3, extra=["--no-shed", "--queue", "64"])
    try:
        wait_lines(system, "edge-join", out, proc, 3)
        system.procs.update(start_workers(system.ports, MODEL, system.tmp, 2, 1, env=system.env,
                                          extra=["--metrics-port", "0"]))
        wait_for(lambda: any(x.get("worker") == "worker-2" for x in read_lines(out)), 120,
                 "the new worker served nothing")  # the stream goes on until it has served one
        assert system.stop_edge("edge-join") == 0, system.log("edge-join")[-3000:]
        lines = read_lines(out)
        assert_exact(lines, reference, len(lines))
        retried = [line["frame_id"] for line in lines if line["attempts"] > 1]
        assert not retried, f"frames sent again: {retried}\n{system.log('edge-join')[-2000:]}"
    finally:
        if "worker-2" in system.procs:
            joined = system.procs.pop("worker-2")
            joined.terminate()
            joined.wait(20)
        system.control(algorithm="auto")


def test_broker_killed_and_restarted_mid_stream(system: System, reference) -> None:
    """The stream resumes; the requests that died with the broker are sent again when it is
    back (not left to their deadline), so every frame is answered, exactly."""
    frames = 60
    proc, out = system.start_edge("edge-broker-kill", frames=frames, fps=20,
                                  extra=["--no-shed", "--queue", "64", "--window", "8", "--deadline", "30"])
    wait_lines(system, "edge-broker-kill", out, proc, 10)  # busy: requests in flight
    os.kill(system.procs["broker"].pid, signal.SIGKILL)
    system.procs["broker"].wait(10)
    time.sleep(1.0)  # frames sent meanwhile wait in the edge (no broker to take them)
    system.start_broker("broker-2")
    system.wait_log("broker-2", "frontend")
    proc.wait(240)
    assert proc.returncode == 0, system.log("edge-broker-kill")[-3000:]
    assert_exact(read_lines(out), reference, frames)
    assert "broker back: sending" in system.log("edge-broker-kill")


def test_mismatched_weights_are_refused_with_a_clear_error(system: System, reference) -> None:
    """Finding 3: an edge with another --seed gets no worker's answer, and is told why."""
    other = trace(load_served(MODEL, seed=1).eval(), synthetic_frame(0, input_shape_for(MODEL)),
                  MODEL)
    req = Request(1, 0, 1, other.fingerprint, (), time.time(), 10.0)
    reply = ask_broker(system, req, [])
    assert reply.code == ErrorCode.FINGERPRINT
    assert "--seed" in reply.message and "weights" in reply.message, reply.message
    lines = system.stream("edge-seed", frames=2, fps=2, extra=["--seed", "1", "--wait-plan", "3"])
    assert all(line["worker"] == "edge" for line in lines)  # computed here, never a wrong answer
    assert "--seed" in system.log("planner") + system.log("planner-2")


def test_wrong_shaped_tensors_are_refused(system: System) -> None:
    """Finding 9: names right, shapes wrong: an error reply, not a result."""
    system.stream("edge-shapes", frames=2, fps=2)  # the planner has a plan for this model
    plan = current_plan(system)
    assert plan.transfer, "expected a plan that sends tensors to the cloud"
    fingerprint = trace(load_served(MODEL).eval(), synthetic_frame(0, input_shape_for(MODEL)),
                        MODEL).fingerprint
    meta = TensorMeta(plan.transfer[0], "uint8", (1, 3, 10, 10), 300)
    req = Request(2, 0, plan.plan_id, fingerprint, (meta,), time.time(), 10.0,
                  plan_epoch=plan.epoch)
    reply = ask_broker(system, req, [bytes(300)])
    assert reply.code == ErrorCode.BAD_TENSORS and "expected" in reply.message, reply


def test_hostile_planner_input_does_not_stop_the_planner(system: System) -> None:
    """Finding 5: a broken EdgeProfile, impossible bandwidths: refused, counted; control works."""
    broken = EdgeProfile("x" * 5000, "m", "f" * 32, {"directed": True, "multigraph": False,
                                                     "graph": {}, "nodes": [1, 2], "edges": []},
                         {"format": "nope"})
    push_to_planner(system, encode(broken), role="edge")
    push_to_planner(system, encode(Control(force_bandwidth_bps=-1.0)),
                    encode(Control(force_bandwidth_bps=3e6)))
    planner_logs = lambda: system.log("planner") + system.log("planner-2")  # noqa: E731
    wait_for(lambda: "operator: bandwidth 3" in planner_logs(), 10.0,
             "the planner stopped obeying control after hostile input")
    text = system.scrape(system.ports.metrics_base + 1)
    assert metric(text, "dads_errors_total", kind="bad_input") >= 2
    assert "x" * 300 not in planner_logs()  # peer text is clipped in the log
    push_to_planner(system, encode(Control(force_bandwidth_bps=0.0)))


def test_a_stop_under_load_loses_no_frame(system: System) -> None:
    """Finding 7: frames in == results + reported drops, at a clean stop under heavy load."""
    proc, out = system.start_edge("edge-stop", frames=0, fps=0,
                                  extra=["--queue", "2", "--window", "2", "--deadline", "30"])
    wait_lines(system, "edge-stop", out, proc, 3)
    proc.send_signal(signal.SIGINT)
    proc.wait(120)
    assert proc.returncode == 0, system.log("edge-stop")[-3000:]
    summary = re.search(r"summary: (\d+) frames in, (\d+) results .*?, (\d+) dropped",
                        system.log("edge-stop"))
    assert summary, system.log("edge-stop")[-2000:]
    frames_in, results, dropped = map(int, summary.groups())
    lines = read_lines(out)
    assert frames_in == results + dropped == len(lines)
    assert sorted(line["frame_id"] for line in lines) == list(range(frames_in))


def test_a_bad_source_is_a_clear_start_up_error(system: System) -> None:
    """Finding 4: no silent wait; a clear line and a non-zero exit."""
    proc, _ = system.start_edge("edge-bad-source", frames=2,
                                extra=["--source", "/no/such/frames"])
    proc.wait(120)
    assert proc.returncode == 2
    assert "frame source '/no/such/frames'" in system.log("edge-bad-source")
    assert "Traceback" not in system.log("edge-bad-source")


@pytest.mark.long  # a minute: compute slower than the broker's liveness, on purpose
def test_a_worker_slower_than_its_liveness_answers_every_frame(
        tmp_path_factory: pytest.TempPathFactory, reference) -> None:
    """Finding 1: compute taking over twice the broker's 3 s liveness starves nothing."""
    with shared_cache_system(tmp_path_factory, workers=1, worker_args=["--slowdown", "120"],
                             planner_args=["--initial-bandwidth", "1gbit"]) as slow:
        slow.control(algorithm="cloud_only")  # the planner knows it is slow: pin it there
        lines = slow.stream("edge-slow", frames=3, fps=1)
        assert_exact(lines, reference, 3)
        assert all(line["worker"] == "worker-0" for line in lines)
        assert max(line["cloud_s"] for line in lines) > 6.0  # it really was that slow
        assert "reconnecting" not in slow.log("worker-0")
        assert "stopped heartbeating" not in slow.log("broker")


def test_a_dead_task_stops_the_service_non_zero(caplog: pytest.LogCaptureFixture) -> None:
    """Supervision: a service whose receive loop dies exits 1 instead of serving half-alive."""

    async def receive_loop() -> None:
        raise RuntimeError("receive loop died")

    async def ticker(stop: asyncio.Event) -> None:
        await stop.wait()  # a periodic task: returns when stop is set, which is fine

    async def service() -> tuple[int, bool]:
        stop = asyncio.Event()
        tasks = [asyncio.create_task(receive_loop(), name="receiver"),
                 asyncio.create_task(ticker(stop), name="tick")]
        rc = await supervise(stop, tasks, logging.getLogger("svc"))
        await asyncio.gather(*tasks, return_exceptions=True)
        return rc, stop.is_set()

    assert asyncio.run(service()) == (1, True)
    assert "task receiver failed with RuntimeError: receive loop died" in caplog.text

    async def clean_stop() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(ticker(stop), name="tick")
        asyncio.get_running_loop().call_later(0.05, stop.set)
        return await supervise(stop, [task], logging.getLogger("svc"))

    assert asyncio.run(clean_stop()) == 0  # SIGTERM's way out is not a failure


def test_health_reads_the_event_loops_own_beat(system: System) -> None:
    """The compose healthcheck: a live service is healthy; nothing listening is not."""
    ok = subprocess.run([sys.executable, "-m", "cli", "health", "--port",
                         str(system.ports.metrics_base)], capture_output=True, text=True, timeout=60)
    assert ok.returncode == 0 and "healthy" in ok.stdout, ok.stderr
    gone = subprocess.run([sys.executable, "-m", "cli", "health", "--port", "1"],
                          capture_output=True, text=True, timeout=60)
    assert gone.returncode == 1 and "unhealthy" in gone.stderr
