"""`dads up`: the whole system on one machine, as processes on loopback.

Broker, planner, N cloud workers and an edge agent (synthetic frames, emulated uplink) start
as separate processes; the edge agent prints a live line per second and a summary at the end.
Ctrl-C (or --duration) stops the edge first, so frames in flight finish, then the rest.
`--link tc` runs the same system over a real link instead: the cloud's services and the edge in
two network namespaces joined by a veth pair, the uplink shaped by `tc tbf` (`launch.testbed`),
its schedule applied while the stream runs.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.errors import DadsError
from launch import story
from launch.procs import security_env, start_service, stop_system, wait_log
from services.edge_agent.results import read_results

__all__ = ["Ports", "free_base", "start_service", "wait_log", "start_cloud", "start_workers",
           "security_env", "spawn_system", "start_broker", "start_planner", "stop_system", "add_arguments", "main"]


@dataclass(frozen=True)
class Ports:
    base: int = 5555
    metrics_base: int = 9101

    @property
    def frontend(self) -> str:
        return f"tcp://127.0.0.1:{self.base}"

    @property
    def backend(self) -> str:
        return f"tcp://127.0.0.1:{self.base + 1}"

    @property
    def plans(self) -> str:
        return f"tcp://127.0.0.1:{self.base + 2}"

    @property
    def telemetry(self) -> str:
        return f"tcp://127.0.0.1:{self.base + 3}"


#: where `free_base` looks: below Linux's ephemeral ports (32768-60999), which outgoing
#: connections take at any moment. A test process of several side by side takes a slice of its
#: own (tests/conftest.py): a port is only reserved once a service binds it.
PORT_RANGE = (20000, 32700)


_HANDED: set[int] = set()  # the ports `free_base` has handed out in this process


def free_base(count: int = 4) -> int:
    """A base port with `count` free ports after it, none of them handed out before by this
    process: the ZeroMQ ports and the /metrics ports of one system are asked for one after the
    other, before any service binds them, and two ranges that overlapped gave a worker's
    /metrics the broker's port."""
    lo, hi = PORT_RANGE
    for _ in range(200):
        base = random.randint(lo, hi - count)
        if _HANDED.intersection(range(base, base + count)):
            continue
        socks: list[socket.socket] = []
        try:
            for p in range(base, base + count):
                s = socket.socket()
                socks.append(s)  # before bind: a socket whose bind fails is closed too
                s.bind(("127.0.0.1", p))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        _HANDED.update(range(base, base + count))
        return base
    raise RuntimeError("no free ports")


def start_broker(ports: Ports, log: Path, env: dict[str, str] | None = None
                 ) -> subprocess.Popen[bytes]:
    """The broker on loopback `ports` (also to restart one, on the same ports)."""
    return start_service("broker", ["--frontend", ports.frontend, "--backend", ports.backend,
                                    "--planner", ports.telemetry, "--metrics-port",
                                    str(ports.metrics_base)], log, env=env)


def start_planner(ports: Ports, log: Path, planner_args: list[str] | None = None,
                  env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """The planner on loopback `ports` (also to restart one, on the same ports)."""
    return start_service("planner", ["--plans", ports.plans, "--telemetry", ports.telemetry,
                                     "--metrics-port", str(ports.metrics_base + 1),
                                     *(planner_args or [])], log, env=env)


def start_cloud(ports: Ports, log_dir: Path, planner_args: list[str] | None = None,
                env: dict[str, str] | None = None) -> dict[str, subprocess.Popen[bytes]]:
    """Broker and planner on loopback `ports` (workers: `start_workers`); `env` added to ours."""
    log_dir.mkdir(parents=True, exist_ok=True)
    return {"broker": start_broker(ports, log_dir / "broker.log", env),
            "planner": start_planner(ports, log_dir / "planner.log", planner_args, env)}


def start_workers(ports: Ports, model: str, log_dir: Path, first: int, count: int,
                  threads: int = 1, extra: list[str] | None = None,
                  env: dict[str, str] | None = None) -> dict[str, subprocess.Popen[bytes]]:
    """Cloud workers `worker-{first}`.. on loopback `ports`; metrics on metrics_base + 2 + i."""
    return {f"worker-{i}": start_service(
        "cloud_worker", ["--model", model, "--threads", str(threads), "--plans", ports.plans,
                         "--telemetry", ports.telemetry, "--broker", ports.backend, "--id",
                         f"worker-{i}", "--metrics-port", str(ports.metrics_base + 2 + i),
                         *(extra or [])], log_dir / f"worker-{i}.log", env=env)
        for i in range(first, first + count)}


def spawn_system(ports: Ports, model: str, workers: int, log_dir: Path, edge_args: list[str],
                 threads: int = 1, edge_stdout: Any = "log",
                 worker_args: list[str] | None = None, env: dict[str, str] | None = None,
                 ) -> dict[str, subprocess.Popen[bytes]]:
    """Start every service; the caller owns stopping them (`stop_system`)."""
    procs = start_cloud(ports, log_dir, env=env)
    procs.update(start_workers(ports, model, log_dir, 0, workers, threads, worker_args, env=env))
    procs["edge"] = start_service(
        "edge_agent", ["--model", model, "--threads", str(threads), "--plans", ports.plans,
                       "--telemetry", ports.telemetry, "--broker", ports.frontend,
                       "--metrics-port", str(ports.metrics_base + 2 + workers), *edge_args],
        log_dir / "edge.log", stdout=edge_stdout, env=env)
    return procs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", default="googlenet", help="default googlenet")
    p.add_argument("--workers", type=int, default=2, help="cloud workers (default 2)")
    p.add_argument("--uplink", default="4g", metavar="RATE",
                   help="emulated uplink (default 4g = 5.85 Mbit/s; 'none' for loopback speed)")
    p.add_argument("--edge-slowdown", type=float, default=8.0, metavar="F",
                   help="emulate an edge device F times slower than this machine, whose cores "
                   "also run the workers (default 8; 1 = none)")
    p.add_argument("--fps", default="5", help="synthetic frames per second, or a schedule such as "
                   "2,12@40 (default 5)")
    p.add_argument("--duration", type=float, default=30.0, metavar="S",
                   help="stream this long from the first frame, then stop (default 30; 0 = until "
                   "Ctrl-C)")
    p.add_argument("--base-port", type=int, default=5555, help="ZeroMQ ports from here (5555-5558; 0: any free ones)")
    p.add_argument("--metrics-port", type=int, default=9101, help="/metrics ports from here (9101..; 0: any free ones)")
    p.add_argument("--log-dir", default="out/up", help="service logs (default out/up)")
    p.add_argument("--output", metavar="FILE", help="the edge's per-frame JSON lines")
    p.add_argument("--story", action="store_true",
                   help="the adaptation story (make demo), derived from this machine's profile: "
                   "the uplink steps from fast to slow (where the best plan changes) and back, "
                   "then the load exceeds one worker; what the planner should do and did, by "
                   "phase, and a timeline picture (LOG_DIR/timeline.png); exit 1 if it did not")
    p.add_argument("--check", action="store_true",
                   help="judge any run like the story: exit 1 if a phase's p95 exceeds twice "
                   "the planner's prediction plus a frame interval, the estimate lags a step, "
                   "the plan flaps after settling, or a frame is unaccounted for")
    p.add_argument("--link", choices=("emulated", "tc"), default="emulated",
                   help="the uplink: emulated inside the edge agent (default), or tc: a real "
                   "link between two network namespaces, shaped by tc tbf to the --uplink "
                   "schedule as the stream runs (needs root; see `dads testbed`)")
    p.add_argument("--insecure", action="store_true",
                   help="plaintext sockets (default: fresh throwaway CURVE keys in LOG_DIR/keys)")


def main(args: argparse.Namespace) -> int:
    if args.link == "tc" and os.geteuid() != 0:
        raise DadsError("--link tc needs root (network namespaces and tc): run it as root, or "
                        "leave --link out (the uplink emulated in the edge agent)")
    if args.link == "tc" and args.uplink == "none":
        raise DadsError("--link tc shapes the link to --uplink: give a rate, not 'none'")
    ports = Ports(args.base_port or free_base(4),
                  args.metrics_port or free_base(args.workers + 3))
    log_dir = Path(args.log_dir)
    args.output = args.output or str(log_dir / "frames.jsonl")
    if args.story:
        print(f"dads up --story: deriving the story from {args.model}'s profile here "
              "(measured once, then cached)...")
        script = story.script_here(args.model, args.edge_slowdown, args.workers)
        args.uplink, args.fps = script.uplink, script.fps
    else:
        script = story.script_of(args.uplink if args.uplink != "none" else "100gbit",
                                 str(args.fps), args.duration or 1e9)
    edge_args = ["--live", "--fps", str(args.fps), "--deadline", "20",
                 "--edge-slowdown", str(args.edge_slowdown), "--output", args.output]
    if args.uplink and args.uplink != "none" and args.link == "emulated":
        edge_args += ["--uplink", args.uplink]
    m = ports.metrics_base
    print(f"dads up: {args.model}, {args.workers} worker(s), uplink {args.uplink} "
          f"({'tc tbf on a veth pair' if args.link == 'tc' else 'emulated'}), "
          f"edge {args.edge_slowdown:g}x slower (emulated), {args.fps} fps; logs in {log_dir}/")
    if args.story:
        print(f"  the story ({script.seconds:.0f} s from the first frame; its rates and frame "
              "rates follow from this machine's profile):")
        print(script.describe())
    if args.link == "emulated":
        print(f"  broker   {ports.frontend} (edges), {ports.backend} (workers), metrics :{m}")
        print(f"  planner  {ports.plans} (plans), {ports.telemetry} (telemetry), metrics :{m + 1}")
        print(f"  workers  metrics :{m + 2}..:{m + 1 + args.workers};  edge metrics :{m + 2 + args.workers}")
    print("  (loading the model and profiling it on first start takes a few seconds; Ctrl-C stops)")
    log_dir.mkdir(parents=True, exist_ok=True)
    Path(args.output).unlink(missing_ok=True)
    env = security_env(log_dir, args.insecure)
    print("  sockets: plaintext (--insecure)" if args.insecure else
          f"  sockets: CURVE, throwaway keys in {log_dir}/keys")
    seconds = script.seconds if args.story else args.duration
    dead: list[str] = []
    with contextlib.ExitStack() as stack:
        if args.link == "tc":
            procs, planner_metrics, shape = _on_testbed(stack, args, log_dir, env, edge_args)
        else:
            procs = spawn_system(ports, args.model, args.workers, log_dir, edge_args,
                                 edge_stdout=None, env=env)
            planner_metrics, shape = f"http://127.0.0.1:{m + 1}/metrics", None
        recorder = stack.enter_context(story.PlannerRecorder(planner_metrics))
        try:
            while procs["edge"].poll() is None:
                streamed = _streamed(Path(args.output))
                if seconds and streamed > seconds:
                    break  # counted from the first frame, not from the start of loading
                if shape is not None:
                    shape(streamed)
                dead = [n for n, p in procs.items() if p.poll() is not None and n != "edge"]
                if dead:
                    break
                time.sleep(0.2)
        except KeyboardInterrupt:
            print("\nstopping...", file=sys.stderr)
        finally:
            stop_system(procs)
    for name in dead:  # a service that died stops the run: say why, and fail
        print(f"dads up: the {name} exited (code {procs[name].returncode}): "
              f"{_last_error(log_dir / f'{name}.log')}; see {log_dir}/{name}.log", file=sys.stderr)
    failed = bool(dead)
    if Path(args.output).exists() and read_results(Path(args.output)):
        told = story.Story.load(Path(args.output), recorder.samples, script, args.workers)
        print(told.summary())
        told.plot(log_dir / "timeline.png")
        (log_dir / "story.json").write_text(told.to_json())
        print(f"timeline: {log_dir / 'timeline.png'}")
        failed = failed or ((args.story or args.check) and bool(told.failures()))
    if procs["edge"].returncode not in (0, -signal.SIGINT):
        print(f"dads up: the edge agent failed (exit {procs['edge'].returncode}): "
              f"{_last_error(log_dir / 'edge.log')}; see {log_dir}/edge.log", file=sys.stderr)
        return 1
    return 1 if failed else 0


def _on_testbed(stack: contextlib.ExitStack, args: argparse.Namespace, log_dir: Path,
                env: dict[str, str], edge_args: list[str]
                ) -> tuple[dict[str, subprocess.Popen[bytes]], str, Any]:
    """The system on the test bed (torn down when `stack` closes): its processes, where the
    planner's /metrics answers (over the bed's unshaped management link), and the function
    that shapes the uplink to its schedule, given the seconds streamed so far."""
    from common.planning.units import format_bandwidth, parse_bandwidth
    from common.runtime import config
    from launch import testbed
    from services.edge_agent.state import Schedule

    uplink = Schedule.parse(args.uplink, parse_bandwidth)
    bed = testbed.Testbed(log_dir, manage=True)
    bed.extra_env = env
    stack.enter_context(bed)
    bed.shape(uplink.at(0.0))
    print(f"  test bed: cloud {testbed.CLOUD_IP} ({bed.cloud_ns}), edge {testbed.EDGE_IP} "
          f"({bed.edge_ns}); the planner's metrics at {testbed.CLOUD_MGMT_IP}")
    bed.start_cloud(args.model, args.workers)
    bed.start_edge("edge", ["--model", args.model, "--threads", "1", *edge_args], stdout=None)

    def shape(streamed: float) -> None:
        rate = uplink.at(streamed)
        if rate != bed.rate_bps:
            print(f"dads up: uplink now {format_bandwidth(bed.shape(rate))} (tc)", flush=True)

    port = int(config.env("DADS_METRICS_PORT") or 9102)  # the planner's, as it reads it
    return bed.procs, f"http://{testbed.CLOUD_MGMT_IP}:{port}/metrics", shape


def _last_error(log: Path) -> str:
    """The line of a service's log that says why it stopped: its last error, else its last."""
    lines = [x.strip() for x in log.read_text(errors="replace").splitlines() if x.strip()] \
        if log.exists() else []
    errors = [x for x in lines if "error" in x.lower() and not x.startswith("File ")]
    return (errors or lines or ["(its log is empty)"])[-1][:300]


def _streamed(results: Path) -> float:
    """Seconds since the first frame was captured (0 before any is answered)."""
    first = story.first_capture(read_results(results)) if results.exists() else None
    return 0.0 if first is None else time.time() - first
