"""The planner's autoscaling signal, with real processes: `dads_pool_workers_wanted` rises as
cameras add load and falls when they leave, and a worker that joins is planned for at once."""

from __future__ import annotations

import time

import pytest

from launch.up import start_workers
from tests.system import System, metric, shared_cache_system, wait_lines

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory):
    with shared_cache_system(tmp_path_factory, workers=1,
                             planner_args=["--initial-bandwidth", "1gbit", "--edge-ttl", "4"]) as s:
        yield s


def wanted(system: System) -> float:
    return metric(system.scrape(system.ports.metrics_base + 1), "dads_pool_workers_wanted")


def settle(system: System, ok, what: str, timeout: float = 60.0) -> float:
    """The metric once `ok(value)` holds (it moves with the planner's tick)."""
    deadline = time.monotonic() + timeout
    while not ok(value := wanted(system)):
        assert time.monotonic() < deadline, (what, value, system.log("planner")[-2000:])
        time.sleep(0.25)
    return value


def test_workers_wanted_follows_the_cameras_and_joins_are_planned(system: System) -> None:
    assert wanted(system) == 0  # no camera, no demand
    cams = []
    try:
        # live cameras (shed, not back-pressure): the planner sees their full arrival rate; 8x
        # slower than the pool (System's default), so their latency plans send the frame there
        for i in range(2):
            extra = ["--name", f"cam{i}"] + (["--metrics-port", "0"] if i else [])
            cams.append(system.start_edge(f"cam{i}", frames=0, fps=20, extra=extra, shed=True))
            wait_lines(system, f"cam{i}", cams[-1][1], cams[-1][0], 3)
            if i == 0:
                one = settle(system, lambda v: v >= 1, "one camera's demand")
        two = settle(system, lambda v: v >= one + 1, "a second camera's demand")
        # a worker that joins: the planner plans for two at once (its plans and its gauge)
        system.procs.update(start_workers(system.ports, system.model, system.tmp, 1, 1,
                                          env=system.env, extra=["--metrics-port", "0"]))
        system.wait_log("worker-1", "ready on")
        deadline = time.monotonic() + 30
        while metric(system.scrape(system.ports.metrics_base + 1), "dads_workers_ready") < 2:
            assert time.monotonic() < deadline, system.log("planner")[-2000:]
            time.sleep(0.25)
        assert "the pool has 2 worker(s) now (was 1): replanning" in system.log("planner")
        assert wanted(system) >= two - 1  # the demand is the cameras', not the pool's size
    finally:
        for name, (proc, _) in zip(("cam0", "cam1"), cams, strict=False):
            if proc.poll() is None:
                system.stop_edge(name)
    settle(system, lambda v: v == 0, "the cameras gone (expired after --edge-ttl)")


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory):
    """One worker whose compute takes a couple of seconds: time to stop it mid-request."""
    with shared_cache_system(tmp_path_factory, workers=1, worker_args=["--slowdown", "20"],
                             planner_args=["--initial-bandwidth", "1gbit"]) as s:
        s.control(algorithm="cloud_only")  # a slow pool: DSL would keep the frame here
        yield s


def test_a_stopped_worker_finishes_its_request_first(slow: System, reference) -> None:
    """SIGTERM (a scale-down, an eviction) while a frame is in compute: the worker answers it,
    then exits cleanly; the frame is answered by it, exactly, not re-run elsewhere."""
    import signal

    from tests.system import assert_exact, read_lines

    broker = slow.ports.metrics_base
    proc, out = slow.start_edge("edge-drain", frames=1, fps=1)
    deadline = time.monotonic() + 120
    while metric(slow.scrape(broker), "dads_requests_total", event="dispatched") < 1:
        assert time.monotonic() < deadline and proc.poll() is None, slow.log("edge-drain")[-2000:]
        time.sleep(0.05)
    worker = slow.procs["worker-0"]
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(60) == 0, slow.log("worker-0")[-2000:]
    proc.wait(120)
    lines = read_lines(out)
    assert_exact(lines, reference, 1)
    assert lines[0]["worker"] == "worker-0" and lines[0]["attempts"] == 1
    assert "finishing 1 request(s) in hand first" in slow.log("worker-0")
