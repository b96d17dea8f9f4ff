"""A stand-in for picamera2 (Raspberry Pi's libcamera binding, >= 0.3.20) where there is no Pi camera.

It has the part of the upstream API the reader uses — Picamera2(camera_num), create_video_configuration,
configure, start, capture_array(name, wait=seconds), cancel_all_and_flush, stop, close — and reproduces these
upstream behaviours (raspberrypi/picamera2: picamera2/picamera2.py, picamera2/job.py):
- Picamera2(n) without a camera n raises IndexError (global_camera_info()[n]);
- Picamera2(n) for a camera acquired by another, unclosed Picamera2 object raises RuntimeError("Camera __init__
  sequence did not complete.") after it opened its notification pipe, which nothing closes: a descriptor is leaked
  on every busy open; a camera whose object was never close()d (e.g. after a failed configure/start) stays busy;
- capture_array(wait=seconds) raises concurrent.futures.TimeoutError when no frame completed in time and leaves its
  job queued; stop() is dispatched behind queued jobs, so it blocks until cancel_all_and_flush() removes them
  (upstream blocks forever: here it gives up after HANG_S and raises, so that a broken reader fails its test
  instead of hanging it);
- close() stops the camera and releases it.
The camera itself is the module's `CAMERA`: frames at the configured FrameRate until `CAMERA.stall()` (a loose
cable: no request completes) and `CAMERA.resume()`; `CAMERA.fail_next = "configure"` or `"start"` makes that call
raise RuntimeError, as libcamera does when it cannot. For another process, the environment sets the same:
PICAMERA2_STANDIN_STALL_AFTER=N stalls after N frames, for PICAMERA2_STANDIN_STALL_S seconds (default: for good).
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import CancelledError, TimeoutError

import numpy as np

HANG_S = 10.0


class Camera:
    """The sensor behind the stand-in, shared by every Picamera2 object (it outlives them, as hardware does)."""

    def __init__(self, cameras: int = 1):
        self.cameras = cameras
        self.acquired_by: dict[int, Picamera2] = {}
        self.fail_next = ""
        self.frames = 0
        self.opened = 0  # Picamera2 objects created, busy ones included
        self.hung_stops = 0  # stop() calls that would have blocked forever upstream
        self._stalled = threading.Event()
        self._stall_after = int(os.environ.get("PICAMERA2_STANDIN_STALL_AFTER", "0"))
        self._stall_s = float(os.environ.get("PICAMERA2_STANDIN_STALL_S", "0"))
        self._stalled_until = 0.0

    def stall(self) -> None:
        self._stalled.set()

    def resume(self) -> None:
        self._stalled.clear()

    def stalled(self) -> bool:
        if self._stall_after and self.frames >= self._stall_after and not self._stalled_until:
            self._stalled_until = time.monotonic() + (self._stall_s or float("inf"))
            self.stall()
        if self._stalled.is_set() and time.monotonic() >= self._stalled_until > 0:
            self.resume()
        return self._stalled.is_set()


CAMERA = Camera()


class Picamera2:
    def __init__(self, camera_num: int = 0):
        if camera_num >= CAMERA.cameras:
            raise IndexError("list index out of range")
        self._notify_r, self._notify_w = os.pipe()  # upstream opens it before acquiring the camera
        CAMERA.opened += 1
        if camera_num in CAMERA.acquired_by:
            raise RuntimeError("Camera __init__ sequence did not complete.")
        CAMERA.acquired_by[camera_num] = self
        self.camera_num = camera_num
        self.is_open = True
        self.started = False
        self.config: dict = {}
        self._jobs: list[object] = []
        self._lock = threading.Lock()
        self._next_frame = 0.0

    def create_video_configuration(self, main=None, controls=None, buffer_count=6) -> dict:
        return {"main": dict(main or {}), "controls": dict(controls or {}), "buffer_count": buffer_count}

    def configure(self, config: dict) -> None:
        if self.started:
            raise RuntimeError("Camera must be stopped before configuring")
        self._fail("configure")
        self.config = config

    def start(self) -> None:
        if not self.config:
            raise RuntimeError("Camera has not been configured")
        self._fail("start")
        self.started = True
        self._next_frame = time.monotonic()

    def _fail(self, stage: str) -> None:
        if CAMERA.fail_next == stage:
            CAMERA.fail_next = ""
            raise RuntimeError(f"Failed to {stage} camera: Device or resource busy")

    def capture_array(self, name: str = "main", wait=None) -> np.ndarray:
        timeout = None if wait in (None, True) else float(wait)
        job = object()
        with self._lock:
            self._jobs.append(job)
        deadline = None if timeout is None else time.monotonic() + timeout
        while CAMERA.stalled() or time.monotonic() < self._next_frame:
            with self._lock:
                if job not in self._jobs:
                    raise CancelledError()
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError()  # the job stays queued, as upstream
            time.sleep(0.005)
        with self._lock:
            self._jobs.remove(job)
        self._next_frame = max(self._next_frame + 1.0 / self.config["controls"]["FrameRate"], time.monotonic())
        CAMERA.frames += 1
        width, height = self.config["main"]["size"]
        image = np.full((height, width, 3), CAMERA.frames % 256, np.uint8)
        image[..., 0] = 255  # blue first: libcamera's RGB888 is B, G, R in memory
        return image

    def cancel_all_and_flush(self) -> None:
        with self._lock:
            self._jobs.clear()

    def stop(self) -> None:
        deadline = time.monotonic() + HANG_S
        while self._jobs:
            if time.monotonic() >= deadline:
                CAMERA.hung_stops += 1
                raise RuntimeError("stand-in: stop() queued behind a timed-out capture would block forever")
            time.sleep(0.01)
        self.started = False

    def close(self) -> None:
        if not self.is_open:
            return
        self.stop()
        del CAMERA.acquired_by[self.camera_num]
        os.close(self._notify_r)
        os.close(self._notify_w)
        self.is_open = False
