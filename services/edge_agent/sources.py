"""Frame sources: each yields uint8 frames shaped like the model's input (1, 3, H, W).

synthetic (deterministic, the default: frame i can be regenerated anywhere), a folder of images,
a video file or a network stream (rtsp, http, ...: PyAV, a dependency), or a camera (OpenCV, an
optional package: its absence is a clear error that says what to install).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from common.errors import DadsError
from common.model.models import synthetic_frame

__all__ = ["open_source", "check_source", "LiveStream", "IMAGE_SUFFIXES", "STREAM_SCHEMES"]

log = logging.getLogger("edge_agent")

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
STREAM_SCHEMES = ("rtsp://", "rtsps://", "rtmp://", "http://", "https://", "srt://", "udp://")


def _fit(frame_hwc: torch.Tensor, shape: tuple[int, ...]) -> torch.Tensor:
    """HWC uint8 -> (1, 3, H, W) uint8 at the model's size."""
    x = frame_hwc.permute(2, 0, 1).unsqueeze(0)[:, :3].float()
    x = F.interpolate(x, size=shape[-2:], mode="bilinear", align_corners=False, antialias=True)
    return x.round().clamp(0, 255).to(torch.uint8)


def _images(folder: Path, shape: tuple[int, ...]) -> Iterator[torch.Tensor]:
    from PIL import Image

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise DadsError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in {folder}")
    read = 0
    for path in files:
        try:
            with Image.open(path) as img:
                rgb = img.convert("RGB")
        except (OSError, ValueError) as exc:  # not an image, truncated: skipped, and said
            log.warning("skipped %s: not a readable image (%s)", path, exc)
            continue
        read += 1
        hwc = torch.frombuffer(bytearray(rgb.tobytes()), dtype=torch.uint8)
        yield _fit(hwc.reshape(rgb.height, rgb.width, 3), shape)
    if not read:
        raise DadsError(f"none of the {len(files)} image file(s) in {folder} could be read")


def _video(path: str, shape: tuple[int, ...]) -> Iterator[torch.Tensor]:
    """A video file, every frame to its end (PyAV: FFmpeg's demuxers and decoders)."""
    import av

    try:
        container = av.open(path)
    except av.error.FFmpegError as exc:
        raise DadsError(f"video {path!r} cannot be opened: {exc}") from None
    with container:
        for frame in container.decode(video=0):
            yield _fit(torch.from_numpy(frame.to_ndarray(format="rgb24")), shape)


class LiveStream:
    """A network stream (rtsp, http, rtmp, ...) as a live camera: the newest frame, always.

    A reader thread decodes as fast as the stream sends; asking for a frame takes the newest
    one, and every frame decoded meanwhile is stale: skipped and counted (`stale`), so a stream
    faster than the pipeline adds no latency. A stream that breaks or ends is reopened with
    backoff (0.5 s doubling to 10 s, `reconnects`); one that gives no frame in `first_frame_s`
    after the start is a start-up error.
    """

    def __init__(self, url: str, shape: tuple[int, ...], first_frame_s: float = 30.0) -> None:
        self.url, self.shape, self.first_frame_s = url, shape, first_frame_s
        self.stale = self.reconnects = self.frames = 0
        self.last_error = ""
        self._latest: torch.Tensor | None = None
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="live-stream", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        import av

        delay = 0.5
        while not self._stop.is_set():
            try:
                with av.open(self.url, timeout=10.0) as container:
                    for frame in container.decode(video=0):
                        tensor = _fit(torch.from_numpy(frame.to_ndarray(format="rgb24")), self.shape)
                        delay = 0.5
                        with self._cond:
                            self.stale += self._latest is not None
                            self.frames += 1
                            self._latest = tensor
                            self._cond.notify_all()
                        if self._stop.is_set():
                            return
            except (av.error.FFmpegError, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
            if self._stop.wait(delay):
                return
            self.reconnects += 1
            log.warning("stream %s %s; reconnecting (%d)", self.url,
                        f"broke ({self.last_error})" if self.last_error else "ended",
                        self.reconnects)
            delay = min(delay * 2, 10.0)

    def __iter__(self) -> LiveStream:
        return self

    def __next__(self) -> torch.Tensor:
        started = time.monotonic()
        with self._cond:
            while self._latest is None:
                if self.frames == 0 and time.monotonic() - started > self.first_frame_s:
                    raise DadsError(f"stream {self.url}: no frame in {self.first_frame_s:.0f} s"
                                    + (f" ({self.last_error})" if self.last_error else ""))
                self._cond.wait(0.5)
            frame, self._latest = self._latest, None
        return frame

    def close(self) -> None:
        self._stop.set()


def _camera(index: int, shape: tuple[int, ...]) -> Iterator[torch.Tensor]:
    try:
        import cv2
    except ImportError:
        raise DadsError("reading a camera needs OpenCV: pip install opencv-python-headless") from None
    cap = cv2.VideoCapture(index)
    if not cap.isOpened():
        raise DadsError(f"camera {index} cannot be opened")
    try:
        while True:
            ok, bgr = cap.read()
            if not ok:
                return
            yield _fit(torch.from_numpy(bgr[:, :, ::-1].copy()), shape)
    finally:
        cap.release()


def _synthetic(shape: tuple[int, ...]) -> Iterator[torch.Tensor]:
    i = 0
    while True:
        yield synthetic_frame(i, shape)
        i += 1


def _looped(opener: Callable[[], Iterator[torch.Tensor]]) -> Iterator[torch.Tensor]:
    """A finite source from its start again each time it ends (a fixed camera for benchmarks and
    demos); one that gives nothing at all ends, rather than spin."""
    while True:
        gave = False
        for frame in opener():
            gave = True
            yield frame
        if not gave:
            return


def open_source(spec: str, shape: tuple[int, ...], loop: bool = False) -> Iterator[torch.Tensor]:
    """'synthetic', a folder of images, a video file, a stream URL, or 'camera:N'; `loop` repeats a
    folder or a video file from its start when it ends (live sources never end: it is an error)."""
    if loop and (spec == "synthetic" or spec.startswith(("camera:", *STREAM_SCHEMES))):
        raise DadsError(f"--loop repeats a folder of images or a video file; {spec!r} is neither "
                        "(it does not end)")
    if spec == "synthetic":
        return _synthetic(shape)
    if spec.startswith("camera:"):
        return _camera(int(spec.split(":", 1)[1] or 0), shape)
    if spec.startswith(STREAM_SCHEMES):
        return LiveStream(spec, shape)
    path = Path(spec)
    if path.is_dir():
        return _looped(lambda: _images(path, shape)) if loop else _images(path, shape)
    if path.is_file():
        return _looped(lambda: _video(str(path), shape)) if loop else _video(str(path), shape)
    raise DadsError(check_source(spec) or f"frame source {spec!r} cannot be opened")


def check_source(spec: str) -> str | None:
    """Why `spec` cannot be a frame source, before anything is loaded (None: it may be)."""
    if spec == "synthetic" or spec.startswith(STREAM_SCHEMES):
        return None
    if spec.startswith("camera:"):
        index = spec.split(":", 1)[1]
        return None if index.isdigit() or not index else (
            f"frame source {spec!r}: camera:N takes a device number, e.g. camera:0")
    if Path(spec).exists():
        return None
    return (f"frame source {spec!r} does not exist (a folder of images or a video file; or "
            f"'synthetic', 'camera:N', a stream URL: {', '.join(STREAM_SCHEMES)})")
