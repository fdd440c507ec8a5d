"""The edge agent.

Pipeline, one asyncio task per stage, so edge compute, transfer and cloud work of successive
frames overlap:

  source ──► frames queue ──► edge compute (thread) ──► link (FIFO sender) ──► broker
                                                            results ◄── receiver ◄──┘

- At most `window` frames are between edge compute and their result; each has a deadline, after
  which it is reported as dropped (never lost silently).
- A live source (a camera, a stream, frames at a rate) sheds rather than queues: the freshest
  frame wins (a new frame replaces the oldest waiting one), a frame enters the pipeline only
  while fewer than the plan's own depth are in it (Little's law: its predicted latency times
  its predicted throughput, plus one), and when the plan cannot sustain the camera's rate the
  camera is sub-sampled at capture. So an answered frame's latency stays near the plan's, and
  every shed frame is reported (`dropped`, reason `shed`) and counted. An offline source (fps
  0: a folder or a file read as fast as the pipeline takes) keeps every frame: back-pressure. Retryable errors (plan not yet known at a
  worker, broker full) are retried with backoff within the deadline.
- A new plan is applied at a frame boundary: each frame uses the plan in force when its edge
  compute starts, and its request names that plan, so edge and worker always agree on the cut.
- `--uplink RATE` emulates a slower link in the sender (serialisation delay of a token bucket),
  for one-machine demos; real deployments shape nothing.
- Telemetry (arrival rate, queues, stage times, transfer samples) goes to the planner each second.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import math
import socket
import statistics
import sys
import time
from collections import deque
from collections.abc import Collection, Coroutine, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

import torch
import zmq

from common.errors import DadsError
from common.model import codecprofile
from common.model.graph import ModelGraph
from common.model.hosting import host_model, remeasure, top_k
from common.model.split import CloudPart, EdgePart, split_graph
from common.planning import costgraph, dag
from common.planning.partition import Plan, Prediction, supersedes
from common.planning.probe import LinkClock
from common.planning.profile import scaled
from common.planning.units import format_bandwidth, parse_bandwidth
from common.runtime import config
from common.runtime.metrics import EdgeMetrics
from common.runtime.security import from_options
from common.runtime.service import Service, run_service, sent_first, setup_logging
from common.runtime.tensorwire import CodecStat, from_frames, to_frames
from common.runtime.transport import Envelope
from common.runtime.wire import (
    EdgeProfile,
    ErrorCode,
    ErrorReply,
    PlanMsg,
    Probe,
    ProbeAck,
    Request,
    Result,
    Telemetry,
    WireError,
    clip,
)
from services.edge_agent.sources import check_source, open_source
from services.edge_agent.state import Schedule, expired, percentile, retry_delay

__all__ = ["EdgeAgent", "add_arguments", "main"]

log = logging.getLogger("edge_agent")
PROBE_BYTES = 64 * 1024  # a probe's size at most; also the least a transfer must be to stall
PROBE_MIN_BYTES = 8 * 1024  # a probe's size at least (smaller says more of latency than rate)
PROBE_S = 0.25  # a probe's size: what the link takes this long to carry at the plan's bandwidth
PROBE_TIMEOUT_S = 30.0
STALL_FACTOR = 3.0  # a transfer this many times slower than the planner's bandwidth predicts
CONFIRM_FACTOR = 2.0  # a probe this far from the planner's estimate is confirmed at once
RESTALL = 1.25  # a stalled transfer is reported again once its bound has tightened this much
WAIT_WINDOW_S = 2.0  # the telemetry's wait: the median of the plan's frames answered this recently
SIZE_MEMORY = 0.2  # weight of the newest frame in a codec's running size
SIZE_DRIFT = 0.1  # the planner hears of codec sizes that drift this far from the profile's
PROFILE_REFRESH_S = 60.0  # the profile is re-sent unchanged this often (it crosses the uplink)
PLANS_SILENT_S = 3.0  # the planner republishes every second: this long without a plan, it is gone
PROFILE_RESEND_S = 5.0  # while no planner shows it has the profile, it is re-sent this often


@dataclass
class _Cut:
    plan: Plan
    edge: EdgePart
    cloud: CloudPart  # runs here only when the plan is edge-only

    @property
    def local(self) -> bool:
        return not self.plan.transfer


@dataclass
class _Frame:
    frame_id: int
    captured_at: float
    cut: _Cut
    deadline: float
    request: Request | None = None
    frames: list[Any] = field(default_factory=list)
    nbytes: int = 0
    edge_s: float = 0.0
    handed_at: float = 0.0
    attempts: int = 0
    sent: bool = False  # on the wire to the broker (a broker restart loses it: send again)


class EdgeAgent(Service):
    name = "edge_agent"

    def __init__(self, args: argparse.Namespace, out: TextIO = sys.stdout) -> None:
        super().__init__(EdgeMetrics(), from_options(args.keys, args.insecure, "edge"),
                         args.metrics_port, args.metrics_host)
        self.args = args
        self.out = out
        self.cut: _Cut | None = None
        self.cuts: dict[int, _Cut] = {}
        self.in_flight: dict[int, _Frame] = {}
        self.next_request = 0
        self.uplink = Schedule.parse(args.uplink, _rate) if args.uplink else None
        self.fps = Schedule.parse(str(args.fps), _fps)
        self.link_clock = LinkClock()
        self.samples: list[tuple[int, float]] = []
        self.latencies: deque[float] = deque(maxlen=2000)
        self.recent: deque[tuple[float, float]] = deque(maxlen=500)  # (done_at, latency)
        self.captured: deque[float] = deque(maxlen=500)
        self.cloud_times: deque[float] = deque(maxlen=50)
        # the plan in force's own stage times (telemetry: the planner calibrates each plan's
        # prediction against its frames alone, not a mix with the last plan's)
        self.plan_times: dict[str, deque[float]] = {"edge": deque(maxlen=20),
                                                    "cloud": deque(maxlen=20)}
        # ... and (answered at, latency beyond its edge, transfer and cloud times) of its
        # frames: by time, not count, so a queue that builds (or clears) is seen within seconds
        # at a camera's rate as at a few answers a second
        self.plan_waits: deque[tuple[float, float]] = deque(maxlen=512)
        self.rtts: deque[float] = deque(maxlen=50)
        self.counts = {"in": 0, "out": 0, "dropped": 0, "shed": 0, "retried": 0, "local": 0}
        self.plans_used: set[int] = set()
        self.planner_bw = 0.0
        self.last_handed = 0.0  # a frame last handed to the link
        self.last_probe = 0.0
        self.probe_sent: dict[int, float] = {}
        self.results = open(args.output, "w", buffering=1) if args.output else None  # noqa: SIM115
        self.open_frames = 0  # captured, not yet finished (closed loop waits for 0)
        self.idle = asyncio.Event()
        self.idle.set()
        self.source_failed = False
        self.stale_seen = 0
        self.last_telemetry = 0.0
        self.stall_reported: tuple[int, float] = (-1, 0.0)  # (request id, seconds) last reported
        self.stalled_rid = -1  # the transfer reported stuck: reported until it is off the link
        self.epoch = 0  # the newest planner epoch seen: a new planner gets our profile at once
        self.codec_sizes: dict[tuple[str, str], float] = {}  # (node, codec) -> bytes, as sent
        self.profile_sent: tuple[str, float] = ("", 0.0)  # (digest, when) last sent
        self.plan_heard = 0.0  # when a plan message last came (the planner is alive and has us)
        self.live = False  # the source runs at a rate: shed, don't queue (the pipeline's gate)
        self.released = asyncio.Event()  # a frame left the pipeline, or a new plan: the gate
        # may open
        self.next_take = 0.0  # a live camera sub-sampled to its plan's rate: the next frame taken
        self.probe_hint_bps = 0.0  # a probe saw the link far from the estimate: its rate (bit/s)

    # -- setup --
    def _load(self) -> ModelGraph:
        hosted = host_model(self.args)
        self.device, self.shape, self.profile = hosted.device, hosted.shape, hosted.profile
        return hosted.graph

    def _measure_codecs(self, frames: list[torch.Tensor]) -> None:
        """Codec sizes and times on the source's own first frames (not noise), then the
        profile as the planner must see it: the emulated device's, if slower."""
        if frames:
            t0 = time.perf_counter()
            table = codecprofile.cached_measure(self.graph, [(f,) for f in frames],
                                                self.profile.device)
            self.profile = replace(self.profile, codecs=table)
            log.info("codecs measured on %d frame(s) in %.1f s: %d tensors can cross encoded",
                     len(frames), time.perf_counter() - t0, len(table))
        if self.args.edge_slowdown > 1:  # the planner must see the emulated device, not this one
            self.profile = scaled(self.profile, 1.0 / self.args.edge_slowdown)

    def _build_cut(self, plan: Plan) -> _Cut:
        edge, cloud = split_graph(self.graph, plan.edge_nodes, plan.exit or None)
        return _Cut(plan, edge, cloud)

    async def start(self) -> None:
        a = self.args
        log.info("loading %s", a.model)
        self.graph = await self.compute(self._load)
        self.source_frames, self.source, first = await self.compute(
            _open_source, a.source, self.shape, a.codec_frames, a.loop)
        await self.compute(self._measure_codecs, first[: max(0, a.codec_frames)])
        if self.profile.predicted:  # planned on a prediction until this is measured
            self._measuring = asyncio.create_task(self._measure_profile())
        exits = dag.exits(self.graph.dag)  # an early-exit model answers from its best exit
        nodes = dag.needed_by(self.graph.dag, exits[0][0]) if exits else self.graph.dag
        local = Plan("local", self.graph.fingerprint, tuple(sorted(nodes)), (),
                     Prediction(0.0, 0.0, 0.0, 0.0, 0.0), 0.0,
                     exit=exits[0][0] if exits else "")  # until the planner speaks
        self.local_cut = await self.compute(self._build_cut, local)
        self.broker_up = self.broker_lost = False
        self.dealer = self.open(zmq.DEALER, a.broker, bind=False, server="broker",
                                on_link=self._broker_link)
        self.plan_sub = self.open(zmq.SUB, a.plans, bind=False, server="planner")
        self.telemetry = self.open(zmq.DEALER, a.telemetry, bind=False, server="planner")
        self.window = asyncio.Semaphore(a.window)
        self.frames: asyncio.Queue[tuple[int, float, torch.Tensor] | None] = asyncio.Queue(a.queue)
        self.link: asyncio.Queue[_Frame | tuple[int, int]] = asyncio.Queue()
        self.started = self.stream_t0 = time.monotonic()  # stream_t0: the schedules' zero

    def tasks(self) -> dict[str, Coroutine[Any, Any, None]]:
        tasks = {
            "plans": self.receive(self.plan_sub, {PlanMsg: self._on_plan}),
            "receiver": self.receive(self.dealer, {Result: self._on_result,
                                                   ErrorReply: self._on_error,
                                                   ProbeAck: self._on_probe_ack},
                                     refused=self._refused),
            "sender": self._sender(),
            "deadlines": self.every(0.05, self._sweep_deadlines),
            "telemetry": self.every(1.0, self._send_telemetry),
            "link-watch": self.every(0.1, self._watch_link),
            "profile": self.every(1.0, self._refresh_profile),
            "probe": self.every(0.25, self._probe),
        }
        if self.args.live:
            tasks["live"] = self.every(1.0, self._live)
        return tasks

    async def main(self, tasks: list[asyncio.Task[Any]]) -> int:
        """Stream until the source ends or `stop`; every frame in flight ends before we do."""
        stop = self.stop
        watch = asyncio.create_task(self.supervise(tasks))  # stop on a failure
        await self._send_profile()
        await self._wait_for_plan(stop)
        self.stream_t0 = time.monotonic()
        source = asyncio.create_task(self._source(stop, self.source_frames))
        pipeline = asyncio.create_task(self._pipeline())
        done = asyncio.create_task(stop.wait())
        await asyncio.wait([pipeline, done], return_when=asyncio.FIRST_COMPLETED)
        if not pipeline.done():  # stopped from outside: no new frames, finish those in flight
            source.cancel()
            await asyncio.gather(source, return_exceptions=True)
            await self.frames.put(None)
        await pipeline
        await self._drain(stop)
        stop.set()
        rc = max(await watch, int(self.source_failed))
        for t in (source, done):
            t.cancel()
        await asyncio.gather(source, done, return_exceptions=True)
        return rc

    async def close(self) -> None:
        if getattr(self, "_measuring", None) is not None:
            self._measuring.cancel()
        if hasattr(getattr(self, "source", None), "close"):
            self.source.close()  # a live stream's reader thread
        await super().close()
        if self.results:
            self.results.close()
        if hasattr(self, "started"):
            self._summary()

    async def _wait_for_plan(self, stop: asyncio.Event) -> None:
        deadline = time.monotonic() + self.args.wait_plan
        while self.cut is None and time.monotonic() < deadline and not stop.is_set():
            await asyncio.sleep(0.05)
        if self.cut is None:
            log.warning("no plan from the planner yet: running the whole model here until one comes")

    async def _drain(self, stop: asyncio.Event) -> None:
        """Wait for the frames in flight: each ends with a result or past its deadline."""
        while self.in_flight:
            await self._sweep_deadlines()  # the periodic sweeper has stopped with `stop`
            await asyncio.sleep(0.05)

    # -- stages --
    async def _source(self, stop: asyncio.Event, frames: Iterator[torch.Tensor]) -> None:
        """Capture frames; every frame counted in ends as a result or a reported drop."""
        try:
            await self._capture(stop, frames)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a source that breaks mid-stream: say so, finish what is in
            log.error("frame source %s failed: %s: %s", self.args.source, type(exc).__name__, exc)
            self.source_failed = True
            await self.frames.put(None)

    async def _capture(self, stop: asyncio.Event, frames: Iterator[torch.Tensor]) -> None:
        a = self.args
        next_at = time.monotonic()
        frame_id = 0
        while not stop.is_set() and (a.frames <= 0 or frame_id < a.frames):
            if a.closed_loop:  # the next frame only once the last one is done: no queueing
                await self.idle.wait()
            frame = await asyncio.to_thread(next, frames, None)
            if frame is None:
                break
            stale = getattr(self.source, "stale", 0)  # a live stream's skipped frames
            if stale > self.stale_seen:
                self.metrics.frames_stale.inc(stale - self.stale_seen)
                self.stale_seen = stale
            now = time.monotonic()
            fps = self.fps.at(now - self.stream_t0)
            interval = 1.0 / fps if fps > 0 else 0.0
            self.open_frames += 1
            self.idle.clear()
            self.counts["in"] += 1
            self.metrics.frames_in.inc()
            self.captured.append(now)
            self.live = bool(interval) and not a.closed_loop and not a.no_shed
            if self.live and not self._take(now, fps):  # the plan cannot sustain this rate
                self._shed(frame_id)
            elif self.live and self.frames.full():  # the freshest frame wins: the oldest goes
                self._shed(self.frames.get_nowait()[0])
                self.frames.put_nowait((frame_id, now, frame))
            else:  # an offline source waits for room: every frame is kept
                try:
                    await self.frames.put((frame_id, now, frame))
                except asyncio.CancelledError:  # stopped while the queue was full: counted in,
                    self._finish_dropped(frame_id, "stopped")  # so reported, not lost
                    raise
            self.metrics.queue_depth.labels("frames").set(self.frames.qsize())
            frame_id += 1
            if interval:
                next_at += interval
                await asyncio.sleep(max(0.0, next_at - time.monotonic()))
        await self.frames.put(None)

    def _take(self, now: float, fps: float) -> bool:
        """Whether a live camera's frame captured at `now` is taken: all of them while the plan
        sustains the camera's rate; else about its predicted throughput's worth (a little more:
        the gate and the freshest-frame queue shed the rest, so a cautious prediction does not
        starve the pipeline)."""
        cut = self.cut or self.local_cut
        sustained = cut.plan.predicted.throughput_fps * 1.25
        if not sustained or sustained >= fps:
            self.next_take = 0.0
            return True
        if now + 1e-3 < self.next_take:
            return False
        self.next_take = max(self.next_take + 1.0 / sustained, now)
        return True

    def _depth(self) -> int:
        """Frames in flight (past edge compute) that keep the plan's pipeline busy without a
        standing queue (Little's law on the stages after the edge): the frames that entered in
        the last `downstream` seconds, the time a frame spends past the edge, at the predicted
        throughput, and the one whose edge compute overlaps them. Counting the edge's own time
        too (or one more frame) keeps a frame waiting at the broker behind busy workers, which
        adds a share of a cloud compute to every frame. The window bounds it. While a transfer
        is stalled on the link (it has stepped down), 1: no frame joins it there."""
        cut = self.cut or self.local_cut
        if not cut.local and self._stalled(time.monotonic()) is not None:
            return 1
        pred = cut.plan.predicted
        downstream = pred.latency_s - pred.edge_s - pred.wait_s  # the stages', not the queues'
        if downstream <= 0 or pred.throughput_fps <= 0:
            return self.args.window
        return max(1, min(self.args.window, math.floor(downstream * pred.throughput_fps) + 1))

    async def _admit(self) -> None:
        """A live source's gate: wait until the pipeline holds fewer frames than its depth, so
        the frame taken next is the freshest, not one that waited behind a full pipeline."""
        while self.live and len(self.in_flight) >= self._depth():
            self.released.clear()
            await self.released.wait()

    async def _next_frame(self) -> tuple[int, float, torch.Tensor] | None:
        """The next frame to run (None: the stream ended). The gate is asked again once the
        frame is there: the pipeline may have filled while it came (the link stalled under a
        frame in flight). Then it waits as the freshest again, and a newer one sheds it."""
        while True:
            await self._admit()
            item = await self.frames.get()
            if item is None or not self.live or len(self.in_flight) < self._depth():
                return item
            if self.frames.empty():
                self.frames.put_nowait(item)
            else:
                self._shed(item[0])

    def _release(self) -> None:
        self.window.release()
        self.released.set()

    def _shed(self, frame_id: int) -> None:
        self.counts["shed"] += 1
        self.metrics.frames_shed.inc()
        self._finish_dropped(frame_id, "shed")

    async def _pipeline(self) -> None:
        while True:
            item = await self._next_frame()
            if item is None:
                return
            frame_id, captured_at, frame = item
            await self.window.acquire()
            cut = self.cut or self.local_cut  # the plan in force at this frame boundary
            job = _Frame(frame_id, captured_at, cut, captured_at + self.args.deadline)
            self.plans_used.add(cut.plan.plan_id)
            t0 = time.perf_counter()
            stats: list[CodecStat] = []
            try:
                sent = await self.compute(self._edge, cut, frame, stats)
            except Exception:
                log.exception("edge compute failed on frame %d", frame_id)
                self.metrics.errors.labels(ErrorCode.INTERNAL).inc()
                self._finish_dropped(frame_id, "edge_error")
                self._release()
                continue
            job.edge_s = time.perf_counter() - t0
            if cut is self.cut:
                self.plan_times["edge"].append(job.edge_s)
            self.metrics.stage.labels("edge").observe(job.edge_s)
            if cut.local:
                self._finish(job, sent, worker="edge", cloud_s=0.0)
                self._release()
                continue
            metas, job.frames = sent
            job.nbytes = sum(m.nbytes for m in metas)
            self._codec_seen(metas, stats)
            rid = self.next_request
            self.next_request += 1
            job.request = Request(rid, frame_id, cut.plan.plan_id, self.graph.fingerprint, metas,
                                  time.time(), self.args.deadline, want_output=self.args.want_output,
                                  plan_epoch=cut.plan.epoch)
            self.in_flight[rid] = job
            self.metrics.queue_depth.labels("in_flight").set(len(self.in_flight))
            self._hand_to_link(job)

    def _edge(self, cut: _Cut, frame: torch.Tensor, stats: list[CodecStat]) -> Any:
        """The edge part, and (unless the plan is edge-only) its tensors encoded as the plan
        says: the result when computed here, else (metas, frames)."""
        t0 = time.perf_counter()
        with torch.no_grad():
            sent = cut.edge(frame.to(self.device))
            out = cut.cloud(*sent) if cut.local else to_frames(
                cut.edge.wire_names, [t.cpu() for t in sent], cut.plan.codecs, stats)
        if self.args.edge_slowdown > 1:  # emulate a slower device: stretch compute and encoding
            time.sleep((self.args.edge_slowdown - 1) * (time.perf_counter() - t0))
        return out

    async def _measure_profile(self) -> None:
        """Measure the real profile (off the pipeline's thread: frames flow meanwhile) and
        hand it to the planner in place of the predicted one."""
        log.info("no cached profile: the planner gets a predicted one while this one is measured")
        await sent_first(lambda: self.profile_sent[0] == self.profile.digest)
        try:
            self.profile = await asyncio.to_thread(remeasure, self.profile, self.graph,
                                                   self.device, self.args, self.args.edge_slowdown)
        except Exception:
            log.exception("profiling failed: the planner keeps the predicted profile")
            return
        log.info("profile measured (%.1f ms a frame): the planner gets it", self.profile.total_s * 1e3)
        await self._send_profile()

    def _codec_seen(self, metas: tuple[Any, ...], stats: list[CodecStat]) -> None:
        """Count what the codecs did, and keep each one's running size: the planner is told
        when what is actually sent drifts from what the profile measured."""
        for codec, raw, encoded, seconds in stats:
            self.metrics.codec_bytes.labels(codec, "raw").inc(raw)
            self.metrics.codec_bytes.labels(codec, "encoded").inc(encoded)
            self.metrics.codec_time.labels(codec).observe(seconds * self.args.edge_slowdown)
        for m in metas:
            if m.codec != "raw":
                key = (m.name, m.codec)
                old = self.codec_sizes.get(key)
                self.codec_sizes[key] = m.nbytes if old is None else (
                    (1 - SIZE_MEMORY) * old + SIZE_MEMORY * m.nbytes)

    def _hand_to_link(self, job: _Frame) -> None:
        job.handed_at = self.last_handed = time.monotonic()
        job.sent = False
        self.link.put_nowait(job)  # unbounded: the window bounds what is in it

    async def _sender(self) -> None:
        """The uplink: FIFO, optionally throttled to the emulated rate."""
        while True:
            item = await self.link.get()
            nbytes = item.nbytes if isinstance(item, _Frame) else item[1]
            if self.uplink:
                await asyncio.sleep(nbytes * 8.0 / self.uplink.at(time.monotonic() - self.stream_t0))
            try:
                if isinstance(item, _Frame):
                    if item.request is None or item.request.request_id not in self.in_flight:
                        continue  # dropped while waiting for the link
                    await self.dealer.send(item.request, item.frames)
                    item.sent = True
                    self.metrics.bytes_sent.inc(item.nbytes)
                else:
                    probe_id, size = item
                    await self.dealer.send(Probe(probe_id, size), [bytes(size)])
            except zmq.ZMQError as exc:
                log.warning("send failed (%s); the deadline will account for it", exc)

    def _broker_link(self, event: int) -> None:
        """A dropped broker connection loses the requests in flight there (a broker restart):
        when it is back (its handshake done), they are sent again at once instead of waiting
        for their deadline. A duplicate answer (the broker had not died) is ignored as late.
        Only a link that was up is lost: a refused handshake (a wrong key) is said once by the
        service, not as a link coming and going."""
        if event == zmq.EVENT_DISCONNECTED and self.broker_up:
            self.broker_up, self.broker_lost = False, True
            log.warning("lost the broker: requests in flight go again when it is back")
        elif event == zmq.EVENT_HANDSHAKE_SUCCEEDED:
            self.broker_up = True
            if not self.broker_lost:
                return
            self.broker_lost = False
            again = [job for job in self.in_flight.values() if job.sent]
            log.info("broker back: sending %d request(s) in flight again", len(again))
            for job in again:
                assert job.request is not None
                job.attempts += 1
                job.request = _with_attempt(job.request, job.attempts)
                self.counts["retried"] += 1
                self.metrics.frames_retried.inc()
                self._hand_to_link(job)

    async def _refused(self, exc: WireError) -> None:
        log.warning("bad message from the broker: %s", exc)

    def _on_result(self, env: Envelope) -> None:
        msg: Result = env.msg  # type: ignore[assignment]
        now = time.monotonic()
        job = self.in_flight.get(msg.request_id)
        if job is None:
            self.metrics.errors.labels("late").inc()
            return
        # decoded before the frame leaves in_flight: if this raises (a bad output from a
        # peer), the frame stays in flight and its deadline reports it; never lost
        output = from_frames(msg.outputs, env.frames)[0] if msg.outputs else None
        del self.in_flight[msg.request_id]
        transfer_s = self._transfer_sample(job.nbytes, job.handed_at, now,
                                           msg.cloud_s + msg.queue_s)
        self.cloud_times.append(msg.cloud_s)
        if job.cut is self.cut:
            self.plan_times["cloud"].append(msg.cloud_s)
        self.rtts.append(now - job.handed_at)
        self._finish(job, output, worker=msg.worker, cloud_s=msg.cloud_s,
                     classes=(msg.top_classes, msg.top_scores), transfer_s=transfer_s)
        self._release()
        self.metrics.queue_depth.labels("in_flight").set(len(self.in_flight))

    def _on_probe_ack(self, env: Envelope) -> None:
        msg: ProbeAck = env.msg  # type: ignore[assignment]
        now = time.monotonic()
        sent_at = self.probe_sent.pop(msg.probe_id, None)
        if sent_at is None:
            return
        if msg.nbytes == 0:
            rtt = now - sent_at
            base = self.link_clock.base_rtt_s
            self.link_clock.base_rtt_s = rtt if base == 0 else min(base, rtt)
            return
        seconds = self._transfer_sample(msg.nbytes, sent_at, now, 0.0)
        if seconds > 0 and self.planner_bw:
            bps = msg.nbytes * 8.0 / seconds
            if not self.planner_bw / CONFIRM_FACTOR <= bps <= self.planner_bw * CONFIRM_FACTOR:
                # the link seems to have moved: confirm at once (two agreeing transfers make a
                # step at the planner), with a probe sized for the rate this one saw
                self.probe_hint_bps = bps
                self.last_probe = 0.0

    def _on_error(self, env: Envelope) -> None:
        err: ErrorReply = env.msg  # type: ignore[assignment]
        self.metrics.errors.labels(ErrorCode.label(err.code)).inc()
        job = self.in_flight.get(err.request_id)
        if job is None:
            if err.request_id < 0:
                log.warning("the broker refused a message: %s", clip(err.message))
            return
        job.attempts += 1
        backoff = retry_delay(err.retry, job.attempts, time.monotonic(), job.deadline)
        if backoff is not None:  # later, off the receive loop: other results keep coming
            self.counts["retried"] += 1
            self.metrics.frames_retried.inc()
            asyncio.get_running_loop().call_later(backoff, self._retry, err.request_id, job)
            return
        log.warning("frame %d refused: %s (%s)", job.frame_id, clip(err.message),
                    ErrorCode.label(err.code))
        self.in_flight.pop(err.request_id, None)
        self._finish_dropped(job.frame_id, ErrorCode.label(err.code), job)
        self._release()
        self.metrics.queue_depth.labels("in_flight").set(len(self.in_flight))

    def _retry(self, request_id: int, job: _Frame) -> None:
        if self.in_flight.get(request_id) is job:  # not dropped meanwhile
            assert job.request is not None
            job.request = _with_attempt(job.request, job.attempts)
            self._hand_to_link(job)

    async def _sweep_deadlines(self) -> None:
        late = expired(((rid, job.deadline) for rid, job in self.in_flight.items()),
                       time.monotonic())
        for rid in late:
            job = self.in_flight.pop(rid)
            self._finish_dropped(job.frame_id, "deadline", job)
            self._release()

    # -- outcomes --
    def _transfer_sample(self, nbytes: int, sent_at: float, now: float, remote_s: float) -> float:
        """One transfer's seconds on the link, as a sample for the planner's estimate."""
        seconds = self.link_clock.transfer(sent_at, now - remote_s)
        self.metrics.stage.labels("transfer").observe(seconds)
        if nbytes and seconds > 0:
            self.samples.append((nbytes, seconds))
        return seconds

    def _closed(self) -> None:
        self.open_frames -= 1
        if self.open_frames <= 0:
            self.idle.set()

    def _finish(self, job: _Frame, output: Any, worker: str, cloud_s: float,
                classes: tuple[tuple[int, ...], tuple[float, ...]] | None = None,
                transfer_s: float = 0.0) -> None:
        self._closed()
        now = time.monotonic()
        latency = now - job.captured_at
        if job.cut is self.cut:
            self.plan_waits.append((now, max(latency - job.edge_s - transfer_s - cloud_s, 0.0)))
        self.latencies.append(latency)
        self.recent.append((now, latency))
        self.counts["out"] += 1
        self.counts["local"] += worker == "edge"
        self.metrics.frames_out.inc()
        self.metrics.frame_latency.observe(latency)
        if classes is None:
            classes = top_k(output)
        if self.results:
            line: dict[str, Any] = {
                "frame_id": job.frame_id, "plan_id": job.cut.plan.plan_id,
                "plan_epoch": job.cut.plan.epoch,
                "algorithm": job.cut.plan.algorithm, "classes": list(classes[0]),
                "scores": [round(s, 6) for s in classes[1]], "latency_s": round(latency, 6),
                "edge_s": round(job.edge_s, 6), "cloud_s": round(cloud_s, 6), "worker": worker,
                "attempts": job.attempts + 1, "dropped": False, "done_at": round(time.time(), 6),
                "bytes": job.nbytes,
            }
            if job.cut.plan.exit:  # which early exit answered
                line["exit"] = job.cut.plan.exit
            if self.args.want_output and output is not None:
                out = output[0] if isinstance(output, (tuple, list)) else output
                line["output"] = out.flatten().tolist()
            self.results.write(json.dumps(line) + "\n")

    def _finish_dropped(self, frame_id: int, reason: str, job: _Frame | None = None) -> None:
        self._closed()
        self.counts["dropped"] += 1
        self.metrics.frames_dropped.inc()
        if self.results:
            self.results.write(json.dumps({
                "frame_id": frame_id, "dropped": True, "reason": reason,
                "plan_id": job.cut.plan.plan_id if job else None,
                "done_at": round(time.time(), 6),
            }) + "\n")

    # -- planner side --
    async def _on_plan(self, env: Envelope) -> None:
        msg: PlanMsg = env.msg  # type: ignore[assignment]
        try:
            plan = Plan.from_json(msg.plan)
        except (KeyError, TypeError, ValueError):
            self.metrics.errors.labels(ErrorCode.SCHEMA).inc()
            return
        if plan.edge and plan.edge != self.args.name:
            return  # another edge's plan (many edges, one planner)
        self.plan_heard = time.monotonic()
        if plan.epoch > self.epoch:  # a (re)started planner: give it our profile now
            if self.epoch:
                log.info("planner epoch %d (was %d): a new planner run", plan.epoch, self.epoch)
            self.epoch = plan.epoch
            await self._send_profile()
        if plan.fingerprint != self.graph.fingerprint:
            return
        current = self.cut.plan.key if self.cut else None
        if current is None or plan.key >= current:  # not an older plan republished
            self.planner_bw = msg.bandwidth_bps  # the planner's estimate now
            hint = self.probe_hint_bps
            if hint and hint / CONFIRM_FACTOR <= self.planner_bw <= hint * CONFIRM_FACTOR:
                self.probe_hint_bps = 0.0  # the planner has seen what the probes saw
        if self.cut is not None and plan.key == current:
            self.cut.plan = plan  # the plan in force, republished with the planner's prediction now
            return
        if not supersedes(plan.key, current):
            return
        try:
            cut = await self.compute(self._build_cut, plan)
        except Exception as exc:
            log.error("plan %d cannot be applied here: %s", plan.plan_id, exc)
            self.metrics.errors.labels("bad_plan").inc()
            return
        self.cut = cut  # the pipeline picks it up at the next frame boundary
        self.released.set()  # and its gate: a cut to the edge needs no room on a stalled link
        for times in self.plan_times.values():
            times.clear()
        self.plan_waits.clear()
        self.metrics.plan_changes.inc()
        self.metrics.plan.info({"plan_id": str(plan.plan_id), "algorithm": plan.algorithm,
                                "regime": msg.regime})
        log.info("plan %d (%s, %s): %d/%d nodes here, %d tensor(s) cross; %s",
                 plan.plan_id, plan.algorithm, msg.regime, len(plan.edge_nodes),
                 len(self.graph.nodes), len(plan.transfer), msg.reason)

    async def _refresh_profile(self) -> None:
        """The profile goes out when it changed (codec sizes drifted), while no plan shows that
        a planner has it (none yet, or the planner's republished plans stopped: a restarted
        planner publishes nothing before it has a profile), and otherwise only once a minute:
        it shares the uplink with the frames (hundreds of kB with its codec table, two seconds
        of a 3G link)."""
        table = codecprofile.corrected(self.profile.codecs, self.codec_sizes, SIZE_DRIFT)
        if table is not None:
            log.info("codec sizes as sent differ from the profile's by over %.0f%%: the "
                     "planner gets the sizes as sent", SIZE_DRIFT * 100)
            self.profile = replace(self.profile, codecs=table)
        digest, sent_at = self.profile_sent
        now = time.monotonic()
        unheard = self.cut is None or now - self.plan_heard > PLANS_SILENT_S
        if (digest != self.profile.digest or now - sent_at >= PROFILE_REFRESH_S
                or (unheard and now - sent_at >= PROFILE_RESEND_S)):
            await self._send_profile()

    async def _send_profile(self) -> None:
        dag_json = costgraph.to_json(self.graph.dag)
        try:
            await self.telemetry.send(EdgeProfile(self.args.name, self.args.model, self.graph.fingerprint,
                                                  dag_json, self.profile.to_json()), nowait=True)
        except zmq.ZMQError:
            return  # not connected (yet, or again): the next refresh tries again
        self.profile_sent = (self.profile.digest, time.monotonic())

    async def _send_telemetry(self) -> None:
        now = time.monotonic()
        window = [t for t in self.captured if now - t <= 2.0]
        fps = len(window) / min(2.0, max(now - self.started, 1e-3))
        samples, self.samples = self.samples, []
        self.last_telemetry = now
        _, stalled_bytes, stalled_s = self._stalled(now) or (-1, 0, 0.0)
        msg = Telemetry(
            self.args.name, self.cut.plan.plan_id if self.cut else -1, fps, self.frames.qsize(),
            len(self.in_flight), _median(self.plan_times["edge"]), _median(self.plan_times["cloud"]),
            _median(self.rtts), tuple((int(b), float(s)) for b, s in samples[-64:]),
            stalled_bytes, stalled_s,
            _median([w for at, w in self.plan_waits if now - at <= WAIT_WINDOW_S]))
        with contextlib.suppress(zmq.ZMQError):
            await self.telemetry.send(msg, nowait=True)

    async def _watch_link(self) -> None:
        """News about the link goes to the planner at once, not at the next 1 s telemetry: a
        transfer stuck on the link (its rate bound, again each time the bound has tightened
        RESTALL times), or a finished transfer whose rate is STALL_FACTOR away from the
        planner's estimate. At most five messages a second."""
        now = time.monotonic()
        urgent = False
        stalled = self._stalled(now)
        if stalled is not None:
            rid, _, elapsed = stalled
            last_rid, last_elapsed = self.stall_reported
            urgent = rid != last_rid or elapsed >= RESTALL * last_elapsed
        if self.planner_bw:
            expected = self.planner_bw / 8
            urgent |= any(not expected / STALL_FACTOR <= n / sec <= expected * STALL_FACTOR
                          for n, sec in self.samples if n >= PROBE_MIN_BYTES)
        if urgent and now - self.last_telemetry >= 0.2:
            if stalled is not None:  # reported: the next report waits for a tighter bound
                self.stall_reported = (stalled[0], stalled[2])
            await self._send_telemetry()

    def _stalled(self, now: float) -> tuple[int, int, float] | None:
        """The transfer on the link now (request id, bytes, seconds so far), once it has taken
        STALL_FACTOR times what the planner's estimate predicts (less the cloud's time), and
        from then on until it is off the link (the planner plans with its bound, and the bound
        must not vanish because the plan's bandwidth came down to meet it): a step down of
        the link is seen before any frame gets through it (probe.py says why that is sound)."""
        # handed to the link (an emulated uplink holds it before the socket sees it)
        on_link = [(rid, job) for rid, job in self.in_flight.items() if job.handed_at]
        if not self.planner_bw or not on_link or not self.cloud_times:
            return None  # before a first result, the cloud's share of a round trip is unknown
        rid, head = min(on_link, key=lambda item: item[1].handed_at)
        # time in flight is link time plus the cloud's: take the cloud at its slowest of late
        # (and as the plan predicts it), so a slow worker is not mistaken for a slow link
        remote = max(max(self.cloud_times), head.cut.plan.predicted.cloud_s)
        elapsed = self.link_clock.elapsed(head.handed_at, now) - remote
        if head.nbytes < PROBE_BYTES or elapsed <= 0:
            return None
        if rid != self.stalled_rid:
            if elapsed * self.planner_bw / 8 < STALL_FACTOR * head.nbytes:
                return None
            self.stalled_rid = rid
        return rid, head.nbytes, elapsed

    async def _probe(self) -> None:
        """Active probes when no frame uses the link (a plan that keeps everything here): a
        tiny one for the base RTT, then one sized to the link (PROBE_S at the plan's
        bandwidth, 8-64 kB); one pair at a time, at most one a second.
        They are what sees a step up of the link while nothing else crosses it (two agreeing
        probes make a step), so they run as often as that allows without queueing on a slow
        link (a pair waits until the last one is answered: a slow link is not queued up)."""
        now = time.monotonic()
        if now - self.last_handed < 2.0 or self.in_flight:
            return
        if now - self.profile_sent[1] < 2.0:  # a profile may still be on the link: a probe
            return  # behind it would take its time for the base RTT (and every sample's)
        for probe_id, sent_at in list(self.probe_sent.items()):
            if now - sent_at > PROBE_TIMEOUT_S:  # never answered (a lost broker): forget it
                del self.probe_sent[probe_id]
        if self.probe_sent or now - self.last_probe < 1.0:
            return
        # sized to the link: at cat1 a 64 kB probe takes 4 s, and would hold the link that long
        # after it got faster (the emulated uplink serialises at the rate of the moment it sends);
        # a probe that saw the link move sizes the next for the rate it saw (a confirmation
        # probe as small as the old rate's would measure the hops' latency, not the link)
        basis = self.probe_hint_bps or self.planner_bw
        sized = PROBE_BYTES if not basis else int(min(PROBE_BYTES, max(
            PROBE_MIN_BYTES, basis / 8 * PROBE_S)))
        for size in (0, sized):
            probe_id = len(self.probe_sent) + int(time.monotonic() * 1e3)
            self.probe_sent[probe_id] = self.last_probe = time.monotonic()
            await self.link.put((probe_id, size))

    # -- reporting --
    async def _live(self) -> None:
        now = time.monotonic()
        recent = [lat for t, lat in self.recent if now - t <= 5.0]
        fps = sum(1 for t, _ in self.recent if now - t <= 2.0) / 2.0
        p50, p95 = percentile(recent, 50), percentile(recent, 95)
        cut = self.cut or self.local_cut
        bw = format_bandwidth(self.planner_bw) if self.planner_bw else "?"
        print(f"[{now - self.started:5.0f}s] {fps:5.1f} fps | p50 {p50 * 1e3:6.1f} ms  "
              f"p95 {p95 * 1e3:6.1f} ms | plan {cut.plan.plan_id} {cut.plan.algorithm} "
              f"{len(cut.plan.edge_nodes)}/{len(self.graph.nodes)} nodes here, "
              f"{len(cut.plan.transfer)} tensor(s) | bw {bw} | in flight {len(self.in_flight)}, "
              f"dropped {self.counts['dropped']} ({self.counts['shed']} shed)", file=self.out,
              flush=True)

    def _summary(self) -> None:
        c = self.counts
        took = time.monotonic() - self.started
        lat = list(self.latencies)
        print(f"summary: {c['in']} frames in, {c['out']} results ({c['local']} computed here), "
              f"{c['dropped']} dropped ({c['shed']} shed), {c['retried']} retries in {took:.1f} s "
              f"({c['out'] / max(took, 1e-9):.2f} fps); latency p50 {percentile(lat, 50) * 1e3:.1f} ms, "
              f"p95 {percentile(lat, 95) * 1e3:.1f} ms, p99 {percentile(lat, 99) * 1e3:.1f} ms; "
              f"plans used: {sorted(self.plans_used)}", file=self.out, flush=True)


def _open_source(spec: str, shape: tuple[int, ...], peek: int = 1, loop: bool = False
                 ) -> tuple[Iterator[torch.Tensor], Any, list[torch.Tensor]]:
    """Open the source and read its first frames, so that a bad one is a start-up error (and
    codecs are measured on real frames); (its frames, the source itself: a live stream counts
    the frames it skipped, the first frames, which the stream still yields)."""
    source = open_source(spec, shape, loop)
    first = [f for f in itertools.islice(source, max(1, peek)) if f is not None]
    if not first:
        raise DadsError(f"frame source {spec!r} gave no frames")
    return itertools.chain(first, source), source, first


def _rate(text: str) -> float:
    try:
        return parse_bandwidth(text)
    except ValueError as exc:
        raise DadsError(f"--uplink: {exc}") from None


def _fps(text: str) -> float:
    try:
        fps = float(text)
    except ValueError:
        raise DadsError(f"--fps: {text!r} is not a number of frames per second") from None
    if not fps >= 0 or fps == float("inf"):
        raise DadsError(f"--fps: {text!r} must be a finite number >= 0")
    return fps


def _with_attempt(req: Request, attempt: int) -> Request:
    from dataclasses import replace

    return replace(req, attempt=attempt)


def _median(values: Collection[float]) -> float:
    return statistics.median(values) if values else 0.0


def add_arguments(p: argparse.ArgumentParser) -> None:
    config.add_security_arguments(p)
    config.add_model_arguments(p)
    config.add_planner_arguments(p)
    p.add_argument("--broker", default=config.endpoint("DADS_BROKER_HOST", "DADS_FRONTEND_PORT"),
                   help="broker frontend (env DADS_BROKER_HOST, DADS_FRONTEND_PORT)")
    p.add_argument("--source", default=config.env("DADS_SOURCE"),
                   help="synthetic, an image folder, a video file, a stream URL (rtsp://, "
                   "http://, ...) or camera:N (env DADS_SOURCE)")
    p.add_argument("--fps", default=config.env("DADS_FPS") or "10", metavar="FPS",
                   help="source frame rate; 0 = as fast as the pipeline takes; or a schedule, "
                   "e.g. 2,15@40 (15 fps from the 40th second) (env DADS_FPS, default 10)")
    p.add_argument("--loop", action="store_true", default=config.env("DADS_LOOP") == "1",
                   help="repeat a folder of images or a video file from its start when it ends "
                   "(env DADS_LOOP=1)")
    p.add_argument("--frames", type=int, default=0, help="stop after N frames (0: run until stopped)")
    p.add_argument("--closed-loop", action="store_true",
                   help="capture the next frame only when the last one is done (no frame ever "
                   "waits for another: per-frame latency as under very light load, measured fast)")
    p.add_argument("--window", type=int, default=4, help="frames in flight at most (default 4)")
    p.add_argument("--queue", type=int, default=1,
                   help="frames waiting for the pipeline at most (default 1); a live source "
                   "sheds the oldest waiting frame when a new one comes (the freshest wins), an "
                   "offline one (--fps 0, or --no-shed) waits for room")
    p.add_argument("--no-shed", action="store_true",
                   help="keep every frame of a source at a rate too: frames wait (up to --queue, "
                   "then the capture waits) instead of being shed; for recordings and tests, "
                   "where every frame matters more than freshness")
    p.add_argument("--deadline", type=float, default=10.0, metavar="S",
                   help="seconds a frame may take before it is dropped (default 10)")
    p.add_argument("--uplink", default=config.env("DADS_UPLINK") or None, metavar="RATE",
                   help="emulate an uplink of RATE in the sender, e.g. 4g or 5mbit, or a schedule, "
                   "e.g. wifi,3g@15,cat1@30 (env DADS_UPLINK)")
    p.add_argument("--edge-slowdown", type=float, default=1.0, metavar="F",
                   help="emulate an edge device F times slower than this machine (demos; the "
                   "profile sent to the planner is scaled to match; default 1)")
    p.add_argument("--wait-plan", type=float, default=30.0, metavar="S",
                   help="wait this long for a first plan before computing locally (default 30)")
    p.add_argument("--name", default=config.env("DADS_EDGE_NAME") or socket.gethostname(),
                   help="this edge's name at the planner, which plans for each edge on its own "
                   "(env DADS_EDGE_NAME; default the host name)")
    p.add_argument("--output", metavar="FILE", help="write one JSON line per frame here")
    p.add_argument("--want-output", action="store_true",
                   help="fetch the raw model output too (and write it in --output)")
    p.add_argument("--live", action="store_true", help="print a status line every second")
    p.add_argument("--metrics-port", type=int,
                   default=int(config.env("DADS_METRICS_PORT") or 9104), help="default 9104")


def main(args: argparse.Namespace) -> int:
    setup_logging("edge_agent")
    why = check_source(args.source)  # said now, not after seconds of loading the model
    if why:
        raise DadsError(why)
    return run_service(EdgeAgent(args).run)
