"""`dads testbed`: two hosts on one machine, joined by a real link whose uplink is shaped.

Network namespaces `edge` and `cloud` (named per run), a veth pair between them (cloud
10.77.0.1, edge 10.77.0.2), and `tc qdisc tbf` on the edge's side shaping the edge→cloud uplink
to a DADS Table I preset or any rate. Cloud services (broker, planner, workers) run in `cloud`,
the edge agent in `edge`, configured by the same environment variables as docker-compose.yml.
The rate can change while everything runs; everything is torn down on exit, also after a failure.
Needs root (CAP_NET_ADMIN) and iproute2.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from common.planning.units import PRESETS, format_bandwidth, parse_bandwidth
from launch.procs import security_env, start_service, stop_system, wait_log

__all__ = ["Testbed", "ChainBed", "add_arguments", "main", "CLOUD_IP", "EDGE_IP", "CLOUD_MGMT_IP",
           "available"]

CLOUD_IP, EDGE_IP = "10.77.0.1", "10.77.0.2"
#: The management network (unshaped): this host's side, and the cloud's address on it.
HOST_MGMT_IP, CLOUD_MGMT_IP = "10.78.0.1", "10.78.0.2"
WORKER_METRICS_BASE = 9110


def _run(*cmd: str) -> None:
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {out.stderr.strip() or out.stdout.strip()}")


def _tbf(ns: str, dev: str, rate: str | float, shaped: bool) -> float:
    """Shape `dev`'s egress in namespace `ns` to `rate` with tbf (a small bucket: the rate holds
    for short bursts); returns bit/s. A rate that changes deletes the qdisc and adds a new one:
    `tc qdisc replace` (or `change`) of a tbf while a transfer was in its queue stalled that
    transfer until the next change here (kernel 6.18; 150 kB at 50 -> 5 Mbit/s took 4 s, not
    0.25), which no real link does; a new qdisc drops what was queued, which TCP resends."""
    bps = parse_bandwidth(rate)
    burst = max(4096, int(bps / 8 * 0.004))
    if shaped:
        _run("ip", "netns", "exec", ns, "tc", "qdisc", "del", "dev", dev, "root")
    _run("ip", "netns", "exec", ns, "tc", "qdisc", "add", "dev", dev, "root", "tbf", "rate",
         f"{int(bps)}bit", "burst", str(burst), "latency", "2s")
    return bps


def available() -> bool:
    """Whether this process can build a test bed (root and iproute2)."""
    import shutil

    return os.geteuid() == 0 and shutil.which("ip") is not None and shutil.which("tc") is not None


class _Bed:
    """`with bed:` builds it (and tears down what was built if that fails); leaving removes it."""

    def up(self) -> None:
        raise NotImplementedError

    def down(self) -> None:
        raise NotImplementedError

    def __enter__(self):  # noqa: ANN204 - the subclass
        try:
            self.up()
        except BaseException:
            self.down()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.down()


class Testbed(_Bed):
    def __init__(self, log_dir: Path, tag: str | None = None, manage: bool = False) -> None:
        """`manage`: also link this host to the cloud namespace (CLOUD_MGMT_IP, unshaped), so
        a controller here can reach the planner and metrics, as an operator's network would."""
        tag = tag or str(os.getpid() % 100000)
        self.edge_ns, self.cloud_ns = f"dads{tag}e", f"dads{tag}c"
        self.edge_if, self.cloud_if = f"d{tag}e", f"d{tag}c"
        self.manage, self.mgmt_if = manage, (f"d{tag}m", f"d{tag}n")
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.rate_bps: float | None = None
        self.workers = 0
        self.extra_env: dict[str, str] = {}  # e.g. a profile cache shared by every service
        self.security: dict[str, str] = {}  # CURVE keys of this bed's services (made in up())

    # -- the link --
    def up(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        if not self.security and "DADS_KEYS" not in self.extra_env:  # a caller's keys win
            self.security = security_env(self.log_dir)
        _run("ip", "netns", "add", self.edge_ns)
        _run("ip", "netns", "add", self.cloud_ns)
        _run("ip", "link", "add", self.edge_if, "type", "veth", "peer", "name", self.cloud_if)
        _run("ip", "link", "set", self.edge_if, "netns", self.edge_ns)
        _run("ip", "link", "set", self.cloud_if, "netns", self.cloud_ns)
        for ns, dev, ip in ((self.edge_ns, self.edge_if, EDGE_IP), (self.cloud_ns, self.cloud_if, CLOUD_IP)):
            _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
            _run("ip", "-n", ns, "link", "set", dev, "up")
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        if self.manage:
            taken = subprocess.run(["ip", "-br", "addr"], capture_output=True, text=True).stdout
            if f"{HOST_MGMT_IP}/" in taken:  # two would answer for one address: refuse
                raise RuntimeError(f"{HOST_MGMT_IP} is in use: another test bed with a management "
                                   "link runs here (one at a time), or a stale one; see `ip -br addr`")
            host_if, cloud_if = self.mgmt_if
            _run("ip", "link", "add", host_if, "type", "veth", "peer", "name", cloud_if)
            _run("ip", "link", "set", cloud_if, "netns", self.cloud_ns)
            _run("ip", "addr", "add", f"{HOST_MGMT_IP}/24", "dev", host_if)
            _run("ip", "link", "set", host_if, "up")
            _run("ip", "-n", self.cloud_ns, "addr", "add", f"{CLOUD_MGMT_IP}/24", "dev", cloud_if)
            _run("ip", "-n", self.cloud_ns, "link", "set", cloud_if, "up")

    def shape(self, rate: str | float) -> float:
        """Shape the edge→cloud uplink (tbf on the edge's interface); returns bit/s."""
        bps = _tbf(self.edge_ns, self.edge_if, rate, self.rate_bps is not None)
        self.rate_bps = bps
        return bps

    def down(self) -> None:
        stop_system(self.procs, timeout=10)
        for ns in (self.edge_ns, self.cloud_ns):
            with contextlib.suppress(RuntimeError):
                _run("ip", "netns", "del", ns)  # also removes the veth pair

    # -- services --
    def env(self) -> dict[str, str]:
        """What docker-compose.yml sets, for the same services."""
        return {"DADS_BROKER_HOST": CLOUD_IP, "DADS_PLANNER_HOST": CLOUD_IP, "DADS_BIND_HOST": "*",
                **self.security, **self.extra_env}

    def exec_prefix(self, side: str) -> list[str]:
        return ["ip", "netns", "exec", self.edge_ns if side == "edge" else self.cloud_ns]

    def start_cloud(self, model: str, workers: int, planner_args: list[str] | None = None) -> None:
        pre, env = self.exec_prefix("cloud"), self.env()
        self.procs["broker"] = start_service("broker", [], self.log_dir / "broker.log", env=env, prefix=pre)
        self.procs["planner"] = start_service("planner", [*(planner_args or [])],
                                         self.log_dir / "planner.log", env=env, prefix=pre)
        self.add_workers(model, workers)

    def add_workers(self, model: str, count: int) -> list[str]:
        """Start `count` more cloud workers (one torch thread each); returns their names."""
        pre, env = self.exec_prefix("cloud"), self.env()
        names = []
        for i in range(self.workers, self.workers + count):
            names.append(f"worker-{i}")
            self.procs[names[-1]] = start_service(
                "cloud_worker", ["--model", model, "--threads", "1", "--id", names[-1],
                                 "--metrics-port", str(WORKER_METRICS_BASE + i)],
                self.log_dir / f"{names[-1]}.log", env=env, prefix=pre)
        self.workers += count
        return names

    def start_edge(self, name: str, args: list[str], stdout: Any = "log") -> subprocess.Popen[bytes]:
        proc = start_service("edge_agent", args, self.log_dir / f"{name}.log", stdout=stdout,
                        env=self.env(), prefix=self.exec_prefix("edge"))
        self.procs[name] = proc
        return proc

    def cloud_python(self, code: str, timeout: float = 30) -> str:
        """Run a snippet in the cloud namespace (e.g. to query Prometheus there)."""
        out = subprocess.run([*self.exec_prefix("cloud"), sys.executable, "-c", code],
                             capture_output=True, text=True, timeout=timeout)
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return out.stdout


class ChainBed(_Bed):
    """Hosts in a chain (Scission's device -> edge server -> cloud), one network namespace each;
    link j joins host j and j+1 (10.80.j.0/24: host j is .2, host j+1 is .1) and is shaped by
    `tc tbf` in its forward direction (on host j's side). The middle hosts route, so every host
    reaches every other (a device's plans come from the cloud's planner through the edge
    server, over both links, as they would on a real chain)."""

    def __init__(self, log_dir: Path, hosts: int = 3, tag: str | None = None) -> None:
        if hosts < 2:
            raise ValueError("a chain has two hosts or more")
        tag = tag or str(os.getpid() % 100000)
        self.ns = [f"dads{tag}h{i}" for i in range(hosts)]
        self.ifs = [(f"d{tag}l{j}a", f"d{tag}l{j}b") for j in range(hosts - 1)]
        self.log_dir = log_dir
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.rates_bps: list[float | None] = [None] * (hosts - 1)
        self.security: dict[str, str] = {}

    def address(self, host: int) -> str:
        """An address of `host` (the one on its link toward the device)."""
        return "10.80.0.2" if host == 0 else f"10.80.{host - 1}.1"

    def up(self) -> None:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.security = self.security or security_env(self.log_dir)
        for ns in self.ns:
            _run("ip", "netns", "add", ns)
            _run("ip", "-n", ns, "link", "set", "lo", "up")
        for j, (a, b) in enumerate(self.ifs):
            _run("ip", "link", "add", a, "type", "veth", "peer", "name", b)
            for ns, dev, ip in ((self.ns[j], a, f"10.80.{j}.2"), (self.ns[j + 1], b, f"10.80.{j}.1")):
                _run("ip", "link", "set", dev, "netns", ns)
                _run("ip", "-n", ns, "addr", "add", f"{ip}/24", "dev", dev)
                _run("ip", "-n", ns, "link", "set", dev, "up")
        last = len(self.ns) - 1
        for i, ns in enumerate(self.ns):
            if 0 < i < last:
                _run("ip", "netns", "exec", ns, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1")
            for j in range(len(self.ifs)):  # the links not on this host: forward or back
                if j > i:
                    _run("ip", "-n", ns, "route", "add", f"10.80.{j}.0/24", "via", f"10.80.{i}.1")
                elif j < i - 1:
                    _run("ip", "-n", ns, "route", "add", f"10.80.{j}.0/24", "via",
                         f"10.80.{i - 1}.2")

    def shape(self, link: int, rate: str | float) -> float:
        """Shape link `link` (host link -> link + 1); returns bit/s."""
        bps = _tbf(self.ns[link], self.ifs[link][0], rate, self.rates_bps[link] is not None)
        self.rates_bps[link] = bps
        return bps

    def start(self, host: int, name: str, service: str, args: list[str],
              env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
        proc = start_service(service, args, self.log_dir / f"{name}.log",
                             env={**self.security, **(env or {})},
                             prefix=["ip", "netns", "exec", self.ns[host]])
        self.procs[name] = proc
        return proc

    # -- services: a broker and a worker per host after the first, the planner on the last --
    def endpoint(self, host: int, port: int) -> str:
        return f"tcp://{self.address(host)}:{port}"

    def start_tiers(self, model: str, tiers: list[str], planner_args: list[str],
                    worker_args: dict[int, list[str]] | None = None,
                    env: dict[str, str] | None = None) -> None:
        """The services of every host but the device's: the planner over `tiers` on the last
        host, a broker and a worker (`--tier`) on each, the middle ones forwarding to the next
        host's broker. Returns when every worker is ready."""
        last = len(self.ns) - 1
        plans, telemetry = self.endpoint(last, 5557), self.endpoint(last, 5558)
        self.start(last, "planner", "planner", ["--tiers", ",".join(tiers), *planner_args], env)
        for host in range(1, last + 1):
            tier = tiers[host]
            self.start(host, f"broker-{tier}", "broker", ["--planner", telemetry], env)
            forward = ["--next-broker", self.endpoint(host + 1, 5555)] if host < last else []
            self.start(host, f"worker-{tier}", "cloud_worker", [
                "--model", model, "--threads", "1", "--id", f"worker-{tier}", "--tier", tier,
                "--broker", "tcp://127.0.0.1:5556", "--plans", plans, "--telemetry", telemetry,
                *forward, *(worker_args or {}).get(host, [])], env)
        for tier in tiers[1:]:
            wait_log(self.log_dir / f"worker-{tier}.log", "ready on", self.procs[f"worker-{tier}"],
                     timeout=300)

    def start_device(self, name: str, args: list[str], env: dict[str, str] | None = None
                     ) -> subprocess.Popen[bytes]:
        """An edge agent on the first host, sending to the second host's broker."""
        last = len(self.ns) - 1
        return self.start(0, name, "edge_agent", [
            "--broker", self.endpoint(1, 5555), "--plans", self.endpoint(last, 5557),
            "--telemetry", self.endpoint(last, 5558), *args], env)

    def pin(self, edge_nodes: list[str], tier_nodes: list[list[str]], timeout: float = 60) -> dict:
        """Pin a placement at the planner (as an operator, on the planner's host); the plan it
        publishes for it (its JSON document)."""
        code = f"""
import json
from launch.testbed import pin_placement
print(json.dumps(pin_placement("tcp://127.0.0.1:5557", "tcp://127.0.0.1:5558",
                               {str(self.security["DADS_KEYS"])!r}, {edge_nodes!r},
                               {tier_nodes!r}, {timeout})))
"""
        out = self.python(len(self.ns) - 1, code, timeout=timeout + 10).strip()
        if not out or out == "null":
            raise TimeoutError(f"the planner published no plan for the pin; see "
                               f"{self.log_dir}/planner.log")
        return json.loads(out)

    def python(self, host: int, code: str, timeout: float = 30) -> str:
        """Run a snippet on a host, with this bed's keys (e.g. an operator's Control)."""
        out = subprocess.run(["ip", "netns", "exec", self.ns[host], sys.executable, "-c", code],
                             capture_output=True, text=True, timeout=timeout,
                             env={**os.environ, **self.security})
        if out.returncode != 0:
            raise RuntimeError(out.stderr.strip())
        return out.stdout

    def down(self) -> None:
        stop_system(self.procs, timeout=10)
        for ns in self.ns:
            with contextlib.suppress(RuntimeError):
                _run("ip", "netns", "del", ns)  # also removes its veth pairs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--rate", default="wifi",
                   help=f"uplink rate or preset ({', '.join(PRESETS)}; default wifi)")
    p.add_argument("--schedule", default="", metavar="S:RATE,...",
                   help="change the rate at these seconds, e.g. 20:3g,40:wifi")
    p.add_argument("--model", default="googlenet")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--fps", type=float, default=2.0)
    p.add_argument("--edge-slowdown", type=float, default=8.0, metavar="F",
                   help="emulate an edge F times slower than this machine (default 8)")
    p.add_argument("--duration", type=float, default=60.0, metavar="S")
    p.add_argument("--log-dir", default="out/testbed")


def main(args: argparse.Namespace) -> int:
    if os.geteuid() != 0:
        print("dads testbed needs root (network namespaces and tc)", file=sys.stderr)
        return 2
    schedule = []
    for item in filter(None, args.schedule.split(",")):
        at, _, rate = item.partition(":")
        schedule.append((float(at), rate))
    with Testbed(Path(args.log_dir)) as bed:
        print(f"testbed: cloud {CLOUD_IP} ({bed.cloud_ns}), edge {EDGE_IP} ({bed.edge_ns}), "
              f"uplink {format_bandwidth(bed.shape(args.rate))} (tc tbf); logs in {args.log_dir}/")
        bed.start_cloud(args.model, args.workers)
        edge = bed.start_edge("edge", ["--model", args.model, "--threads", "1", "--live", "--fps",
                                       str(args.fps), "--edge-slowdown", str(args.edge_slowdown)],
                              stdout=None)
        started = time.monotonic()
        try:
            while edge.poll() is None and time.monotonic() - started < args.duration:
                now = time.monotonic() - started
                while schedule and schedule[0][0] <= now:
                    _, rate = schedule.pop(0)
                    print(f"testbed: uplink now {format_bandwidth(bed.shape(rate))}", flush=True)
                time.sleep(0.2)
        except KeyboardInterrupt:
            pass
    return 0


def pin_placement(plans: str, telemetry: str, keys_dir: str, edge_nodes: list[str],
                  tier_nodes: list[list[str]], timeout: float = 60) -> dict | None:
    """Pin a placement over tiers at a planner, as an operator (`Control.tier_nodes`), and wait
    for the plan it publishes for it: its JSON document, or None if none came in `timeout` s."""
    import zmq

    from common.runtime.operator import Operator
    from common.runtime.security import Keys, client_socket
    from common.runtime.wire import Control, PlanMsg, decode

    keys, ctx = Keys.load(keys_dir, "operator"), zmq.Context.instance()
    sub = client_socket(ctx, zmq.SUB, plans, keys, "planner")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    operator = Operator(telemetry, keys, ctx)
    want = sorted(edge_nodes), [sorted(t) for t in tier_nodes]
    try:
        operator.control(Control(edge_nodes=tuple(want[0]),
                                 tier_nodes=tuple(tuple(t) for t in want[1])), timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if sub.poll(500):
                msg, _ = decode(sub.recv_multipart())
                plan = msg.plan if isinstance(msg, PlanMsg) else {}
                if (plan.get("edge_nodes"), plan.get("tier_nodes", [])) == want:
                    return plan
        return None
    finally:
        operator.close()
        sub.close(linger=0)
