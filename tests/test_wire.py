"""Contract tests of the wire codec: round trips, frame counts, hostile input."""

from __future__ import annotations

import math

import msgpack
import msgpack_numpy
import numpy as np
import pytest
import torch

from common.runtime.tensorwire import from_frames, to_frames
from common.runtime.wire import (
    LIMITS,
    PROTOCOL_VERSION,
    BrokerStats,
    Control,
    ErrorCode,
    Kind,
    Limits,
    PlanMsg,
    Probe,
    Request,
    Result,
    Telemetry,
    WireError,
    clip,
    decode,
    encode,
)


def roundtrip_tensors(tensors: list[torch.Tensor]) -> list[torch.Tensor]:
    metas, frames = to_frames([f"t{i}" for i in range(len(tensors))], tensors)
    req = Request(1, 2, 3, "fp", metas, 0.0, 5.0)
    parts = encode(req, frames)
    assert len(parts) == 2 + len(tensors)  # kind, header, one frame per tensor
    msg, got = decode([bytes(p) for p in parts])
    assert msg == req
    return from_frames(msg.tensors, got)


def test_tensors_round_trip_exactly() -> None:
    base = torch.randn(4, 6)
    tensors = [
        base.t(),  # non-contiguous
        torch.empty(0, 3),  # empty
        torch.tensor(3.5),  # scalar
        torch.randn(2, 3).to(torch.bfloat16),
        torch.randint(0, 255, (1, 3, 4, 4), dtype=torch.uint8),
        torch.tensor([True, False]),
        torch.arange(5, dtype=torch.int64),
        torch.randn(3).half(),
    ]
    back = roundtrip_tensors(tensors)
    for a, b in zip(tensors, back, strict=True):
        assert a.dtype == b.dtype and a.shape == b.shape
        assert torch.equal(a, b)
    back[0].add_(1)  # received tensors are writable (in-place ops run on them)


def test_every_message_round_trips() -> None:
    messages = [
        Result(1, 2, 3, "w", (1, 2), (0.5, 0.25), 0.01),
        PlanMsg({"plan_id": 4, "edge_nodes": ["x"]}, "heavy", 1e6, "why"),
        Telemetry("edge", 1, 2.0, 3, 4, 0.1, 0.2, 0.3, ((10, 0.5),)),
        Control(5e6),
        BrokerStats(2, 0, 1),
    ]
    for m in messages:
        assert decode(encode(m))[0] == m
    probe, frames = decode(encode(Probe(1, 4), [b"abcd"]))
    assert probe == Probe(1, 4) and frames == [b"abcd"]


def test_small_numeric_arrays_ride_in_control_headers() -> None:
    t = Telemetry("edge", 1, 2.0, 3, 4, 0.1, 0.2, 0.3, np.array([[4096, 0.5], [8192, 1.0]]))
    assert decode(encode(t))[0].samples == ((4096, 0.5), (8192, 1.0))


def header(kind: Kind, fields: dict, default=None) -> list[bytes]:
    return [bytes([kind]), msgpack.packb(fields, default=default)]


GOOD_REQ = {"v": PROTOCOL_VERSION, "request_id": 1, "frame_id": 1, "plan_id": 1,
            "fingerprint": "f", "tensors": [{"name": "x", "dtype": "float32", "shape": [2],
                                             "nbytes": 8}], "sent_at": 0.0, "deadline_s": 1.0}


@pytest.mark.parametrize(("parts", "code"), [
    ([], ErrorCode.MALFORMED),
    ([b"\x01"], ErrorCode.MALFORMED),  # truncated multipart
    ([b"\xff", b"\x80"], ErrorCode.MALFORMED),  # unknown kind
    ([b"\x01\x02", b"\x80"], ErrorCode.MALFORMED),
    ([b"\x01", b"\xc1garbage"], ErrorCode.MALFORMED),  # not msgpack
    ([b"\x01", msgpack.packb([1, 2])], ErrorCode.MALFORMED),
    (header(Kind.REQUEST, {**GOOD_REQ, "v": 99}) + [b"x" * 8], ErrorCode.VERSION),
    (header(Kind.REQUEST, {k: v for k, v in GOOD_REQ.items() if k != "v"}) + [b"x" * 8],
     ErrorCode.VERSION),
    (header(Kind.REQUEST, {**GOOD_REQ, "plan_id": "one"}) + [b"x" * 8], ErrorCode.SCHEMA),
    (header(Kind.REQUEST, {**GOOD_REQ, "request_id": True}) + [b"x" * 8], ErrorCode.SCHEMA),
    (header(Kind.REQUEST, {k: v for k, v in GOOD_REQ.items() if k != "fingerprint"}) + [b"x" * 8],
     ErrorCode.SCHEMA),
    (header(Kind.REQUEST, {**GOOD_REQ, "deadline_s": math.nan}) + [b"x" * 8], ErrorCode.SCHEMA),
    (header(Kind.REQUEST, {**GOOD_REQ, "deadline_s": math.inf}) + [b"x" * 8], ErrorCode.SCHEMA),
    (header(Kind.CONTROL, {"v": 1, "force_bandwidth_bps": math.inf}), ErrorCode.SCHEMA),
    (header(Kind.CONTROL, {"v": 1, "force_bandwidth_bps": -math.inf}), ErrorCode.SCHEMA),
    (header(Kind.REQUEST, GOOD_REQ) + [b"x"] * (LIMITS.max_tensors + 1), ErrorCode.TOO_LARGE),
    (header(Kind.REQUEST, GOOD_REQ), ErrorCode.BAD_TENSORS),  # frame missing
    (header(Kind.REQUEST, GOOD_REQ) + [b"x" * 7], ErrorCode.BAD_TENSORS),  # short frame
    (header(Kind.REQUEST, {**GOOD_REQ, "tensors": [{"name": "x", "dtype": "float32",
                                                     "shape": [2**40], "nbytes": 8}]}) + [b"x" * 8],
     ErrorCode.BAD_TENSORS),  # huge claimed shape
    (header(Kind.REQUEST, {**GOOD_REQ, "tensors": [{"name": "x", "dtype": "object",
                                                     "shape": [1], "nbytes": 8}]}) + [b"x" * 8],
     ErrorCode.DTYPE),
    (header(Kind.REQUEST, {**GOOD_REQ, "tensors": [{"name": "x", "dtype": "float32",
                                                     "shape": [-2], "nbytes": 8}]}) + [b"x" * 8],
     ErrorCode.BAD_TENSORS),
    (header(Kind.CONTROL, {"v": 1, "force_bandwidth_bps": 1.0}) + [b"extra"], ErrorCode.MALFORMED),
    (header(Kind.PROBE, {"v": 1, "probe_id": 1, "nbytes": 10}) + [b"short"], ErrorCode.BAD_TENSORS),
])
def test_hostile_messages_are_refused_with_a_code(parts: list[bytes], code: str) -> None:
    with pytest.raises(WireError) as err:
        decode(parts)
    assert err.value.code == code


def explode() -> None:
    raise AssertionError("unpickled: the decoder ran code from the network")


class Boom:
    def __reduce__(self):  # unpickling this calls explode()
        return (explode, ())


def test_object_arrays_never_unpickle() -> None:
    evil = np.array([Boom()], dtype=object)
    parts = header(Kind.TELEMETRY, {"v": 1, "sender": evil}, default=msgpack_numpy.encode)
    with pytest.raises(WireError) as err:
        decode(parts)
    assert err.value.code == ErrorCode.PICKLE
    void = np.zeros(2, dtype=[("a", "f4")])
    with pytest.raises(WireError, match="not allowed"):
        decode(header(Kind.TELEMETRY, {"v": 1, "sender": void}, default=msgpack_numpy.encode))


def test_size_limits() -> None:
    small = Limits(max_payload_bytes=16, max_header_bytes=200)
    metas, frames = to_frames(["x"], [torch.zeros(8)])  # 32 bytes > 16
    with pytest.raises(WireError) as err:
        decode(encode(Request(1, 1, 1, "f", metas, 0.0, 1.0), frames), small)
    assert err.value.code == ErrorCode.TOO_LARGE
    big = encode(Request(1, 1, 1, "f" * 500, (), 0.0, 1.0))
    with pytest.raises(WireError, match="header"):
        decode(big, small)
    assert LIMITS.max_message_bytes > LIMITS.max_payload_bytes


def test_peer_text_is_bounded_in_errors_logs_and_labels() -> None:
    name = "n" * 4096
    meta = {"name": name, "dtype": "float32", "shape": [3], "nbytes": 8}
    with pytest.raises(WireError) as err:
        decode(header(Kind.REQUEST, {**GOOD_REQ, "tensors": [meta]}) + [b"x" * 8])
    assert len(str(err.value)) < 400  # a 4 KB tensor name does not become a 4 KB log line
    assert len(clip(name)) < 250 and clip("short") == "short"
    assert ErrorCode.label(ErrorCode.FINGERPRINT) == "fingerprint"
    assert ErrorCode.label("made-up-by-a-peer-" + name) == ErrorCode.label(7) == "other"
