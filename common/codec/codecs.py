"""The codec registry: every encoding a crossing tensor may travel in, by name.

A codec is a small typed object: its name (what a plan and a tensor frame's header say), whether
it is lossy, which tensors it applies to, `encode` on the edge and `decode` on the worker.

- `raw` — the tensor's bytes as they are (zero-copy; what every frame was before codecs).
- frames (uint8 images, (1, C, H, W) or (C, H, W) with C = 1 or 3): `png` (lossless) and
  `jpeg95`, `jpeg90`, `jpeg75` (lossy), through Pillow (libjpeg-turbo, zlib).
- activations (float32): `fp16` (half precision), `int8` (affine per channel: each channel of
  dim 1 maps its [min, max] onto 0..255), both lossy.
- `zstd` on top of raw, fp16 or int8 (`zstd`, `fp16+zstd`, `int8+zstd`): lossless entropy coding,
  with the bytes of multi-byte elements split into planes first (the high bytes of floats are
  alike; ReLU outputs are full of zeros).

Decoding trusts nothing: the declared dtype and shape fix the decoded size exactly, a zstd frame
must declare that size in its header before anything is decompressed (no decompression bomb), an
image's header must state the declared size and mode before its pixels are decoded, and a payload
that does not decode to exactly the declared tensor raises CodecError.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import zstandard

from common.errors import DadsError

__all__ = ["RAW", "Codec", "CodecError", "CODECS", "NAMES", "LOSSY", "get", "applicable", "max_encoded",
           "FRAME_CODECS", "ACTIVATION_CODECS"]

RAW = "raw"
ZSTD_LEVEL = 1  # the edge is the slow side: the fastest level already finds the zeros
_SLACK = 64 * 1024  # headers and worst-case expansion of a codec over the raw size


class CodecError(DadsError, ValueError):
    """A payload that does not decode to exactly the declared tensor, or a codec that does not
    apply to a tensor."""


Encoder = Callable[[np.ndarray], bytes]
Decoder = Callable[[memoryview, np.dtype, tuple[int, ...]], np.ndarray]


@dataclass(frozen=True)
class Codec:
    name: str
    lossy: bool
    kinds: frozenset[str]  # dtypes it takes
    image: bool  # only (1, C, H, W) / (C, H, W) uint8 frames with C in (1, 3)
    _encode: Encoder
    _decode: Decoder

    def applies(self, dtype: str, shape: tuple[int, ...]) -> bool:
        if dtype not in self.kinds or math.prod(shape) == 0:
            return False
        return not self.image or _image_dims(shape) is not None

    def encode(self, array: np.ndarray) -> bytes | memoryview:
        if not self.applies(array.dtype.name, array.shape):
            raise CodecError(f"codec {self.name} does not apply to {array.dtype.name} {array.shape}")
        return self._encode(np.ascontiguousarray(array))

    def decode(self, data: object, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
        """Exactly a `dtype` array of `shape`, or CodecError."""
        if not self.applies(dtype, shape):
            raise CodecError(f"codec {self.name} does not apply to {dtype} {tuple(shape)}")
        buf = memoryview(data).cast("B")  # type: ignore[arg-type]
        try:
            out = self._decode(buf, np.dtype(dtype), tuple(shape))
        except CodecError:
            raise
        except Exception as exc:  # a codec library's complaint about a hostile payload
            raise CodecError(f"{self.name} payload does not decode: {type(exc).__name__}: "
                             f"{str(exc)[:120]}") from None
        if out.dtype != np.dtype(dtype) or out.shape != tuple(shape):
            raise CodecError(f"{self.name} payload decodes to {out.dtype} {out.shape}, "
                             f"declared {dtype} {tuple(shape)}")
        return out


# --- raw and zstd ------------------------------------------------------------------------------


def _raw_decode(buf: memoryview, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if len(buf) != math.prod(shape) * dtype.itemsize:
        raise CodecError(f"raw payload of {len(buf)} B for {dtype} {shape}")
    return np.frombuffer(buf, dtype=dtype).reshape(shape)


def _planes(data: np.ndarray) -> np.ndarray:
    """Bytes of each element split into planes (byte 0 of every element, then byte 1, ...)."""
    size = data.dtype.itemsize
    flat = data.reshape(-1).view(np.uint8)
    return flat if size == 1 else flat.reshape(-1, size).T


def _unplanes(raw: np.ndarray, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    size = dtype.itemsize
    flat = raw if size == 1 else raw.reshape(size, -1).T
    return np.ascontiguousarray(flat).view(dtype).reshape(shape)


def _zstd(payload: np.ndarray) -> bytes:
    return zstandard.ZstdCompressor(level=ZSTD_LEVEL).compress(np.ascontiguousarray(payload).data)


def _unzstd(buf: memoryview, size: int) -> np.ndarray:
    """Exactly `size` bytes out of one zstd frame, refused unless its header says so."""
    try:
        declared = zstandard.frame_content_size(buf)
    except zstandard.ZstdError:
        raise CodecError("not a zstd frame") from None
    if declared != size:
        raise CodecError(f"zstd frame declares {declared} B, the tensor is {size} B")
    out = zstandard.ZstdDecompressor().decompress(buf, max_output_size=size)
    if len(out) != size:
        raise CodecError(f"zstd frame gives {len(out)} B, the tensor is {size} B")
    return np.frombuffer(bytearray(out), dtype=np.uint8)


def _zstd_encode(a: np.ndarray) -> bytes:
    return _zstd(_planes(a))


def _zstd_decode(buf: memoryview, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    return _unplanes(_unzstd(buf, math.prod(shape) * dtype.itemsize), dtype, shape)


# --- fp16 and int8 -----------------------------------------------------------------------------

_F16_MAX = float(np.finfo(np.float16).max)


def _fp16(a: np.ndarray) -> np.ndarray:
    return np.clip(a, -_F16_MAX, _F16_MAX).astype(np.float16)


def _fp16_decode_payload(half: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return half.astype(np.float32).reshape(shape)


def _fp16_encode(a: np.ndarray) -> bytes:
    return _fp16(a).tobytes()


def _fp16_decode(buf: memoryview, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    if len(buf) != math.prod(shape) * 2:
        raise CodecError(f"fp16 payload of {len(buf)} B for {shape}")
    return _fp16_decode_payload(np.frombuffer(buf, dtype=np.float16), shape)


def _channels(shape: tuple[int, ...]) -> int:
    return shape[1] if len(shape) >= 2 else 1


def _int8(a: np.ndarray) -> np.ndarray:
    """[lo: C float32][scale: C float32][q: numel uint8], channel = dim 1 (or the whole tensor)."""
    c = _channels(a.shape)
    per = np.moveaxis(a.reshape(a.shape[0], c, -1) if a.ndim >= 2 else a.reshape(1, 1, -1), 1, 0)
    per = per.reshape(c, -1)
    finite = np.where(np.isfinite(per), per, 0.0)
    lo = finite.min(axis=1).astype(np.float32)
    hi = finite.max(axis=1).astype(np.float32)
    scale = ((hi - lo) / 255.0).astype(np.float32)
    safe = np.where(scale > 0, scale, 1.0).astype(np.float32)
    q = np.rint((np.clip(finite, lo[:, None], hi[:, None]) - lo[:, None]) / safe[:, None])
    q = q.astype(np.uint8)
    q = np.moveaxis(q.reshape(c, a.shape[0], -1), 0, 1) if a.ndim >= 2 else q
    return np.concatenate([lo.view(np.uint8), scale.view(np.uint8), q.reshape(-1)])


def _unint8(payload: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    c, numel = _channels(shape), math.prod(shape)
    if payload.size != 8 * c + numel:
        raise CodecError(f"int8 payload of {payload.size} B for {shape}")
    lo = payload[: 4 * c].copy().view(np.float32)
    scale = payload[4 * c: 8 * c].copy().view(np.float32)
    if not (np.isfinite(lo).all() and np.isfinite(scale).all()):
        raise CodecError("int8 payload has a non-finite scale or offset")
    q = payload[8 * c:].astype(np.float32)
    if len(shape) >= 2:
        q = q.reshape(shape[0], c, -1)
        out = q * scale[None, :, None] + lo[None, :, None]
    else:
        out = q * scale[0] + lo[0]
    return out.astype(np.float32).reshape(shape)


def _int8_encode(a: np.ndarray) -> bytes:
    return _int8(a).tobytes()


def _int8_decode(buf: memoryview, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    return _unint8(np.frombuffer(buf, dtype=np.uint8), shape)


def _fp16_zstd_encode(a: np.ndarray) -> bytes:
    return _zstd(_planes(_fp16(a)))


def _fp16_zstd_decode(buf: memoryview, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    half = _unplanes(_unzstd(buf, math.prod(shape) * 2), np.dtype(np.float16), shape)
    return _fp16_decode_payload(half, shape)


def _int8_zstd_encode(a: np.ndarray) -> bytes:
    return _zstd(_int8(a))


def _int8_zstd_decode(buf: memoryview, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
    return _unint8(_unzstd(buf, 8 * _channels(shape) + math.prod(shape)), shape)


# --- images ------------------------------------------------------------------------------------


def _image_dims(shape: tuple[int, ...]) -> tuple[int, int, int] | None:
    """(C, H, W) of a frame codecs can take: (1, C, H, W) or (C, H, W), C in (1, 3)."""
    if len(shape) == 4 and shape[0] == 1:
        shape = shape[1:]
    if len(shape) == 3 and shape[0] in (1, 3) and shape[1] > 0 and shape[2] > 0:
        return shape[0], shape[1], shape[2]
    return None


def _image_encoder(fmt: str, **options: int) -> Encoder:
    def encode(a: np.ndarray) -> bytes:
        from PIL import Image

        c, h, w = _image_dims(a.shape)  # type: ignore[misc]
        hwc = np.ascontiguousarray(a.reshape(c, h, w).transpose(1, 2, 0))
        img = Image.fromarray(hwc[:, :, 0] if c == 1 else hwc, mode="L" if c == 1 else "RGB")
        out = io.BytesIO()
        img.save(out, fmt, **options)
        return out.getvalue()

    return encode


def _image_decoder(fmt: str) -> Decoder:
    def decode(buf: memoryview, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        from PIL import Image

        c, h, w = _image_dims(shape)  # type: ignore[misc]
        with Image.open(io.BytesIO(buf)) as img:  # reads the header only
            mode = "L" if c == 1 else "RGB"
            if img.format != fmt or img.size != (w, h) or img.mode != mode:
                raise CodecError(f"{fmt} payload is {img.format} {img.mode} {img.size[0]}x"
                                 f"{img.size[1]}, declared {mode} {w}x{h}")
            hwc = np.asarray(img)
        return np.ascontiguousarray(hwc.reshape(h, w, c).transpose(2, 0, 1)).reshape(shape)

    return decode


# --- the registry ------------------------------------------------------------------------------

_ANY = frozenset({"float32", "float16", "float64", "int64", "int32", "int16", "int8", "uint8",
                  "bool"})
_F32 = frozenset({"float32"})
_U8 = frozenset({"uint8"})


def _codec(name: str, lossy: bool, kinds: frozenset[str], encode: Encoder, decode: Decoder,
           image: bool = False) -> Codec:
    return Codec(name, lossy, kinds, image, encode, decode)


CODECS: dict[str, Codec] = {c.name: c for c in (
    _codec(RAW, False, _ANY, lambda a: a.tobytes(), _raw_decode),
    _codec("zstd", False, _ANY, _zstd_encode, _zstd_decode),
    _codec("png", False, _U8, _image_encoder("PNG", compress_level=1), _image_decoder("PNG"),
           image=True),
    *(_codec(f"jpeg{q}", True, _U8, _image_encoder("JPEG", quality=q), _image_decoder("JPEG"),
             image=True) for q in (95, 90, 75)),
    _codec("fp16", True, _F32, _fp16_encode, _fp16_decode),
    _codec("fp16+zstd", True, _F32, _fp16_zstd_encode, _fp16_zstd_decode),
    _codec("int8", True, _F32, _int8_encode, _int8_decode),
    _codec("int8+zstd", True, _F32, _int8_zstd_encode, _int8_zstd_decode),
)}
NAMES: frozenset[str] = frozenset(CODECS)
LOSSY: frozenset[str] = frozenset(c.name for c in CODECS.values() if c.lossy)
FRAME_CODECS = ("png", "jpeg95", "jpeg90", "jpeg75")
ACTIVATION_CODECS = ("zstd", "fp16", "fp16+zstd", "int8", "int8+zstd")


def get(name: str) -> Codec:
    codec = CODECS.get(name)
    if codec is None:
        raise CodecError(f"unknown codec {str(name)[:40]!r}: one of {', '.join(sorted(CODECS))}")
    return codec


def applicable(dtype: str, shape: tuple[int, ...]) -> list[Codec]:
    """Every codec but raw that can carry a tensor of this dtype and shape."""
    return [c for c in CODECS.values() if c.name != RAW and c.applies(dtype, shape)]


def max_encoded(raw_bytes: int) -> int:
    """The most bytes any codec may spend on a tensor of `raw_bytes` (the wire refuses more)."""
    return raw_bytes + raw_bytes // 64 + _SLACK
