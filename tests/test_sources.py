"""Frame sources: video files and network streams, through PyAV, with videos the tests encode."""

from __future__ import annotations

import functools
import http.server
import itertools
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from services.edge_agent.sources import LiveStream, open_source

SHAPE = (1, 3, 48, 64)
LEVELS = [i * 20 for i in range(12)]  # frame i is a flat grey of this level


def encode_video(path: Path, levels: list[int] = LEVELS) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for level in levels:
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), level, np.uint8),
                                               format="rgb24")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def test_a_video_file_gives_every_frame_at_the_models_size(tmp_path: Path) -> None:
    frames = list(open_source(str(encode_video(tmp_path / "clip.mp4")), SHAPE))
    assert len(frames) == len(LEVELS)
    for frame, level in zip(frames, LEVELS, strict=True):
        assert tuple(frame.shape) == SHAPE and frame.dtype == torch.uint8
        assert abs(frame.float().mean().item() - level) < 4  # lossy, but that frame


def test_a_bad_video_is_a_clear_error(tmp_path: Path) -> None:
    from common.errors import DadsError

    bad = tmp_path / "not-a-video.mp4"
    bad.write_bytes(b"\x00" * 1000)
    with pytest.raises(DadsError, match="cannot be opened"):
        next(open_source(str(bad), SHAPE))


@pytest.fixture
def http_video(tmp_path: Path):
    """The test video over HTTP: a network stream that ends after 12 frames, every time."""
    encode_video(tmp_path / "clip.mp4")
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/clip.mp4"
    server.shutdown()
    server.server_close()


def test_a_stream_is_reopened_when_it_ends_and_stale_frames_are_skipped(http_video: str) -> None:
    stream = LiveStream(http_video, SHAPE)
    try:
        first = next(stream)
        assert tuple(first.shape) == SHAPE
        deadline = time.monotonic() + 30
        while stream.reconnects < 2:  # the "camera" hung up twice and came back
            assert time.monotonic() < deadline, stream.last_error
            time.sleep(0.05)
        frame = next(stream)  # the newest frame, not the oldest one waiting
        assert tuple(frame.shape) == SHAPE
        assert stream.stale > 0 and stream.frames > len(LEVELS)
    finally:
        stream.close()


def test_a_stream_that_never_sends_is_a_start_up_error() -> None:
    from common.errors import DadsError

    stream = LiveStream("http://127.0.0.1:9/none.mp4", SHAPE, first_frame_s=1.0)
    try:
        with pytest.raises(DadsError, match="no frame in 1 s"):
            next(stream)
    finally:
        stream.close()


def test_loop_repeats_a_video_file_and_an_image_folder(tmp_path: Path) -> None:
    from PIL import Image

    video = encode_video(tmp_path / "clip.mp4")
    frames = list(itertools.islice(open_source(str(video), SHAPE, loop=True), 3 * len(LEVELS)))
    means = [f.float().mean().item() for f in frames]
    assert means[: len(LEVELS)] == means[len(LEVELS): 2 * len(LEVELS)] == means[2 * len(LEVELS):]
    folder = tmp_path / "photos"
    folder.mkdir()
    for i in range(3):
        Image.fromarray(np.full((48, 64, 3), 40 * i, np.uint8)).save(folder / f"{i}.png")
    levels = [int(f.float().mean().item()) for f in
              itertools.islice(open_source(str(folder), SHAPE, loop=True), 7)]
    assert levels == [0, 40, 80, 0, 40, 80, 0]
    assert len(list(open_source(str(folder), SHAPE))) == 3  # without it, the folder ends


def test_loop_of_a_source_that_never_ends_is_a_clear_error() -> None:
    from common.errors import DadsError

    for spec in ("synthetic", "camera:0", "rtsp://camera.local/stream"):
        with pytest.raises(DadsError, match="--loop repeats"):
            open_source(spec, SHAPE, loop=True)
