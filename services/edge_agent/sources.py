"""Frame sources: each yields uint8 frames shaped like the model's input (1, 3, H, W).

synthetic (deterministic, the default: frame i can be regenerated anywhere), a folder of images,
a video file (PyAV), or a camera (OpenCV). Decoders are optional packages: a missing one is a
clear error that says what to install.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

from common.errors import DadsError
from common.model.models import synthetic_frame

__all__ = ["open_source", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


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
    for path in files:
        with Image.open(path) as img:
            hwc = torch.frombuffer(bytearray(img.convert("RGB").tobytes()), dtype=torch.uint8)
            yield _fit(hwc.reshape(img.height, img.width, 3), shape)


def _video(path: Path, shape: tuple[int, ...]) -> Iterator[torch.Tensor]:
    try:
        import av
    except ImportError:
        raise DadsError("reading video files needs PyAV: pip install av") from None
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            yield _fit(torch.from_numpy(frame.to_ndarray(format="rgb24")), shape)


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


def open_source(spec: str, shape: tuple[int, ...]) -> Iterator[torch.Tensor]:
    """'synthetic', a folder of images, a video file, or 'camera:N'."""
    if spec == "synthetic":
        return _synthetic(shape)
    if spec.startswith("camera:"):
        return _camera(int(spec.split(":", 1)[1] or 0), shape)
    path = Path(spec)
    if path.is_dir():
        return _images(path, shape)
    if path.is_file():
        return _video(path, shape)
    raise DadsError(f"frame source {spec!r}: not 'synthetic', 'camera:N', a folder or a video file")
