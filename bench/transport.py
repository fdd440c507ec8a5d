"""Transport: edge → broker → worker on loopback, with the real broker in between.

    python -m bench.transport [--quick]

The broker is the real service in its own process. The edge and the worker are two more
processes of this script that speak the wire contract with the services' own `Channel` and codec:
the worker validates each request, views its frames as tensors (zero-copy, as a real worker does)
and answers a small Result without running a model, so what is timed is the transport alone —
two ZeroMQ hops each way, header encode/decode and validation, the broker's dispatch.

Two numbers per payload size: throughput with a window of requests in flight (the target is
1 GB/s for 4 MB activations) and the round trip of one request at a time (the per-message cost);
and the rate of 1 KiB requests with 64 in flight. All are measured three times in one run: the
real broker with CURVE (every socket authenticated and encrypted, the default), the real broker
over plaintext sockets, and a minimal broker (the floor: a poll loop that forwards frames by
their kind byte, nothing checked) between the same edge and worker. So CURVE's cost and what
the broker adds to the floor are ratios measured side by side, on one machine on one day.

And the broker's capacity at saturation (`capacity`): one lean edge keeps 256 requests of
1 KiB in flight to lean stand-in workers, so the broker is what saturates: requests/s, the
broker's CPU per request, and the round trip one at a time between those lean ends, for each
of the three brokers, interleaved rounds, the median reported.

The reference, measured in the same run: a peer implementation's transport, blocking
pickle-over-TCP straight from the edge to the cloud server (one hop, no broker, no
authentication; TCP_NODELAY, its best case), round trips of 1–150 KB requests. Its server
unpickles what it receives, which dads never does with network bytes: it runs here only on
loopback, on the benchmark's own data.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing as mp
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import uvloop

from bench.common import figure, markdown_table, parser, write_report

SIZES = [1 << 10, 64 << 10, 1 << 20, 4 << 20, 16 << 20]
RTT_SIZES = [1 << 10, 16 << 10, 64 << 10, 150_000]  # the request sizes of the reference
FINGERPRINT = "bench-transport"
MANY = 64  # requests in flight for the small-message rate (the broker's per-message cost)
GB = 1e9


def _keys(keys_dir: str, role: str):
    from common.runtime.security import Keys

    return Keys.load(keys_dir, role) if keys_dir else None


def _worker(backend: str, name: str, keys_dir: str) -> None:
    """An echo worker: decode, view as tensors, answer; heartbeats keep it alive at the broker."""
    import zmq

    from common.runtime.service import run_service
    from common.runtime.tensorwire import from_frames
    from common.runtime.transport import Channel
    from common.runtime.wire import Heartbeat, Ready, Request, Result

    async def run(stop: asyncio.Event) -> int:
        ch = Channel.open(zmq.DEALER, backend, bind=False, identity=name.encode(),
                          keys=_keys(keys_dir, "worker"), server="broker")
        await ch.send(Ready(name, FINGERPRINT, "cpu"))

        async def beat() -> None:
            while True:
                await asyncio.sleep(1.0)
                await ch.send(Heartbeat(name, time.time()))

        async def serve() -> None:
            while True:
                env = await ch.recv()
                if isinstance(env.msg, Request):
                    t0 = time.perf_counter()
                    tensors = from_frames(env.msg.tensors, env.frames)
                    assert sum(t.numel() * t.element_size() for t in tensors) >= 0
                    r = env.msg
                    await ch.send(Result(r.request_id, r.frame_id, r.plan_id, name, (), (),
                                         time.perf_counter() - t0))

        tasks = [asyncio.create_task(beat()), asyncio.create_task(serve())]
        await stop.wait()
        for t in tasks:
            t.cancel()
        ch.close()
        return 0

    raise SystemExit(run_service(run))


def _minimal_broker(frontend: str, backend: str) -> None:
    """The floor a broker can reach here: a plain poll loop that forwards frames by their kind
    byte alone (no header decode, no validation, no deadlines, no metrics, no CURVE).

    Measured in the same run as the real broker, with the same edge and worker, so that what
    the real broker adds is a ratio on one machine on one day, not a number against a memory.
    """
    from collections import deque

    import zmq

    from common.runtime.wire import Kind

    ctx = zmq.Context()
    front, back = ctx.socket(zmq.ROUTER), ctx.socket(zmq.ROUTER)
    front.bind(frontend)
    back.bind(backend)
    poller = zmq.Poller()
    poller.register(front, zmq.POLLIN)
    poller.register(back, zmq.POLLIN)
    idle: deque[bytes] = deque()
    queue: deque[list[Any]] = deque()
    owner: dict[bytes, bytes] = {}
    replies = {int(Kind.RESULT), int(Kind.ERROR)}
    while True:
        ready = dict(poller.poll())
        if back in ready:
            worker, kind, *rest = back.recv_multipart(copy=False)
            k = kind.bytes[0]
            if k in replies:
                front.send_multipart([owner.pop(worker.bytes), kind, *rest], copy=False)
            if k in replies or k == int(Kind.READY):
                idle.append(worker.bytes)
        if front in ready:
            queue.append(front.recv_multipart(copy=False))
        while queue and idle:
            edge, *parts = queue.popleft()
            w = idle.popleft()
            owner[w] = edge.bytes
            back.send_multipart([w, *parts], copy=False)


def _sync_socket(kind: int, endpoint: str, keys_dir: str, role: str,
                 identity: bytes | None = None) -> Any:
    """A plain (not asyncio) socket set up as the services' channels are (options, CURVE)."""
    import zmq

    from common.runtime.transport import Channel

    return Channel.open(kind, endpoint, bind=False, identity=identity, ctx=zmq.Context.instance(),
                        keys=_keys(keys_dir, role), server="broker").sock


def _fast_worker(backend: str, name: str, keys_dir: str) -> None:
    """A stand-in worker for the capacity run: a plain poll loop that reads only the request id
    and answers a Result encoded once per id, so that the broker, not its workers, is what
    saturates (a real worker validates everything and runs a model)."""
    import msgpack
    import zmq

    from common.runtime.wire import Heartbeat, Kind, Ready, Result, encode

    sock = _sync_socket(zmq.DEALER, backend, keys_dir, "worker", name.encode())
    sock.send_multipart(encode(Ready(name, FINGERPRINT, "cpu")))
    answers: dict[int, list[Any]] = {}
    beat = time.monotonic()
    request = bytes([Kind.REQUEST])
    while True:
        if sock.poll(200):
            while sock.get(zmq.EVENTS) & zmq.POLLIN:
                kind, header, *_ = sock.recv_multipart()
                if kind == request:
                    rid = msgpack.unpackb(header)["request_id"]
                    reply = answers.get(rid)
                    if reply is None:
                        reply = answers[rid] = encode(Result(rid, rid, 1, name, (), (), 0.0))
                    sock.send_multipart(reply)
        if time.monotonic() - beat > 0.5:
            beat = time.monotonic()
            sock.send_multipart(encode(Heartbeat(name, time.time())))


CAPACITY_WORKERS = 3  # enough that the broker, not a worker's turn-around, sets the pace
CAPACITY_WINDOW = 256  # requests in flight from the one saturating edge


def capacity(broker: str, seconds: float, rtt_count: int = 500) -> dict[str, Any]:
    """Saturate one broker ("plaintext", "CURVE" or "minimal") with 1 KiB requests from a plain
    poll-loop edge (requests encoded once, `CAPACITY_WINDOW` in flight) and stand-in workers
    (`_fast_worker`): requests/s and the broker's CPU per request (every thread) at saturation;
    before that, the round trip of one request at a time between these lean ends (what the
    broker adds, without the asyncio edge's and worker's own costs).

    On this 2-core machine the edge and workers take CPU the broker could use, so the rate is a
    floor of the broker's capacity; the CPU per request is the broker's own."""
    import torch
    import zmq

    from common.runtime.tensorwire import to_frames
    from common.runtime.wire import Request, encode

    with _a_broker(broker, "dads-capacity-", ("--max-queue", str(2 * CAPACITY_WINDOW))) as (
            ports, keys_dir, pid):
        spawn = mp.get_context("spawn")
        workers = [spawn.Process(target=_fast_worker, args=(ports.backend, f"fast-{i}", keys_dir),
                                 daemon=True) for i in range(CAPACITY_WORKERS)]
        for w in workers:
            w.start()
        sock = _sync_socket(zmq.DEALER, ports.frontend, keys_dir, "edge")
        metas, frames = to_frames(["x"], [torch.zeros(256)])
        requests = [encode(Request(i, i, 1, FINGERPRINT, metas, 0.0, 30.0), frames)
                    for i in range(CAPACITY_WINDOW)]
        try:
            rtts = []
            for i in range(rtt_count + 20):  # one at a time; the first answer: workers are up
                t0 = time.perf_counter()
                sock.send_multipart(requests[i % CAPACITY_WINDOW])
                if not sock.poll(60_000):
                    raise RuntimeError(f"no answer through the {broker} broker")
                sock.recv_multipart()
                if i >= 20:
                    rtts.append(time.perf_counter() - t0)
            for r in requests:
                sock.send_multipart(r)
            answered, cpu0, t0 = 0, _cpu_seconds(pid), time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                if not sock.poll(5000):
                    raise RuntimeError(f"the {broker} broker stopped answering")
                while sock.get(zmq.EVENTS) & zmq.POLLIN:
                    sock.recv_multipart()
                    answered += 1
                    sock.send_multipart(requests[answered % CAPACITY_WINDOW])
            took, cpu = time.perf_counter() - t0, _cpu_seconds(pid) - cpu0
        finally:
            sock.close(linger=0)
            for w in workers:
                w.terminate()
                w.join(5)
    return {"broker": broker, "rate": answered / took, "cpu_s": cpu / answered,
            "rtt_med": statistics.median(rtts), "rtt_p99": _p99(rtts)}


def _pickle_server(port: Any) -> None:
    """The reference peer's cloud side: length-prefixed pickles over a blocking TCP socket."""
    import pickle
    import socket
    import struct

    listener = socket.create_server(("127.0.0.1", 0))
    port.put(listener.getsockname()[1])
    conn, _ = listener.accept()
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def read(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            chunk = conn.recv(n - len(buf))
            if not chunk:
                raise SystemExit(0)
            buf += chunk
        return bytes(buf)

    while True:
        (n,) = struct.unpack("!Q", read(8))
        req = pickle.loads(read(n))  # noqa: S301 - the reference's own data, loopback only
        t0 = time.perf_counter()
        assert req["tensor"].nbytes >= 0
        body = pickle.dumps({"request_id": req["request_id"], "classes": [], "scores": [],
                             "cloud_s": time.perf_counter() - t0})
        conn.sendall(struct.pack("!Q", len(body)) + body)


def pickle_rtts(size: int, count: int) -> list[float]:
    """Round trips of the reference: blocking pickle-over-TCP, one request at a time."""
    import pickle
    import socket
    import struct

    import numpy as np

    spawn = mp.get_context("spawn")
    port = spawn.Queue()
    server = spawn.Process(target=_pickle_server, args=(port,), daemon=True)
    server.start()
    conn = socket.create_connection(("127.0.0.1", port.get(timeout=60)))
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    tensor = np.random.default_rng(0).standard_normal(size // 4).astype(np.float32)

    def read(n: int) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            buf += conn.recv(n - len(buf))
        return bytes(buf)

    rtts = []
    try:
        for i in range(count + 20):  # the first 20 warm up
            t0 = time.perf_counter()
            body = pickle.dumps({"request_id": i, "frame_id": i, "plan_id": 1,
                                 "sent_at": time.time(), "tensor": tensor})
            conn.sendall(struct.pack("!Q", len(body)) + body)
            (n,) = struct.unpack("!Q", read(8))
            pickle.loads(read(n))  # noqa: S301 - our own server's reply, loopback only
            if i >= 20:
                rtts.append(time.perf_counter() - t0)
    finally:
        conn.close()
        server.terminate()
        server.join(5)
    return rtts


async def _measure(frontend: str, size: int, count: int, window: int, keys_dir: str
                   ) -> tuple[float, list[float]]:
    """Send `count` requests of `size` bytes, `window` in flight; (seconds, round trips)."""
    import torch
    import zmq

    from common.runtime.tensorwire import to_frames
    from common.runtime.transport import Channel
    from common.runtime.wire import Request, Result

    ch = Channel.open(zmq.DEALER, frontend, bind=False, keys=_keys(keys_dir, "edge"),
                      server="broker")
    tensor = torch.randn(size // 4)
    metas, frames = to_frames(["x"], [tensor])
    sent: dict[int, float] = {}
    rtts: list[float] = []
    slots = asyncio.Semaphore(window)
    done = asyncio.Event()

    async def receive() -> None:
        while len(rtts) < count:
            env = await ch.recv()
            assert isinstance(env.msg, Result), env.msg
            rtts.append(time.perf_counter() - sent.pop(env.msg.request_id))
            slots.release()
        done.set()

    receiver = asyncio.create_task(receive())
    t0 = time.perf_counter()
    for i in range(count):
        await slots.acquire()
        sent[i] = time.perf_counter()
        await ch.send(Request(i, i, 1, FINGERPRINT, metas, time.time(), 30.0), frames)
    await asyncio.wait_for(done.wait(), timeout=300)
    took = time.perf_counter() - t0
    await receiver
    ch.close()
    return took, rtts


def _cpu_seconds(pid: int | None) -> float:
    """CPU time (user + system, every thread) a process has used so far; nan off Linux."""
    import os

    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return float("nan")
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _p99(values: list[float]) -> float:
    return sorted(values)[int(0.99 * (len(values) - 1))]


BROKERS = ("plaintext", "CURVE", "minimal")  # the real broker twice, then the floor


@contextlib.contextmanager
def _a_broker(broker: str, prefix: str, args: tuple[str, ...] = ()
              ) -> Iterator[tuple[Any, str, int]]:
    """One broker to measure, stopped after: "plaintext" or "CURVE" (the real service, `args`
    added; fresh keys for CURVE) or "minimal" (`_minimal_broker`); its ports, key directory
    ("" without keys) and pid (the process whose CPU is the broker's)."""
    from launch.up import Ports, free_base, security_env, start_service, stop_system

    ports = Ports(free_base(4), free_base(2))
    log_dir = Path(tempfile.mkdtemp(prefix=prefix))
    env = security_env(log_dir, insecure=broker != "CURVE")
    procs, floor = {}, None
    if broker == "minimal":
        floor = mp.get_context("spawn").Process(target=_minimal_broker,
                                                args=(ports.frontend, ports.backend), daemon=True)
        floor.start()
        pid = floor.pid
    else:
        procs["broker"] = start_service(
            "broker", ["--frontend", ports.frontend, "--backend", ports.backend, "--planner", "",
                       "--metrics-port", str(ports.metrics_base), *args],
            log_dir / "broker.log", env=env)
        pid = procs["broker"].pid
    try:
        yield ports, env["DADS_KEYS"], pid
    finally:
        if floor is not None:
            floor.terminate()
            floor.join(5)
        stop_system(procs)


def run(quick: bool, window: int, broker: str, rtt_rows: list[dict[str, Any]]
        ) -> list[dict[str, Any]]:
    """Throughput and round trips through one broker: "plaintext" or "CURVE" (the real one, a
    service process), or "minimal" (`_minimal_broker`, plaintext)."""
    with _a_broker(broker, "dads-transport-") as (ports, keys_dir, pid):
        return _through(quick, window, broker, rtt_rows, ports, keys_dir, pid)


def _through(quick: bool, window: int, broker: str, rtt_rows: list[dict[str, Any]], ports: Any,
             keys_dir: str, pid: int) -> list[dict[str, Any]]:
    """`run`'s measurements, with its broker up: an echo worker, then every size."""
    worker = mp.get_context("spawn").Process(target=_worker,
                                             args=(ports.backend, "bench-worker", keys_dir),
                                             daemon=True)
    worker.start()
    rows = []
    try:
        uvloop.run(_measure(ports.frontend, 1 << 10, 50, 1, keys_dir))  # warm: worker ready
        for size in SIZES:
            budget = (256 if quick else 2048) * 2**20
            count = max(20, min(2000 if quick else 10000, budget // size))
            took, _ = uvloop.run(_measure(ports.frontend, size, count, window, keys_dir))
            _, rtts = uvloop.run(_measure(ports.frontend, size, max(20, count // 4), 1, keys_dir))
            rows.append({"size": size, "count": count, "gbps": size * count / took / GB,
                         "msgs": count / took, "rtt_med": statistics.median(rtts),
                         "rtt_p99": _p99(rtts), "broker": broker})
            r = rows[-1]
            print(f"{broker:>9} {size:>9} B x {count}: {r['gbps']:.2f} GB/s, "
                  f"{r['msgs']:.0f} msg/s, round trip {r['rtt_med'] * 1e6:.0f} us",
                  file=sys.stderr)
        count = 2000 if quick else 10000
        cpu0 = _cpu_seconds(pid)
        took, _ = uvloop.run(_measure(ports.frontend, 1 << 10, count, MANY, keys_dir))
        cpu = (_cpu_seconds(pid) - cpu0) / count  # the broker's CPU (all threads) per request
        rows.append({"size": 1 << 10, "count": count, "gbps": (1 << 10) * count / took / GB,
                     "msgs": count / took, "rtt_med": float("nan"), "rtt_p99": float("nan"),
                     "broker": broker, "window": MANY, "cpu_s": cpu})
        for size in RTT_SIZES:
            _, rtts = uvloop.run(_measure(ports.frontend, size, 200 if quick else 1000, 1,
                                          keys_dir))
            rtt_rows.append({"size": size, "transport": broker,
                             "rtt_med": statistics.median(rtts), "rtt_p99": _p99(rtts)})
    finally:
        worker.terminate()
        worker.join(5)
    return rows


def _median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """The run of median rate (its CPU and round trips with it: one run's numbers, together)."""
    return sorted(runs, key=lambda r: r["rate"])[len(runs) // 2]


def _size(n: int) -> str:
    if n % 1024:
        return f"{n // 1000} kB"
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


STYLES = {"plaintext": "o-", "CURVE": "s-", "minimal": "^:"}


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    with figure(path, 1, 2, figsize=(10, 3.6), dpi=120) as (_, (a, b)):
        for broker in BROKERS:
            mine = [r for r in rows if r["broker"] == broker and "window" not in r]
            sizes, name = [r["size"] for r in mine], _label(broker)
            a.plot(sizes, [r["gbps"] for r in mine], STYLES[broker], label=name)
            b.plot(sizes, [r["rtt_med"] * 1e3 for r in mine], STYLES[broker], label=f"{name} median")
        a.axhline(1.0, color="grey", ls="--", lw=1, label="target 1 GB/s")
        a.set(xscale="log", xlabel="payload per request (bytes)", ylabel="GB/s",
              title="edge → broker → worker throughput")
        a.legend(fontsize=8)
        b.set(xscale="log", yscale="log", xlabel="payload per request (bytes)", ylabel="ms",
              title="round trip, one request at a time")
        b.legend(fontsize=8)


def _label(broker: str) -> str:
    return {"plaintext": "dads, plaintext", "CURVE": "dads, CURVE",
            "minimal": "minimal broker (floor)"}.get(broker, broker)


def main(argv: list[str] | None = None) -> int:
    ap = parser(__doc__, "transport.md")
    ap.add_argument("--quick", action="store_true", help="fewer messages per size")
    ap.add_argument("--window", type=int, default=8, help="requests in flight for throughput (8)")
    ap.add_argument("--rounds", type=int, default=3,
                    help="capacity runs per broker, interleaved; the median is reported (3)")
    args = ap.parse_args(argv)
    rtt_rows: list[dict[str, Any]] = []
    rows = [r for broker in BROKERS for r in run(args.quick, args.window, broker, rtt_rows)]
    rounds = 1 if args.quick else args.rounds  # interleaved: a noisy minute hits every broker
    saturated = [capacity(broker, 3.0 if args.quick else 8.0) for _ in range(rounds)
                 for broker in BROKERS]
    cap = {b: _median_row([r for r in saturated if r["broker"] == b]) for b in BROKERS}
    for size in RTT_SIZES:
        rtts = pickle_rtts(size, 200 if args.quick else 1000)
        rtt_rows.append({"size": size, "transport": "reference: pickle over TCP, one hop",
                         "rtt_med": statistics.median(rtts), "rtt_p99": _p99(rtts)})
    png = Path(args.out).with_suffix(".png")
    png.parent.mkdir(parents=True, exist_ok=True)
    plot(rows, png)
    table = markdown_table(
        ["broker", "payload", "in flight", "requests", "throughput GB/s", "requests/s",
         "round trip median (ms)", "round trip p99 (ms)"],
        [[_label(r["broker"]), _size(int(r["size"])), r.get("window", args.window),
          int(r["count"]), f"{r['gbps']:.2f}", f"{r['msgs']:.0f}",
          "" if "window" in r else f"{r['rtt_med'] * 1e3:.3f}",
          "" if "window" in r else f"{r['rtt_p99'] * 1e3:.3f}"] for r in rows])

    kinds = list(dict.fromkeys(r["transport"] for r in rtt_rows))
    rtt_table = markdown_table(
        ["payload", *map(_label, kinds)],
        [[_size(size), *(next(f"{r['rtt_med'] * 1e3:.3f} ({r['rtt_p99'] * 1e3:.3f})"
                              for r in rtt_rows if r["size"] == size and r["transport"] == k)
                         for k in kinds)] for size in RTT_SIZES])

    def at(size: int, broker: str, many: bool = False) -> dict[str, Any]:
        return next(r for r in rows if r["size"] == size and r["broker"] == broker
                    and ("window" in r) == many)

    def rtt(broker: str) -> float:
        return next(r["rtt_med"] for r in rtt_rows if r["size"] == 1 << 10
                    and r["transport"] == broker)

    four, floor = at(4 << 20, "CURVE"), rtt("minimal")
    cost = "; ".join(
        f"{_size(size)}: {at(size, 'CURVE')['gbps']:.2f} vs {at(size, 'plaintext')['gbps']:.2f} GB/s"
        for size in (4 << 20, 16 << 20))
    rate = {b: at(1 << 10, b, many=True)["msgs"] for b in BROKERS}
    cpu = {b: at(1 << 10, b, many=True)["cpu_s"] for b in BROKERS}
    cap_table = markdown_table(
        ["broker", "requests/s at saturation", "broker CPU per request (µs)",
         "requests/s per core of broker CPU", "round trip median (ms)", "round trip p99 (ms)",
         "rate / minimal broker's"],
        [[_label(b), f"{cap[b]['rate']:.0f}", f"{cap[b]['cpu_s'] * 1e6:.0f}",
          f"{1 / cap[b]['cpu_s']:.0f}", f"{cap[b]['rtt_med'] * 1e3:.3f}",
          f"{cap[b]['rtt_p99'] * 1e3:.3f}", f"{cap[b]['rate'] / cap['minimal']['rate']:.2f}"]
         for b in BROKERS])
    sixteen = at(16 << 20, "plaintext")["gbps"], at(16 << 20, "minimal")["gbps"]
    text = (f"## Transport: edge → broker → worker on loopback\n\n"
            f"The real broker between two processes speaking the wire contract (no model runs), "
            f"and in the same run the floor: a minimal broker (a poll loop forwarding frames by "
            f"their kind byte; no validation, no metrics, no CURVE) between the same edge and "
            f"worker. Throughput with {args.window} requests in flight (and 1 KiB requests with "
            f"{MANY}); round trip with one.\n\n"
            f"- 1 KiB round trip, median: dads CURVE **{rtt('CURVE') * 1e3:.3f} ms**, plaintext "
            f"{rtt('plaintext') * 1e3:.3f} ms, minimal broker {floor * 1e3:.3f} ms "
            f"(dads/minimal: {rtt('CURVE') / floor:.2f}x with CURVE, "
            f"{rtt('plaintext') / floor:.2f}x plaintext).\n"
            f"- 1 KiB requests per second, {MANY} in flight: dads CURVE **{rate['CURVE']:.0f}**, "
            f"plaintext {rate['plaintext']:.0f}, minimal broker {rate['minimal']:.0f} (this "
            f"one edge and one worker are the limit here, not the broker). The broker's own "
            f"capacity, from its CPU time per request in that run (every thread, ZeroMQ's I/O "
            f"thread included): dads CURVE **{cpu['CURVE'] * 1e6:.0f} µs** "
            f"(≈ {1 / cpu['CURVE']:.0f} requests/s per core), plaintext "
            f"{cpu['plaintext'] * 1e6:.0f} µs (≈ {1 / cpu['plaintext']:.0f}/s), minimal broker "
            f"{cpu['minimal'] * 1e6:.0f} µs (≈ {1 / cpu['minimal']:.0f}/s).\n"
            f"- 4 MiB activations with CURVE (the default): **{four['gbps']:.2f} GB/s**; "
            f"CURVE against plaintext: {cost}.\n\n{table}\n\n![transport]({png.name})\n\n"
            f"### Broker capacity at saturation\n\n"
            f"One edge keeps {CAPACITY_WINDOW} requests of 1 KiB in flight through the broker to "
            f"{CAPACITY_WORKERS} workers; edge and workers are lean poll loops (requests encoded "
            f"once, the workers read the request id and answer), so the broker is what "
            f"saturates. Median of {rounds} interleaved run(s) per broker. On this machine the "
            f"edge and workers share its cores with the broker, so the rate is a floor of what "
            f"the broker alone would do; its CPU per request (every thread: ZeroMQ's I/O thread, "
            f"where CURVE's encryption runs, included) is its own. The round trip is one request "
            f"at a time between the same lean ends. Targets: ≥ 5000 requests/s with CURVE, "
            f"round trip ≤ 0.5 ms.\n\n"
            f"- dads with CURVE: **{cap['CURVE']['rate']:.0f} requests/s** "
            f"({cap['CURVE']['rate'] / cap['minimal']['rate']:.2f}x the minimal broker's "
            f"{cap['minimal']['rate']:.0f}), **{cap['CURVE']['cpu_s'] * 1e6:.0f} µs** of broker "
            f"CPU per request; round trip **{cap['CURVE']['rtt_med'] * 1e3:.3f} ms**.\n"
            f"- 16 MiB in plaintext: {sixteen[0]:.2f} GB/s through dads, {sixteen[1]:.2f} GB/s "
            f"through the minimal broker: the 2 GB/s target is above this machine's floor; with "
            f"CURVE every byte is encrypted and decrypted on both hops (see above).\n\n"
            f"{cap_table}\n\n"
            f"### Round trip against a reference\n\n"
            f"One request at a time, median (p99) in ms. dads: edge → broker → worker and back "
            f"(two hops each way, validated headers). The reference: a peer "
            f"implementation's blocking pickle over one TCP connection straight to the server "
            f"(one hop, no broker, no authentication), in the same run.\n\n{rtt_table}\n")
    write_report(text, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
