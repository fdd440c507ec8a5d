"""Trust nothing on the network: real services with CURVE keys, attacked for real.

Strangers without keys, an edge key posing as a worker, an edge key sending operator controls:
all refused before any handler sees their bytes (or, behind the planner's shared inbox, by the
message's required role), counted in `dads_auth_failures_total`, and serving goes on.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time

import pytest
import zmq

from common.runtime.security import Keys, KeysError, client_socket, init_keys
from common.runtime.wire import Control, ErrorReply, Ready, Request, decode, encode
from launch.up import start_service
from tests.system import System, assert_exact, metric, shared_cache_system

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def system(tmp_path_factory: pytest.TempPathFactory):
    with shared_cache_system(tmp_path_factory, workers=1,
                             planner_args=["--initial-bandwidth", "1gbit"]) as s:
        yield s


def wait_metric(system: System, port: int, name: str, at_least: float, **labels: str) -> float:
    deadline = time.monotonic() + 15
    while (value := metric(system.scrape(port), name, **labels)) < at_least:
        assert time.monotonic() < deadline, f"{name}{labels} stayed at {value}"
        time.sleep(0.2)
    return value


def test_a_stranger_without_keys_is_refused_and_counted(system: System) -> None:
    planner_port, broker_port = system.ports.metrics_base + 1, system.ports.metrics_base
    push = system.socket(zmq.DEALER, system.ports.telemetry, None, "planner")  # no keys at all
    with contextlib.suppress(zmq.Again):  # queued at most: the handshake never completes
        push.send_multipart(encode(Control(force_bandwidth_bps=1e3)), zmq.NOBLOCK)
    dealer = system.socket(zmq.DEALER, system.ports.backend, None, "broker")
    wait_metric(system, planner_port, "dads_auth_failures_total", 1, role="planner-in")
    wait_metric(system, broker_port, "dads_auth_failures_total", 1, role="worker")
    push.close(linger=0)
    dealer.close(linger=0)
    assert "operator: bandwidth 1" not in system.log("planner")  # never obeyed


def test_an_edge_key_cannot_pose_as_a_worker(system: System) -> None:
    broker_port = system.ports.metrics_base
    wait_metric(system, broker_port, "dads_workers_ready", 1)  # the real worker has registered
    before = metric(system.scrape(broker_port), "dads_auth_failures_total", role="worker")
    fake = system.socket(zmq.DEALER, system.ports.backend, "edge", "broker")
    fake.send_multipart(encode(Ready("fake-worker", "f" * 32, "cpu")))  # queued, never delivered
    wait_metric(system, broker_port, "dads_auth_failures_total", before + 1, role="worker")
    fake.close(linger=0)
    assert "fake-worker" not in system.log("broker")
    assert metric(system.scrape(broker_port), "dads_workers_ready") == 1


def test_a_worker_key_cannot_submit_requests(system: System) -> None:
    broker_port = system.ports.metrics_base
    before = metric(system.scrape(broker_port), "dads_auth_failures_total", role="edge")
    fake = system.socket(zmq.DEALER, system.ports.frontend, "worker", "broker")
    fake.send_multipart(encode(Request(1, 0, 1, "f" * 32, (), 0.0, 5.0)))
    wait_metric(system, broker_port, "dads_auth_failures_total", before + 1, role="edge")
    fake.setsockopt(zmq.RCVTIMEO, 500)
    with pytest.raises(zmq.Again):  # not even an error reply: its bytes were never read
        fake.recv_multipart()
    fake.close(linger=0)


def test_an_edge_key_cannot_send_operator_controls(system: System, reference) -> None:
    planner_port = system.ports.metrics_base + 1
    push = system.socket(zmq.DEALER, system.ports.telemetry, "edge", "planner")
    push.setsockopt(zmq.LINGER, 2000)
    push.send_multipart(encode(Control(force_bandwidth_bps=1e3)))
    push.close()
    wait_metric(system, planner_port, "dads_auth_failures_total", 1, role="operator")
    assert "refused a Control from a edge key" in system.log("planner")
    assert "operator: bandwidth 1" not in system.log("planner")
    assert system.control(bandwidth_bps=2e9).applied  # the operator's key is obeyed, and says so
    assert "operator: bandwidth 2" in system.log("planner")
    system.control(bandwidth_bps=0.0)
    assert_exact(system.stream("edge-after-attacks", frames=4, fps=4), reference, 4)


def test_a_client_refuses_a_server_with_the_wrong_key(system: System, tmp_path) -> None:
    """Ironhouse: an edge that trusts another broker key never talks to this broker."""
    other = tmp_path / "other"
    init_keys(other)
    mine = Keys.load(system.keys_dir, "edge")
    fake_trust = Keys(mine.directory, "edge", mine.public, mine.secret,
                      {"broker": Keys.load(other, "edge").servers["broker"]}, {})
    dealer = client_socket(zmq.Context.instance(), zmq.DEALER, system.ports.frontend, fake_trust,
                           "broker")
    dealer.send_multipart(encode(Request(9, 0, 1, "f" * 32, (), 0.0, 5.0)))
    dealer.setsockopt(zmq.RCVTIMEO, 1500)
    with pytest.raises(zmq.Again):
        dealer.recv_multipart()
    dealer.close(linger=0)


def test_an_edge_with_keys_of_another_init_says_so_once(system: System, tmp_path) -> None:
    """A camera given keys from another `dads keys init`: every handshake fails; it says so
    once per server, plainly, with what to check, and counts each, instead of a link that
    comes and goes ten times a second."""
    other = tmp_path / "other"
    init_keys(other)
    out = tmp_path / "wrong-keys.jsonl"
    log = tmp_path / "wrong-keys.log"
    p = system.ports
    proc = start_service("edge_agent", [
        "--model", system.model, "--threads", "1", "--plans", p.plans, "--telemetry", p.telemetry,
        "--broker", p.frontend, "--metrics-port", "0", "--frames", "0", "--fps", "2",
        "--output", str(out), "--name", "wrong-keys"], log, env={**system.env,
                                                                "DADS_KEYS": str(other)})
    try:
        deadline = time.monotonic() + 120
        while log.read_text().count("handshake with the") < 3:  # broker, plans, telemetry
            assert time.monotonic() < deadline and proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.2)
        time.sleep(3.0)  # ~30 more retries of each
    finally:
        proc.kill()
        proc.wait()
    text = log.read_text()
    assert text.count("handshake with the broker") == 1, text[-3000:]
    assert text.count("handshake with the planner") == 2, text[-3000:]  # its plan feed, inbox
    assert "is not that broker's (keys from another `dads keys init`?)" in text
    assert "lost the broker" not in text and "broker back" not in text


def test_no_keys_and_no_insecure_is_a_clear_error(tmp_path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in ("DADS_KEYS", "DADS_INSECURE")}
    run = subprocess.run([sys.executable, "-m", "services.broker", "--metrics-port", "0"],
                         capture_output=True, text=True, timeout=60, env=env)
    assert run.returncode == 2 and "dads keys init" in run.stderr, run.stderr
    loose = tmp_path / "keys"
    init_keys(loose)
    (loose / "broker.key_secret").chmod(0o644)
    with pytest.raises(KeysError, match="chmod 600"):
        Keys.load(loose, "broker")


def test_an_authenticated_peer_is_answered(system: System) -> None:
    """The counterpart of the refusals: a real edge key gets a real (error) reply."""
    dealer = system.socket(zmq.DEALER, system.ports.frontend, "edge", "broker")
    dealer.setsockopt(zmq.RCVTIMEO, 30_000)
    dealer.send_multipart(encode(Request(3, 0, 1, "f" * 32, (), 0.0, 5.0)))
    reply, _ = decode(dealer.recv_multipart())
    dealer.close(linger=0)
    assert isinstance(reply, ErrorReply) and reply.code == "fingerprint"


def test_a_key_directory_others_may_write_to_is_refused(tmp_path, caplog) -> None:
    """Every ROLE*.key in the directory is admitted: one others can write to is refused (with
    the fix); one they can read is warned about (700 is asked for)."""
    keys = tmp_path / "keys"
    init_keys(keys)
    keys.chmod(0o777)
    with pytest.raises(KeysError, match="chmod 700"):
        Keys.load(keys, "broker")
    keys.chmod(0o755)
    with caplog.at_level("WARNING"):
        Keys.load(keys, "broker")
    assert "open to others (mode 0o755): chmod 700" in caplog.text
