"""Tensors ↔ wire frames (the torch side of the wire contract; `wire` stays torch-free).

A raw tensor is zero-copy both ways: a sent frame is a memoryview over the (contiguous, CPU)
tensor's storage, which ZeroMQ keeps alive until sent; a received tensor is a view of the ZeroMQ
frame's buffer, which is writable (models run in-place ops such as ReLU(inplace=True) on their
inputs) and stays alive as long as the tensor. Read-only buffers (plain bytes) are copied once.
An encoded tensor (`common.codec.codecs`) is encoded on send and decoded, bounded by its
declared dtype and shape, on receipt; one that does not decode is a WireError(CODEC).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from common.codec import codecs
from common.codec.codecs import CodecError
from common.runtime.wire import ALLOWED_DTYPES, ErrorCode, TensorMeta, WireError

__all__ = ["CodecStat", "to_frames", "from_frames"]

#: (codec, raw bytes, encoded bytes, seconds) of one encoded or decoded tensor
CodecStat = tuple[str, int, int, float]


def _frame(t: torch.Tensor) -> memoryview:
    t = t.detach().to("cpu").contiguous()
    if t.numel() == 0:
        return memoryview(b"")
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: send its bits
        t = t.view(torch.int16)
    return memoryview(t.reshape(-1).numpy()).cast("B")  # 1-d: 0-d views cannot be cast


def to_frames(names: Sequence[str], tensors: Sequence[torch.Tensor],
              codecs_of: Mapping[str, str] | None = None,
              stats: list[CodecStat] | None = None) -> tuple[tuple[TensorMeta, ...], list[Any]]:
    """Frames for the tensors; `codecs_of` names the codec of a node's tensors (raw if absent,
    and raw for a tensor the codec cannot carry, e.g. the shape vector of a tuple output).
    Each encoded tensor appends its CodecStat to `stats`."""
    metas, frames = [], []
    for name, t in zip(names, tensors, strict=True):
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in ALLOWED_DTYPES:
            raise WireError(ErrorCode.DTYPE, f"tensor {name!r} has dtype {dtype}, not sendable")
        shape = tuple(t.shape)
        codec = codecs.CODECS.get((codecs_of or {}).get(name, codecs.RAW))
        if codec is None or codec.name == codecs.RAW or not codec.applies(dtype, shape):
            frame: Any = _frame(t)
            metas.append(TensorMeta(name, dtype, shape, len(frame)))
        else:
            t0 = time.perf_counter()
            array = t.detach().to("cpu").contiguous().numpy()
            frame = codec.encode(array)
            if stats is not None:
                stats.append((codec.name, array.nbytes, len(frame), time.perf_counter() - t0))
            metas.append(TensorMeta(name, dtype, shape, len(frame), codec.name))
        frames.append(frame)
    return tuple(metas), frames


def from_frames(metas: Sequence[TensorMeta], frames: Sequence[Any],
                stats: list[CodecStat] | None = None) -> list[torch.Tensor]:
    """Tensors from frames that `wire.decode` already validated (sizes, dtypes); each decoded
    tensor appends its CodecStat to `stats`."""
    out = []
    for meta, frame in zip(metas, frames, strict=True):
        dtype = getattr(torch, meta.dtype)
        buf = frame.buffer if hasattr(frame, "buffer") else memoryview(frame)
        if meta.codec != codecs.RAW:
            t0 = time.perf_counter()
            try:
                array = codecs.get(meta.codec).decode(buf, meta.dtype, meta.shape)
            except CodecError as exc:
                raise WireError(ErrorCode.CODEC, f"tensor {meta.name!r}: {exc}") from None
            if stats is not None:
                stats.append((meta.codec, array.nbytes, meta.nbytes, time.perf_counter() - t0))
            out.append(torch.from_numpy(array if array.flags.writeable else array.copy()))
            continue
        if meta.nbytes == 0:
            out.append(torch.empty(meta.shape, dtype=dtype))
            continue
        if buf.readonly:
            buf = bytearray(buf)
        out.append(torch.frombuffer(buf, dtype=dtype).reshape(meta.shape))
    return out
