"""Sources on real inputs: the real video, image folders, the synthetic scene, a live MJPEG stream
(killed and restarted), dropped-frame counting, and clear errors for what cannot be opened."""

from __future__ import annotations

import shutil
import threading
import time

import cv2
import numpy as np
import pytest
from conftest import free_port, shared_path
from runtime_helpers import MjpegServer, video

from edge_yolox.config import CameraConfig, SourceConfig
from edge_yolox.errors import SourceError
from edge_yolox.sources import LiveSource, open_source, uses_argus
from edge_yolox.sources.base import Paced
from edge_yolox.sources.synthetic import SyntheticReader


def source(uri: str, **kw):
    return open_source(SourceConfig(uri=uri, **kw), CameraConfig())


def test_video_file_frame_by_frame():
    src = source(str(video()))
    frames = [src.read() for _ in range(20)]
    src.close()
    assert [f.index for f in frames] == list(range(20))
    assert frames[0].image.shape == (432, 768, 3) and src.fps == pytest.approx(10.0)
    assert not src.live and src.dropped == 0


def test_file_source_prepares_ahead_in_its_thread():
    """`prepare` runs in the decoding thread for every frame; a frame it fails on arrives unprepared."""
    def prepare(image):
        if len(seen) == 3:
            seen.append(None)
            raise ValueError("bad frame")
        seen.append(threading.current_thread().name)
        return image.mean()

    seen = []
    src = open_source(SourceConfig(uri=str(video())), CameraConfig(), prepare)
    frames = [src.read() for _ in range(6)]
    src.close()
    assert [f.prepared is None for f in frames] == [False, False, False, True, False, False]
    assert all(f.prepared == f.image.mean() for f in frames if f.prepared is not None)
    assert {name for name in seen if name} == {"decode:" + src.name}


def test_image_folder_skips_unreadable(tmp_path, caplog):
    for name in ("dog.jpg", "busstop.jpg"):
        shutil.copy(shared_path("images", name), tmp_path / name)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    src = source(str(tmp_path))
    names = []
    while (frame := src.read()) is not None:
        names.append(frame.name)
    assert names == ["busstop.jpg", "dog.jpg"] and src.finished
    assert "broken.jpg" in caplog.text


def test_single_image():
    src = source(str(shared_path("images", "dog.jpg")))
    assert src.read().image.shape[2] == 3 and src.read() is None and src.finished


def test_synthetic_scene_moves_and_is_deterministic():
    a, b = SyntheticReader(320, 240, seed=3), SyntheticReader(320, 240, seed=3)
    first, second = a.grab(), a.grab()
    assert np.array_equal(first, b.grab()) and first.shape == (240, 320, 3)
    assert not np.array_equal(first, second)


def test_live_source_keeps_newest_and_counts_drops():
    """A 200 fps camera read at ~20 fps: most frames are dropped, each read is the newest."""
    live = LiveSource(lambda: Paced(SyntheticReader(160, 120, fps=200.0, frames=300), 200.0), reconnect=False)
    got = []
    while (frame := live.read(timeout=2.0)) is not None:
        got.append(frame.index)
        time.sleep(0.05)
    live.close()
    assert live.finished and live.dropped > 0
    assert got == sorted(got) and len(got) + live.dropped == 300


def test_realtime_file_ends():
    src = source(str(shared_path("images")), realtime=True)
    assert src.live
    frames = []
    while not src.finished:
        frame = src.read(timeout=1.0)
        if frame is not None:
            frames.append(frame)
    src.close()
    assert frames


def test_missing_camera_is_a_clear_error_not_a_hang():
    t0 = time.monotonic()
    with pytest.raises(SourceError, match=r"camera7: /dev/video7 does not exist"):
        open_source(SourceConfig(uri="camera"), CameraConfig(index=7))
    assert time.monotonic() - t0 < 5


@pytest.mark.parametrize("uri, message", [
    ("/nonexistent/clip.mp4", "no such file"),
    ("picamera2", "picamera2"),
    ("videotestsrc ! appsink", "GStreamer"),
])
def test_unopenable_sources(uri, message):
    if uri.startswith("videotestsrc") and "GStreamer:                   YES" in cv2.getBuildInformation():
        pytest.skip("this OpenCV has GStreamer")
    with pytest.raises(SourceError, match=message):
        source(uri)


def test_corrupt_video_file(tmp_path):
    path = tmp_path / "clip.mp4"
    path.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\x00" * 512)
    with pytest.raises(SourceError, match="cannot open"):
        source(str(path))


def test_live_stream_reconnects_after_the_server_dies():
    server = MjpegServer(free_port()).start()
    try:
        live = open_source(SourceConfig(uri=server.url, reconnect_min_s=0.2, reconnect_max_s=1.0, timeout_s=2.0),
                           CameraConfig())
        assert _frames(live, 5, timeout=20) == 5
        server.stop()
        time.sleep(2.0)  # the camera is gone for a while: reads return nothing, nothing raises
        assert live.read(timeout=0.5) is None and not live.finished
        server.start()
        assert _frames(live, 5, timeout=30) == 5
        assert live.reconnects >= 1 and not live.finished
        live.close()
    finally:
        server.stop()


def _frames(src, n: int, timeout: float) -> int:
    got, deadline = 0, time.monotonic() + timeout
    while got < n and time.monotonic() < deadline:
        if src.read(timeout=0.5) is not None:
            got += 1
    return got


def test_opencv_before_4_5_2_opens_files_and_streams(monkeypatch, caplog):
    """OpenCV < 4.5.2 (JetPack 4's 4.1.1, Debian bullseye's 4.5.1) has only VideoCapture(source, api) and no stream
    timeout properties: files open without params, URLs without the timeouts, with a warning."""
    from edge_yolox.sources import opencv

    real = cv2.VideoCapture
    monkeypatch.setattr(opencv.cv2, "VideoCapture", lambda source, api: real(source, api))  # a 3rd arg: TypeError
    monkeypatch.delattr(cv2, "CAP_PROP_OPEN_TIMEOUT_MSEC")
    monkeypatch.delattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC")
    src = source(str(video()), realtime=True)
    assert src.read(timeout=10) is not None
    src.close()
    server = MjpegServer(free_port()).start()
    try:
        live = source(server.url, timeout_s=5.0)
        assert _frames(live, 3, timeout=20) == 3
        live.close()
    finally:
        server.stop()
    assert "has no stream timeouts" in caplog.text


@pytest.mark.parametrize("uri, kind, argus", [
    ("camera", "nvargus", True), ("nvargus", "opencv", True), ("camera", "picamera2", False),
    ("nvarguscamerasrc sensor-id=1 ! nvvidconv ! appsink", "opencv", True), ("videotestsrc ! appsink", "opencv", False),
])
def test_which_sources_use_argus(uri, kind, argus):
    assert uses_argus(SourceConfig(uri=uri), CameraConfig(kind=kind)) is argus
