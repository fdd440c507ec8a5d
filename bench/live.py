"""The running system under measurement: real services, a real (or emulated) uplink, operator pins.

Broker, planner and cloud workers start once per model; an edge agent starts per uplink and
load. The benchmark steers the planner as an operator would (`Control`: the uplink's rate, a
pinned algorithm or cut), learns each plan and its prediction from the planner's own PUB socket,
and reads the edge's per-frame JSON lines. Where this process may build the test bed (root),
the uplink is a veth pair shaped by `tc tbf` and the controller reaches the cloud over an
unshaped management link; elsewhere the edge's sender emulates the uplink (and says so).

Light load is the edge's closed loop (a frame is captured only when the last one is done, so no
frame ever waits for another: the paper's 0.1 fps, without waiting 10 s per frame); heavy load
is a 20 fps live source that drops what the pipeline cannot take.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from common.planning.partition import Plan
from common.planning.units import parse_bandwidth
from common.runtime import config
from common.runtime.operator import Operator
from common.runtime.security import Keys, client_socket
from common.runtime.wire import Control, PlanMsg, decode
from launch import testbed
from launch.up import (
    Ports,
    free_base,
    security_env,
    start_cloud,
    start_service,
    start_workers,
    stop_system,
    wait_log,
)
from services.edge_agent.results import read_results

LIGHT = ["--closed-loop", "--fps", "0", "--window", "1", "--queue", "1", "--deadline", "120"]
HEAVY_FPS = 20.0


def heavy_args(fps: float = HEAVY_FPS, window: int = 8) -> list[str]:
    return ["--fps", str(fps), "--window", str(window), "--queue", "8", "--deadline", "600"]


@dataclass
class Measured:
    """One plan, measured: per-frame lines of the edge, and what the planner predicted."""

    plan: Plan
    lines: list[dict[str, Any]] = field(default_factory=list)
    throughput_fps: float | None = None

    @property
    def latency_s(self) -> float | None:
        return statistics.median(x["latency_s"] for x in self.lines) if self.lines else None

    def stage_s(self, stage: str) -> float | None:
        if not self.lines:
            return None
        if stage == "transfer":  # what is neither edge nor cloud compute: link, queues, hops
            return statistics.median(x["latency_s"] - x["edge_s"] - x["cloud_s"] for x in self.lines)
        return statistics.median(x[f"{stage}_s"] for x in self.lines)


class Live:
    """Services of one model; `edge()` runs an edge agent, `pin()` steers the planner."""

    def __init__(self, model: str, log_dir: Path, edge_slowdown: float, workers: int = 1,
                 use_testbed: bool | None = None, cloud_device: str = "cpu",
                 planner_args: list[str] | None = None) -> None:
        self.model, self.log_dir, self.slowdown = model, log_dir, edge_slowdown
        self.env = {  # every service's; the edge overrides the device with --device cpu
            "DADS_CACHE": os.environ.get("DADS_CACHE", str(Path.home() / ".cache" / "dads")),
            "DADS_DEVICE": cloud_device}
        self.use_testbed = testbed.available() if use_testbed is None else use_testbed
        self.initial_workers = workers
        self.workers = 0
        self.uplink_bps = 0.0
        self.last_plan_id = 0
        self.bed: testbed.Testbed | None = None
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.edges = 0
        self.planner_args = ["--tick", "0.2"] if planner_args is None else planner_args

    @property
    def link(self) -> str:
        return link_description(self.use_testbed)

    # -- lifecycle --
    def __enter__(self) -> Live:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.env.update(security_env(self.log_dir))  # CURVE, as deployed: throwaway keys
        operator = Keys.load(self.env["DADS_KEYS"], "operator")
        planner = self.planner_args
        try:
            if self.use_testbed:
                self.bed = testbed.Testbed(self.log_dir, manage=True)
                self.bed.extra_env = self.env
                self.bed.up()
                self.bed.start_cloud(self.model, 0, planner)
                self.procs = self.bed.procs
                host = testbed.CLOUD_MGMT_IP
                port = lambda var: int(config.ENV[var][0])  # noqa: E731
                self.plans = f"tcp://{host}:{port('DADS_PLAN_PORT')}"
                self.telemetry = f"tcp://{host}:{port('DADS_TELEMETRY_PORT')}"
            else:
                self.ports = Ports(free_base(4), free_base(16))
                self.procs = start_cloud(self.ports, self.log_dir, planner, self.env)
                self.plans, self.telemetry = self.ports.plans, self.ports.telemetry
            ctx = zmq.Context.instance()
            self.sub = client_socket(ctx, zmq.SUB, self.plans, operator, "planner")
            self.sub.setsockopt(zmq.SUBSCRIBE, b"")
            self.operator = Operator(self.telemetry, operator)
            self.add_workers(self.initial_workers)
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if hasattr(self, "sub"):
            self.sub.close(linger=0)
        if hasattr(self, "operator"):
            self.operator.close()
        if self.bed is not None:
            self.bed.down()
        else:
            stop_system(self.procs, timeout=10)

    def add_workers(self, count: int) -> None:
        if self.bed is not None:
            names = self.bed.add_workers(self.model, count)
        else:
            started = start_workers(self.ports, self.model, self.log_dir, self.workers, count,
                                    env=self.env)
            self.procs.update(started)
            names = list(started)
        for name in names:
            wait_log(self.log_dir / f"{name}.log", "ready on", self.procs.get(name), 300.0)
        self.workers += count

    # -- steering --
    def control(self, **fields: Any) -> None:
        """An operator control, applied (or an error that says why not)."""
        self.operator.control(Control(**fields))

    def set_uplink(self, rate: str) -> None:
        self.uplink_bps = parse_bandwidth(rate)
        if self.bed is not None:
            self.bed.shape(rate)
        self.control(force_bandwidth_bps=self.uplink_bps)  # plan for the link, not the probe

    def pin(self, algorithm: str | None = None, cut: tuple[str, ...] | None = None,
            timeout: float = 120.0) -> Plan:
        """Pin an algorithm or a cut; the new plan once the planner publishes it for k workers."""
        deadline = time.monotonic() + timeout
        want = "pinned" if cut is not None else None if algorithm in (None, "auto") else algorithm
        while True:
            self.control(algorithm=algorithm or "auto", edge_nodes=cut if cut is not None else ())
            plan = self._newest_plan(deadline)
            while want is not None and plan.algorithm != want:  # not yet this pin's
                plan = self._newest_plan(deadline)
            if plan.workers == self.workers and plan.bandwidth_bps == self.uplink_bps:
                return plan
            time.sleep(0.5)  # the planner has not seen every worker (or the rate) yet

    def _newest_plan(self, deadline: float, settle_s: float = 0.5) -> Plan:
        """The newest plan published since the last one taken. A control is answered once its
        tick has published, so what is queued by then includes its plan; plans made for
        earlier controls (a new rate under the last pin) queued before it are passed over."""
        newest: Plan | None = None
        quiet_at = 0.0
        while time.monotonic() < deadline:
            if self.sub.poll(100):
                msg, _ = decode(self.sub.recv_multipart())
                if isinstance(msg, PlanMsg):
                    plan = Plan.from_json(msg.plan)
                    if plan.plan_id > max(self.last_plan_id, newest.plan_id if newest else 0):
                        newest, quiet_at = plan, time.monotonic() + settle_s
            elif newest is not None and time.monotonic() >= quiet_at:
                self.last_plan_id = newest.plan_id
                return newest
        raise TimeoutError(f"no new plan from the planner; see {self.log_dir}/planner.log")

    # -- the edge --
    @contextlib.contextmanager
    def edge(self, load_args: list[str], uplink: str | None = None) -> Iterator[EdgeRun]:
        """An edge agent; `uplink` (a rate or schedule) is emulated where there is no test bed."""
        self.edges += 1
        name = f"edge-{self.edges}"
        out = self.log_dir / f"{name}.jsonl"
        args = ["--model", self.model, "--device", "cpu", "--threads", "1", "--frames", "0",
                "--edge-slowdown", str(self.slowdown), "--output", str(out), *load_args]
        if self.bed is not None:
            proc = self.bed.start_edge(name, args)
        else:
            p = self.ports
            args += ["--plans", p.plans, "--telemetry", p.telemetry, "--broker", p.frontend,
                     "--metrics-port", "0",  # any free port: several edges may run
                     "--uplink", uplink or str(self.uplink_bps)]
            proc = start_service("edge_agent", args, self.log_dir / f"{name}.log", env=self.env)
            self.procs[name] = proc
        run = EdgeRun(proc, out, self.log_dir / f"{name}.log")
        try:
            yield run
        finally:
            stop_system({name: proc}, timeout=30)
            self.procs.pop(name, None)


@dataclass
class EdgeRun:
    proc: subprocess.Popen[bytes]
    out: Path
    log: Path

    def _lines(self, plan_id: int) -> list[dict[str, Any]]:
        return [x for x in read_results(self.out)
                if x.get("plan_id") == plan_id and not x["dropped"]]

    def _wait(self, done: Any, timeout: float, plan_id: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        while True:
            lines = self._lines(plan_id)
            if done(lines) or time.monotonic() > deadline:
                return lines
            if self.proc.poll() is not None:
                raise RuntimeError(f"the edge agent exited; see {self.log}")
            time.sleep(0.1)

    def latency(self, plan: Plan, frames: int, warm: int = 1, timeout: float = 300.0) -> Measured:
        """`frames` closed-loop frames of this plan after `warm` (the worker builds its part)."""
        lines = self._wait(lambda ls: len(ls) >= warm + frames, timeout, plan.plan_id)
        return Measured(plan, sorted(lines, key=lambda x: x["frame_id"])[warm:warm + frames])

    def throughput(self, plan: Plan, min_done: int, min_span_s: float, skip: int,
                   timeout: float = 180.0) -> Measured:
        """Results per second of this plan in steady state: the first `skip` fill the pipeline."""
        def enough(ls: list[dict[str, Any]]) -> bool:
            t = sorted(x["done_at"] for x in ls)[skip:]
            return len(t) >= min_done and t[-1] - t[0] >= min_span_s

        lines = sorted(self._wait(enough, timeout, plan.plan_id), key=lambda x: x["done_at"])[skip:]
        m = Measured(plan, lines)
        if len(lines) >= 2 and lines[-1]["done_at"] > lines[0]["done_at"]:
            m.throughput_fps = (len(lines) - 1) / (lines[-1]["done_at"] - lines[0]["done_at"])
        return m


def link_description(use_testbed: bool | None = None) -> str:
    """How the uplink is made, in words, for the tables."""
    if use_testbed is None:
        use_testbed = testbed.available()
    return ("`tc tbf` on a veth pair between two network namespaces (the test bed)" if use_testbed
            else "emulated in the edge's sender (no root here)")


def hardware(cloud_device: str = "cpu") -> str:
    """The edge and cloud, in words, for the tables."""
    from common.model.profiler import _cpu_name

    cpu = f"{_cpu_name()}, {os.cpu_count()} cores"
    if not cloud_device.startswith("cuda"):
        return f"{cpu}, shared by edge and cloud"
    import torch

    return f"edge: {cpu}; cloud: {torch.cuda.get_device_name(torch.device(cloud_device))}"
