"""Codecs in the running system: real processes, real sockets, frames from a folder of images.

Under the default policy (lossless) the plan may send PNG frames and zstd activations and
every result stays exact; under `--fidelity any --codecs jpeg90` the frame crosses as JPEG; a
payload that lies about its tensor (a zstd bomb, an image bigger than declared) is refused with
`bad_codec`, counted, and the worker keeps serving.
"""

from __future__ import annotations

import io
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import zmq
import zstandard

from common.model.models import input_shape_for, load_served
from common.model.split import relative_error
from common.planning.partition import Plan
from common.runtime.wire import ErrorCode, ErrorReply, PlanMsg, Request, TensorMeta, decode, encode
from tests.system import MODEL, System, metric, shared_cache_system

pytestmark = pytest.mark.timeout(600)
FRAMES = 6


def smooth_images(folder: Path, n: int) -> Path:
    """Photograph-like frames (smooth gradients and shapes: they compress, as photos do)."""
    from PIL import Image, ImageDraw

    folder.mkdir(parents=True, exist_ok=True)
    yy, xx = np.mgrid[0:224, 0:224].astype(np.float32)
    for i in range(n):
        rgb = np.stack([128 + 100 * np.sin((xx + 9 * i) / 37), 128 + 90 * np.cos(yy / 23 + i),
                        (xx + yy + 20 * i) / 3.5 % 256], axis=-1)
        img = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
        ImageDraw.Draw(img).ellipse((30 + 10 * i, 40, 150, 120 + 5 * i), fill=(200, 40, 60))
        img.save(folder / f"{i:03d}.png")
    return folder


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return smooth_images(tmp_path_factory.mktemp("images"), FRAMES)


@pytest.fixture(scope="module")
def reference(images: Path):
    from services.edge_agent.sources import open_source

    model = load_served(MODEL).eval()
    frames = list(open_source(str(images), input_shape_for(MODEL)))
    with torch.no_grad():
        return [model(f) for f in frames]


def _plan(system: System, name: str) -> Plan:
    """The plan the edge `name` used (the newest plan id in its log line)."""
    sub = system.socket(zmq.SUB, system.ports.plans, "edge", "planner")
    sub.setsockopt(zmq.SUBSCRIBE, b"")
    try:
        assert sub.poll(5000), "no plan published"
        msg, _ = decode(sub.recv_multipart())
        assert isinstance(msg, PlanMsg)
        return Plan.from_json(msg.plan)
    finally:
        sub.close(linger=0)


@pytest.fixture(scope="module")
def lossless(tmp_path_factory: pytest.TempPathFactory):
    # 3G-like uplink: sending the raw frame (150 kB) costs 0.4 s, the PNG of a smooth one far less
    with shared_cache_system(tmp_path_factory, workers=1,
                             planner_args=["--initial-bandwidth", "3mbit"]) as s:
        yield s


def test_lossless_codecs_keep_every_result_exact(lossless: System, images: Path,
                                                 reference) -> None:
    lines = lossless.stream("edge-png", frames=FRAMES, fps=2,
                            extra=["--source", str(images), "--edge-slowdown", "20", "--uplink", "3mbit"])
    assert sorted(line["frame_id"] for line in lines) == list(range(FRAMES))
    for line in lines:
        assert not line["dropped"], line
        ref = reference[line["frame_id"]]
        assert relative_error(torch.tensor(line["output"]).reshape(ref.shape), ref) == 0.0
    plan = _plan(lossless, "edge-png")
    assert plan.codecs and set(plan.codecs.values()) <= {"raw", "png", "zstd"}, plan.codecs
    assert set(plan.codecs.values()) - {"raw"}, plan.codecs  # something crossed encoded
    text = lossless.scrape(lossless.ports.metrics_base + 2)  # the worker
    encoded = metric(text, "dads_codec_bytes_total", form="encoded")
    raw = metric(text, "dads_codec_bytes_total", form="raw")
    assert 0 < encoded < raw, (encoded, raw)


def _request(plan: Plan, meta: TensorMeta) -> Request:
    return Request(1, 1, plan.plan_id, plan.fingerprint, (meta,), time.time(), 5.0,
                   plan_epoch=plan.epoch)


def test_lying_payloads_are_refused_and_counted(lossless: System, images: Path) -> None:
    from PIL import Image

    plan = _plan(lossless, "edge-png")
    assert plan.transfer == ("frame",) or plan.transfer, plan
    name = plan.transfer[0]
    shape = (1, 3, 224, 224)
    if name != "frame":
        pytest.skip(f"the plan cuts at {name}, not the frame")
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (200 * 2**20))  # 200 MiB of zeros
    big = io.BytesIO()
    Image.new("RGB", (5000, 5000)).save(big, "PNG")
    dealer = lossless.socket(zmq.DEALER, lossless.ports.frontend, "edge", "broker")
    try:
        for codec, payload in (("zstd", bomb), ("png", big.getvalue())):
            meta = TensorMeta(name, "uint8", shape, len(payload), codec)
            dealer.send_multipart(encode(_request(plan, meta), [payload]))
            assert dealer.poll(30_000), "no answer"
            reply, _ = decode(dealer.recv_multipart())
            assert isinstance(reply, ErrorReply) and reply.code == ErrorCode.CODEC, reply
    finally:
        dealer.close(linger=0)
    text = lossless.scrape(lossless.ports.metrics_base + 2)
    assert metric(text, "dads_errors_total", kind=ErrorCode.CODEC) >= 2
    lines = lossless.stream("edge-after", frames=2, fps=2,
                            extra=["--source", str(images), "--edge-slowdown", "20", "--uplink", "3mbit"])
    assert all(not line["dropped"] for line in lines) and len(lines) == 2  # still serving


def test_a_lossy_policy_sends_jpeg(tmp_path_factory: pytest.TempPathFactory, images: Path,
                                   reference) -> None:
    args = ["--initial-bandwidth", "3mbit", "--fidelity", "any", "--codecs", "jpeg90"]
    with shared_cache_system(tmp_path_factory, workers=1, planner_args=args) as s:
        lines = s.stream("edge-jpeg", frames=FRAMES, fps=2,
                         extra=["--source", str(images), "--edge-slowdown", "20", "--uplink", "3mbit"])
        assert sorted(line["frame_id"] for line in lines) == list(range(FRAMES))
        assert all(not line["dropped"] for line in lines)
        plan = _plan(s, "edge-jpeg")
        assert plan.codecs == {"frame": "jpeg90"}, plan.codecs
        text = s.scrape(s.ports.metrics_base + 2)
        assert metric(text, "dads_codec_bytes_total", codec="jpeg90", form="encoded") > 0
        # lossy, but the same picture: the outputs stay near the exact ones
        errors = [relative_error(torch.tensor(line["output"]).reshape(
            reference[line["frame_id"]].shape), reference[line["frame_id"]]) for line in lines]
        assert 0 < max(errors) < 0.5, errors
