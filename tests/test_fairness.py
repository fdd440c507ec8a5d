"""Many edges, one broker: an edge that floods it cannot starve the others.

The real broker (a process, CURVE), two edges and a worker speaking the wire contract over real
sockets: the worker is this test's own (it answers after a fixed 50 ms of "compute", so the
pool is the bottleneck and the order it serves requests in is what is checked).
"""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import pytest
import zmq

from common.runtime.security import Keys, add_key, client_socket
from common.runtime.wire import ErrorReply, Heartbeat, Ready, Request, Result, decode, encode
from launch.up import Ports, free_base, security_env, start_service, stop_system, wait_log
from tests.system import metric

SERVICE_S = 0.05  # long beside the calm edge's own turnaround, so its scheduling hardly shows
MAX_QUEUE = 32
FLOOD, CALM = 150, 10


class Worker(threading.Thread):
    """Serves one request at a time, SERVICE_S each, and records the order it served them in."""

    def __init__(self, endpoint: str, keys: Keys) -> None:
        super().__init__(daemon=True)
        self.sock = client_socket(zmq.Context.instance(), zmq.DEALER, endpoint, keys, "broker")
        self.served: list[int] = []
        self.stop = threading.Event()

    def run(self) -> None:
        self.sock.send_multipart(encode(Ready("fair-worker", "any", "cpu")))
        beat = time.monotonic()
        while not self.stop.is_set():
            if time.monotonic() - beat > 0.5:
                self.sock.send_multipart(encode(Heartbeat("fair-worker", time.time())))
                beat = time.monotonic()
            if not self.sock.poll(50):
                continue
            msg, _ = decode(self.sock.recv_multipart())
            if isinstance(msg, Request):
                time.sleep(SERVICE_S)
                self.served.append(msg.request_id)
                self.sock.send_multipart(encode(Result(msg.request_id, msg.frame_id, msg.plan_id,
                                                       "fair-worker", (), (), SERVICE_S)))
        self.sock.close(linger=0)


def request(i: int) -> list:
    return encode(Request(i, i, 1, "any", (), time.time(), 60.0))


@pytest.fixture
def broker(tmp_path: Path):  # noqa: ANN201
    ports = Ports(free_base(4), free_base(2))
    env = security_env(tmp_path)
    add_key(env["DADS_KEYS"], "edge", "calm")  # a second camera, with a key of its own
    proc = start_service("broker", ["--frontend", ports.frontend, "--backend", ports.backend,
                                    "--planner", "", "--metrics-port", str(ports.metrics_base),
                                    "--max-queue", str(MAX_QUEUE)],
                         tmp_path / "broker.log", env=env)
    wait_log(tmp_path / "broker.log", "frontend", proc, 60.0)
    yield ports, Path(env["DADS_KEYS"])
    # (the test reads the broker's /metrics before this stops it)
    stop_system({"broker": proc})


def test_a_flooding_edge_does_not_starve_another(broker) -> None:
    ports, keys_dir = broker
    worker = Worker(ports.backend, Keys.load(keys_dir, "worker"))
    worker.start()
    ctx = zmq.Context.instance()
    flood = client_socket(ctx, zmq.DEALER, ports.frontend, Keys.load(keys_dir, "edge"), "broker")
    calm = client_socket(ctx, zmq.DEALER, ports.frontend,
                         Keys.load(keys_dir, "edge", "edge-calm"), "broker")
    try:
        time.sleep(0.5)  # both connected, the worker registered
        for i in range(FLOOD):  # far more than the broker holds, all at once
            flood.send_multipart(request(i))
        time.sleep(0.2)  # the backlog is there before the calm edge asks
        before = len(worker.served)  # flood requests done when the calm edge starts
        for i in range(1000, 1000 + CALM):  # one at a time, each after the last answer
            calm.send_multipart(request(i))
            assert calm.poll(30_000), "the calm edge's request was never answered"
            msg, _ = decode(calm.recv_multipart())
            assert isinstance(msg, Result) and msg.request_id == i
        answered, refused = set(), set()
        deadline = time.monotonic() + 60
        while len(answered) + len(refused) < FLOOD and time.monotonic() < deadline:
            if flood.poll(1000):
                msg, _ = decode(flood.recv_multipart())
                if isinstance(msg, Result):
                    answered.add(msg.request_id)
                elif isinstance(msg, ErrorReply) and msg.retry:
                    refused.add(msg.request_id)
    finally:
        worker.stop.set()
        worker.join(5)
        flood.close(linger=0)
        calm.close(linger=0)
    # nothing of the flood is lost: each request answered, or refused with "retry"
    assert answered | refused == set(range(FLOOD)) and not answered & refused
    assert refused  # the queue is bounded
    # round robin: the calm edge waits for the flood request being served and at most one
    # more per turn, not for the backlog (first come, first served would have put its first
    # request behind the MAX_QUEUE requests waiting)
    at = [worker.served.index(i) for i in range(1000, 1000 + CALM)]
    waits = [at[0] - before] + [b - a - 1 for a, b in zip(at, at[1:], strict=False)]
    assert max(waits) <= 4, (waits, worker.served)  # first come, first served: 27
    # per edge, by the name of its key (a bounded label): what each asked and got
    text = scrape(ports.metrics_base)
    assert metric(text, "dads_edge_requests_total", edge="edge-calm", event="received") == CALM
    assert metric(text, "dads_edge_requests_total", edge="edge-calm", event="answered") == CALM
    assert metric(text, "dads_edge_requests_total", edge="edge", event="received") == FLOOD
    assert metric(text, "dads_edge_requests_total", edge="edge", event="answered") == len(answered)
    assert metric(text, "dads_edge_requests_total", edge="edge", event="overloaded") == len(refused)


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        return r.read().decode()
