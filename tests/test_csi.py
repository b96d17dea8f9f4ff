"""Raspberry Pi CSI cameras (picamera2) without a Pi: the reader against tests/standins/picamera2, a stand-in that
blocks and raises like upstream picamera2 (its docstring lists which behaviours): stalls, reopening, a busy camera,
a failed configure/start, import errors, and what `edge-yolox doctor` says about each."""

from __future__ import annotations

import importlib.util
import os
import sys
import textwrap
import time
from pathlib import Path

import pytest

from edge_yolox import doctor
from edge_yolox.config import CameraConfig, SourceConfig
from edge_yolox.errors import SourceError
from edge_yolox.sources import open_source
from edge_yolox.sources.csi import Picamera2Reader

STANDINS = Path(__file__).resolve().parent / "standins"


@pytest.fixture()
def picamera2(monkeypatch):
    """The stand-in picamera2 module, fresh for each test (its CAMERA keeps the hardware's state)."""
    monkeypatch.syspath_prepend(str(STANDINS))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)
    import picamera2

    yield picamera2
    sys.modules.pop("picamera2", None)  # not monkeypatch: its undo would put the module back


def live(timeout_s: float = 0.5):
    return open_source(SourceConfig(uri="picamera2", timeout_s=timeout_s, reconnect_min_s=0.1, reconnect_max_s=0.2),
                       CameraConfig(kind="picamera2", width=64, height=48, fps=30))


def frames(src, n: int, within: float) -> int:
    got, deadline = 0, time.monotonic() + within
    while got < n and time.monotonic() < deadline:
        got += src.read(timeout=0.2) is not None
    return got


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_frames_are_bgr_and_close_releases_the_camera(picamera2):
    src = live()
    frame = src.read(timeout=5)
    assert frame.image.shape == (48, 64, 3) and (frame.image[..., 0] == 255).all()
    src.close()
    assert picamera2.CAMERA.acquired_by == {}


def test_a_stalled_camera_times_out_is_flushed_closed_and_reopened(picamera2, caplog):
    src = live(timeout_s=0.5)
    try:
        assert frames(src, 5, within=5) == 5
        picamera2.CAMERA.stall()
        time.sleep(1.5)  # a timeout, a close and at least one reopen that times out again
        assert src.read(timeout=0.1) is None and not src.finished
        picamera2.CAMERA.resume()
        assert frames(src, 5, within=5) == 5
    finally:
        src.close()
    assert src.reconnects >= 1 and "no frame for 0.5 s" in caplog.text
    assert picamera2.CAMERA.hung_stops == 0  # cancel_all_and_flush() came before stop()
    assert picamera2.CAMERA.opened == src.reconnects + 1  # never a second object for a camera still held
    assert picamera2.CAMERA.acquired_by == {}


@pytest.mark.parametrize("stage", ["configure", "start"])
def test_a_failed_configure_or_start_releases_the_camera(picamera2, stage):
    before = open_fds()
    for _ in range(3):
        picamera2.CAMERA.fail_next = stage
        with pytest.raises(SourceError, match=f"picamera2:0: cannot start the camera at 64x48 30 fps .*{stage}"):
            Picamera2Reader(0, 64, 48, 30, timeout_s=1)
        assert picamera2.CAMERA.acquired_by == {}  # else the next open would find it busy
    reader = Picamera2Reader(0, 64, 48, 30, timeout_s=1)
    assert reader.grab().shape == (48, 64, 3)
    reader.close()
    assert open_fds() == before  # no descriptor left behind by the failed opens


def test_busy_and_missing_cameras_are_one_line(picamera2):
    holder = picamera2.Picamera2(0)  # another program has the camera
    try:
        with pytest.raises(SourceError, match=r"picamera2:0: cannot open the camera .* another program using it"):
            Picamera2Reader(0, 64, 48, 30, timeout_s=1)
    finally:
        holder.close()
    with pytest.raises(SourceError, match=r"picamera2:3: no CSI camera 3 .*rpicam-hello --list-cameras"):
        Picamera2Reader(3, 64, 48, 30, timeout_s=1)


def broken_picamera2(tmp_path: Path, monkeypatch, body: str) -> None:
    """A picamera2 package whose import fails the way `body` does."""
    package = tmp_path / "broken" / "picamera2"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(textwrap.dedent(body))
    monkeypatch.syspath_prepend(str(package.parent))
    monkeypatch.delitem(sys.modules, "picamera2", raising=False)


# What importing apt's picamera2 raises on Bookworm when the venv has its own numpy 2 (simplejpeg, built against
# Debian's numpy 1.24, is imported by picamera2: raspberrypi/picamera2 issues #1088, #1211), then other failures.
IMPORT_FAILURES = [
    ('raise ValueError("numpy.dtype size changed, may indicate binary incompatibility. Expected 96 from C header, '
     'got 88 from PyObject")',
     r"picamera2 cannot be imported \(ValueError: numpy.dtype size changed.*\): picamera2 and simplejpeg from apt "
     r"are built for Debian's numpy, but this Python imports numpy .*`pip uninstall numpy"),
    ("import libcamera_missing_here", r"its module 'libcamera_missing_here' is missing .*--system-site-packages"),
    ('raise OSError("libcamera.so.0.3: cannot open shared object file")',
     r"OSError: libcamera.so.0.3.*sudo apt install --reinstall python3-picamera2"),
]


@pytest.mark.parametrize("body, message", IMPORT_FAILURES, ids=["numpy-abi", "missing-module", "other"])
def test_import_failures_are_one_line_with_the_fix_and_doctor_fails(tmp_path, monkeypatch, body, message):
    broken_picamera2(tmp_path, monkeypatch, body)
    with pytest.raises(SourceError, match=message) as raised:
        Picamera2Reader(0, 64, 48, 30, timeout_s=1)
    assert "\n" not in str(raised.value)
    assert doctor.picamera2()[1:] == ("FAIL", str(raised.value))


def test_not_installed_is_a_hint_not_a_failure():
    if importlib.util.find_spec("picamera2") is not None:
        pytest.skip("picamera2 is installed here")
    with pytest.raises(SourceError, match="picamera2 is not installed: on Raspberry Pi OS: sudo apt install "
                                          "python3-picamera2"):
        Picamera2Reader(0, 64, 48, 30, timeout_s=1)
    assert doctor.picamera2()[1] == "--"


def test_doctor_on_a_working_and_on_an_old_picamera2(picamera2, monkeypatch):
    assert doctor.picamera2()[1] == "OK"
    monkeypatch.delattr(picamera2.Picamera2, "cancel_all_and_flush")  # what picamera2 < 0.3.20 lacks
    status, detail = doctor.picamera2()[1:]
    assert status == "WARN" and "older than 0.3.20" in detail
