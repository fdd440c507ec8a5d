"""Tensors ↔ raw wire frames (the torch side of the wire contract; `wire` stays torch-free).

Both directions are zero-copy: a sent frame is a memoryview over the (contiguous, CPU) tensor's
storage, which ZeroMQ keeps alive until sent; a received tensor is a view of the ZeroMQ frame's
buffer, which is writable (models run in-place ops such as ReLU(inplace=True) on their inputs)
and stays alive as long as the tensor. Read-only buffers (plain bytes) are copied once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from common.runtime.wire import ALLOWED_DTYPES, ErrorCode, TensorMeta, WireError

__all__ = ["to_frames", "from_frames"]


def _frame(t: torch.Tensor) -> memoryview:
    t = t.detach().to("cpu").contiguous()
    if t.numel() == 0:
        return memoryview(b"")
    if t.dtype == torch.bfloat16:  # numpy has no bfloat16: send its bits
        t = t.view(torch.int16)
    return memoryview(t.reshape(-1).numpy()).cast("B")  # 1-d: 0-d views cannot be cast


def to_frames(names: Sequence[str], tensors: Sequence[torch.Tensor]) -> tuple[tuple[TensorMeta, ...], list[memoryview]]:
    metas, frames = [], []
    for name, t in zip(names, tensors, strict=True):
        dtype = str(t.dtype).removeprefix("torch.")
        if dtype not in ALLOWED_DTYPES:
            raise WireError(ErrorCode.DTYPE, f"tensor {name!r} has dtype {dtype}, not sendable")
        frame = _frame(t)
        metas.append(TensorMeta(name, dtype, tuple(t.shape), len(frame)))
        frames.append(frame)
    return tuple(metas), frames


def from_frames(metas: Sequence[TensorMeta], frames: Sequence[Any]) -> list[torch.Tensor]:
    """Tensors from frames that `wire.decode` already validated (sizes, dtypes)."""
    out = []
    for meta, frame in zip(metas, frames, strict=True):
        dtype = getattr(torch, meta.dtype)
        if meta.nbytes == 0:
            out.append(torch.empty(meta.shape, dtype=dtype))
            continue
        buf = frame.buffer if hasattr(frame, "buffer") else memoryview(frame)
        if buf.readonly:
            buf = bytearray(buf)
        out.append(torch.frombuffer(buf, dtype=dtype).reshape(meta.shape))
    return out
