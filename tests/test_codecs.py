"""Codecs: round trips, and payloads built to hurt the worker (bombs, lies, garbage)."""

from __future__ import annotations

import io

import msgpack
import numpy as np
import pytest
import torch
import zstandard

from common.codec import codecs
from common.codec.codecs import CodecError
from common.runtime.tensorwire import from_frames, to_frames
from common.runtime.wire import (
    PROTOCOL_VERSION,
    ErrorCode,
    Kind,
    Request,
    TensorMeta,
    WireError,
    decode,
    encode,
)

RNG = np.random.default_rng(7)
ACT = np.maximum(RNG.standard_normal((1, 16, 12, 10)), 0).astype(np.float32)  # ReLU output
FRAME = RNG.integers(0, 256, (1, 3, 32, 48), dtype=np.uint8)


@pytest.mark.parametrize("name", sorted(codecs.NAMES))
def test_round_trip(name: str) -> None:
    codec = codecs.get(name)
    for x in (ACT, FRAME, ACT[0, 0], np.float32(2.5) * np.ones((1, 1, 1, 1), np.float32)):
        if not codec.applies(x.dtype.name, x.shape):
            continue
        out = codec.decode(codec.encode(x), x.dtype.name, x.shape)
        assert out.dtype == x.dtype and out.shape == x.shape
        if not codec.lossy:
            assert np.array_equal(out, x)  # lossless means bit-exact
        elif x.dtype == np.float32:
            tol = {"fp16": 2e-3, "int8": 1 / 255 * 0.51}[name.split("+")[0]]
            span = float(x.max() - x.min()) or 1.0
            assert np.abs(out - x).max() <= tol * max(span, float(np.abs(x).max())) + 1e-7
        else:  # jpeg: close on average (a photograph fares better than this noise)
            assert np.abs(out.astype(int) - x).mean() < 80


def test_what_applies_to_what() -> None:
    names = {c.name for c in codecs.applicable("uint8", (1, 3, 224, 224))}
    assert {"png", "jpeg90", "zstd"} <= names and "int8" not in names
    assert {c.name for c in codecs.applicable("float32", (1, 64, 56, 56))} == set(
        codecs.ACTIVATION_CODECS)
    assert codecs.applicable("int64", (4,)) == [codecs.get("zstd")]
    assert not codecs.get("png").applies("uint8", (1, 4, 8, 8))  # 4 channels: no image codec
    assert not codecs.get("zstd").applies("float32", (0, 3))  # nothing to encode


def test_compression_helps_where_it_should() -> None:
    sparse = codecs.get("zstd").encode(ACT)
    assert len(sparse) < ACT.nbytes * 0.8  # half the ReLU output is zeros
    assert len(codecs.get("int8+zstd").encode(ACT)) < ACT.nbytes / 4


def test_zstd_bomb_is_refused_before_it_inflates() -> None:
    bomb = zstandard.ZstdCompressor().compress(b"\0" * (64 * 2**20))  # 64 MiB of zeros
    assert len(bomb) < 64 * 1024
    with pytest.raises(CodecError, match="declares 67108864 B"):
        codecs.get("zstd").decode(bomb, "float32", (1, 16))
    # a frame that hides its size (streamed) is refused too
    stream = zstandard.ZstdCompressor().compressobj()
    hidden = stream.compress(b"\0" * 64) + stream.flush()
    with pytest.raises(CodecError):
        codecs.get("zstd").decode(hidden, "float32", (1, 16))


@pytest.mark.parametrize("name,payload", [
    ("zstd", b"not zstd at all"),
    ("int8", b"\0" * 10),
    ("fp16", b"\0" * 3),
    ("int8+zstd", zstandard.ZstdCompressor().compress(b"\xff" * (8 * 16 + 16 * 12 * 10))),
    ("png", b"\x89PNG\r\n\x1a\n garbage"),
    ("jpeg90", b"\xff\xd8\xff garbage"),
])
def test_garbage_is_a_clear_error(name: str, payload: bytes) -> None:
    x = FRAME if codecs.get(name).image else ACT
    with pytest.raises(CodecError):
        codecs.get(name).decode(payload, x.dtype.name, x.shape)


def test_an_image_must_be_what_its_header_declares() -> None:
    from PIL import Image

    big = io.BytesIO()
    Image.new("RGB", (4000, 4000)).save(big, "PNG")  # 48 MB of pixels in a small file
    with pytest.raises(CodecError, match="declared RGB 48x32"):
        codecs.get("png").decode(big.getvalue(), "uint8", FRAME.shape)
    jpeg = codecs.get("jpeg90").encode(FRAME)
    with pytest.raises(CodecError, match="PNG payload is JPEG"):
        codecs.get("png").decode(jpeg, "uint8", FRAME.shape)


def test_nonfinite_int8_scales_are_refused() -> None:
    payload = bytearray(codecs.get("int8").encode(ACT))
    payload[0:4] = np.float32(np.nan).tobytes()
    with pytest.raises(CodecError, match="non-finite"):
        codecs.get("int8").decode(bytes(payload), "float32", ACT.shape)


def test_the_wire_carries_codecs_exactly_and_refuses_lies() -> None:
    tensors = [torch.from_numpy(ACT), torch.from_numpy(FRAME), torch.arange(3)]
    metas, frames = to_frames(["a", "f", "s"], tensors, {"a": "zstd", "f": "png", "s": "int8"})
    assert [m.codec for m in metas] == ["zstd", "png", "raw"]  # int8 cannot carry int64: raw
    req = Request(1, 1, 1, "f" * 32, metas, 0.0, 1.0)
    msg, got = decode(encode(req, frames))
    back = from_frames(msg.tensors, got)
    assert all(torch.equal(a, b) for a, b in zip(back, tensors, strict=True))


def _request(meta: TensorMeta, frame: bytes) -> list[bytes]:
    header = {"v": PROTOCOL_VERSION, "request_id": 1, "frame_id": 1, "plan_id": 1,
              "fingerprint": "f" * 32, "sent_at": 0.0, "deadline_s": 1.0,
              "tensors": [[meta.name, meta.dtype, list(meta.shape), meta.nbytes, meta.codec]]}
    header["tensors"] = [dict(zip(("name", "dtype", "shape", "nbytes", "codec"), t, strict=True))
                         for t in header["tensors"]]
    return [bytes([Kind.REQUEST]), msgpack.packb(header), frame]


@pytest.mark.parametrize("meta,frame,code", [
    (TensorMeta("x", "float32", (1, 8), 5, "lz77"), b"\0" * 5, ErrorCode.CODEC),  # unknown
    (TensorMeta("x", "float32", (1, 8), 5, "png"), b"\0" * 5, ErrorCode.CODEC),  # not an image
    (TensorMeta("x", "float32", (1, 8), 100_000, "zstd"), b"\0" * 100_000, ErrorCode.CODEC),
    # a tiny frame declaring a tensor beyond the payload limit (the bomb, caught by the header)
    (TensorMeta("x", "float32", (1, 2**28), 20, "zstd"), b"\0" * 20, ErrorCode.TOO_LARGE),
])
def test_the_wire_refuses_bad_codec_headers(meta: TensorMeta, frame: bytes, code: str) -> None:
    with pytest.raises(WireError) as exc:
        decode(_request(meta, frame))
    assert exc.value.code == code


def test_a_payload_that_does_not_decode_is_a_wire_error() -> None:
    meta = TensorMeta("x", "float32", (1, 8), 16, "zstd")
    msg, frames = decode(_request(meta, b"\x28\xb5\x2f\xfd" + b"\0" * 12))
    with pytest.raises(WireError) as exc:
        from_frames(msg.tensors, frames)
    assert exc.value.code == ErrorCode.CODEC
