"""Start the real services as processes on loopback, for the runtime tests."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import zmq

from common.runtime.operator import Operator
from common.runtime.security import Keys, client_socket
from common.runtime.wire import Control, ControlReply
from launch.up import (
    Ports,
    free_base,
    security_env,
    start_broker,
    start_cloud,
    start_planner,
    start_service,
    start_workers,
    stop_system,
    wait_log,
)
from services.edge_agent.results import read_results

MODEL = "googlenet"


class System:
    """Broker, planner and workers; edge agents run per test with `stream`.

    Every socket is CURVE-authenticated with keys made for the system (`self.env` gives them to
    each process); `socket(role)` connects as that role, as a tool or an attacker would.
    """

    def __init__(self, tmp: Path, workers: int = 2, planner_args: list[str] | None = None,
                 worker_args: list[str] | None = None, model: str = MODEL) -> None:
        self.tmp = tmp
        self.model = model
        self.ports = Ports(free_base(4), free_base(8))
        self.env = security_env(tmp)
        self.keys_dir = Path(self.env["DADS_KEYS"])
        self.procs = start_cloud(self.ports, tmp, planner_args, env=self.env)
        self.procs.update(start_workers(self.ports, model, tmp, 0, workers, extra=worker_args,
                                        env=self.env))
        self.edge_port = self.ports.metrics_base + 2 + workers
        self.edges: list[str] = []  # the edge agents started on the edge port, by name
        try:
            self.wait_log("broker", "frontend")
            for i in range(workers):
                self.wait_log(f"worker-{i}", "ready on")
        except BaseException:  # one that never came up: the others are stopped, not left
            self.close()
            raise

    def log(self, name: str) -> str:
        path = self.tmp / f"{name}.log"
        return path.read_text() if path.exists() else ""

    def wait_log(self, name: str, text: str, timeout: float = 120.0) -> None:
        wait_log(self.tmp / f"{name}.log", text, self.procs.get(name), timeout)

    def start_edge(self, name: str, frames: int, fps: float = 5.0, extra: list[str] | None = None,
                   shed: bool = False) -> tuple[subprocess.Popen[bytes], Path]:
        """An edge agent streaming synthetic frames; it keeps every frame (`--no-shed`: the
        tests check each one) unless `shed`, as a live camera does."""
        out = self.tmp / f"{name}.jsonl"
        if "--metrics-port" not in (extra or []):  # it takes the system's edge port
            for edge in self.edges:  # one a failed test left running holds that port
                if self.procs[edge].poll() is None:
                    self.procs[edge].kill()
                    self.procs[edge].wait()
            self.edges.append(name)
        p = self.ports
        args = ["--model", self.model, "--threads", "1", "--plans", p.plans, "--telemetry", p.telemetry,
                "--broker", p.frontend, "--metrics-port", str(self.edge_port), "--frames",
                str(frames), "--fps", str(fps), "--output", str(out), "--want-output",
                "--deadline", "60", "--edge-slowdown", "8", *([] if shed else ["--no-shed"]),
                *(extra or [])]
        proc = start_service("edge_agent", args, self.tmp / f"{name}.log", env=self.env)
        self.procs[name] = proc
        return proc, out

    def stop_edge(self, name: str, timeout: float = 120.0) -> int:
        """Stop an edge as a user does (Ctrl-C: it finishes its frames in flight); its exit code."""
        proc = self.procs[name]
        proc.send_signal(signal.SIGINT)
        return proc.wait(timeout)

    def stream(self, name: str, frames: int, fps: float = 5.0, extra: list[str] | None = None,
               timeout: float = 240.0, shed: bool = False) -> list[dict]:
        proc, out = self.start_edge(name, frames, fps, extra, shed)
        proc.wait(timeout)
        assert proc.returncode == 0, self.log(name)[-3000:]
        return read_lines(out)

    def ctl(self, bandwidth: str) -> None:
        subprocess.run([sys.executable, "-m", "cli", "ctl", "--planner",
                        self.ports.telemetry, "--bandwidth", bandwidth], check=True,
                       capture_output=True, env={**os.environ, "PYTHONUNBUFFERED": "1", **self.env})

    def control(self, bandwidth_bps: float | None = None, algorithm: str | None = None,
                edge_nodes: tuple[str, ...] | None = None,
                latency_goal_s: float | None = None) -> ControlReply:
        """Operator controls, applied (`ctl` does the same through the CLI)."""
        return self.operate(Control(bandwidth_bps, algorithm, edge_nodes, latency_goal_s))

    def operate(self, msg: Control) -> ControlReply:
        with Operator(self.ports.telemetry, Keys.load(self.keys_dir, "operator")) as op:
            return op.control(msg, timeout_s=30.0)

    def socket(self, kind: int, endpoint: str, role: str | None, server: str) -> zmq.Socket:
        """A blocking socket connected as `role` (None: a stranger without keys)."""
        keys = Keys.load(self.keys_dir, role) if role else None
        return client_socket(zmq.Context.instance(), kind, endpoint, keys, server)

    def scrape(self, port: int) -> str:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            return r.read().decode()

    def start_planner(self, log_name: str, planner_args: list[str] | None = None) -> None:
        """(Re)start the planner on the same ports, logging to `log_name`."""
        self.procs["planner"] = start_planner(self.ports, self.tmp / f"{log_name}.log",
                                              planner_args, self.env)

    def start_broker(self, log_name: str) -> None:
        """(Re)start the broker on the same ports, logging to `log_name`."""
        self.procs["broker"] = start_broker(self.ports, self.tmp / f"{log_name}.log", self.env)

    def close(self) -> None:
        stop_system(self.procs)


_WARM: dict[str, Path] = {}


def warm_cache(factory) -> Path:
    """The test run's one profile cache, holding the served model's profile on one thread (what
    every service of the runtime tests measures first): profiled once per test process, not
    once per system."""
    if "dir" not in _WARM:
        import torch

        from common.model.graph import trace
        from common.model.models import input_shape_for, load_served, synthetic_frame
        from common.model.profiler import cached_profile

        folder = factory.getbasetemp() / "warm-cache"
        old, threads = os.environ.get("DADS_CACHE"), torch.get_num_threads()
        os.environ["DADS_CACHE"] = str(folder)
        try:
            shape = input_shape_for(MODEL)
            graph = trace(load_served(MODEL), synthetic_frame(0, shape), name=MODEL)
            cached_profile(graph, "cpu", threads=1, progress=False)
        finally:
            torch.set_num_threads(threads)
            _restore("DADS_CACHE", old)
        _WARM["dir"] = folder
    return _WARM["dir"]


def _restore(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


@contextlib.contextmanager
def shared_cache(factory, fresh: bool = False):
    """One profile cache for every process started inside: the run's warm one (each model is
    profiled once per test process), or with `fresh` an empty one of its own."""
    old = os.environ.get("DADS_CACHE")
    os.environ["DADS_CACHE"] = str(factory.mktemp("cache") if fresh else warm_cache(factory))
    try:
        yield
    finally:
        _restore("DADS_CACHE", old)


@contextlib.contextmanager
def shared_cache_system(factory, workers: int = 2, planner_args: list[str] | None = None,
                        worker_args: list[str] | None = None, model: str = MODEL,
                        fresh: bool = False):
    """A System whose processes share one profile cache (`shared_cache`)."""
    with shared_cache(factory, fresh):
        system = System(factory.mktemp("system"), workers=workers, planner_args=planner_args,
                        worker_args=worker_args, model=model)
        try:
            yield system
        finally:
            system.close()


def read_lines(path: Path) -> list[dict]:
    return read_results(path)


def wait_lines(system: System, name: str, out: Path, proc: subprocess.Popen[bytes], count: int,
               timeout: float = 180) -> None:
    """Until edge `name` has written `count` result lines (fails with its log if it died)."""
    deadline = time.monotonic() + timeout
    while len(read_lines(out)) < count:
        assert time.monotonic() < deadline and proc.poll() is None, system.log(name)[-3000:]
        time.sleep(0.1)


def metric(text: str, name: str, **labels: str) -> float:
    """The value of one sample in a Prometheus text exposition (0 if absent)."""
    want = ",".join(f'{k}="{v}"' for k, v in labels.items())
    total = 0.0
    for line in text.splitlines():
        if line.startswith("#"):
            continue
        head, _, value = line.rpartition(" ")
        metric_name, _, label_part = head.partition("{")
        if metric_name == name and (not want or want in label_part):
            total += float(value)
    return total


def assert_exact(lines: list[dict], reference, frames: int) -> None:
    """Every frame 0..frames-1 answered (none dropped), each equal to the whole model's output."""
    import torch

    from common.model.split import relative_error

    assert sorted(line["frame_id"] for line in lines) == list(range(frames))
    for line in lines:
        assert not line["dropped"], line
        out = torch.tensor(line["output"]).reshape(1, -1)
        assert relative_error(out, reference(line["frame_id"])) <= 1e-5, line["frame_id"]
