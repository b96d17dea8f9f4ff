"""Raspberry Pi CSI cameras through picamera2 (imported only when used: it exists only on Pi OS).

picamera2 comes from apt (python3-picamera2) and, with simplejpeg, is built against Debian's numpy: the venv must
see the system packages (--system-site-packages) and must not hold a numpy of its own (README: Raspberry Pi).
"""

from __future__ import annotations

import logging
from concurrent.futures import TimeoutError as CaptureTimeout  # what picamera2's wait=seconds raises
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edge_yolox.errors import SourceError

log = logging.getLogger(__name__)
INSTALL = ("on Raspberry Pi OS: sudo apt install python3-picamera2, and make the venv with "
           "`python3 -m venv --system-site-packages`")
# Cameras whose Picamera2 object has not been closed yet: picamera2 keeps one object per camera number
# (its camera manager is keyed by it), so a second one for the same camera corrupts the first.
_open: dict[int, Any] = {}


def import_picamera2() -> Any:
    """The Picamera2 class, or a SourceError that says in one line what is wrong and how to fix it."""
    try:
        from picamera2 import Picamera2
    except ModuleNotFoundError as exc:
        if exc.name == "picamera2":
            raise SourceError(f"picamera2 is not installed: {INSTALL}") from None
        raise SourceError(f"picamera2 cannot be imported: its module {exc.name!r} is missing ({INSTALL})") from None
    except Exception as exc:  # anything at import time: a numpy ABI mismatch is a ValueError, not an ImportError
        raise SourceError(import_problem(exc)) from None
    return Picamera2


def import_problem(exc: BaseException) -> str:
    """One line for an exception raised while importing picamera2."""
    message = str(exc).splitlines()[0] if str(exc) else ""
    what = f"picamera2 cannot be imported ({type(exc).__name__}: {message})"
    if "numpy" not in message.lower() and "dtype size changed" not in message:
        return f"{what}: reinstall it with `sudo apt install --reinstall python3-picamera2`"
    import numpy

    return (f"{what}: picamera2 and simplejpeg from apt are built for Debian's numpy, but this Python imports numpy "
            f"{numpy.__version__} from {Path(numpy.__file__).parent.parent}; remove pip's numpy and OpenCV from the "
            f"venv (`pip uninstall numpy opencv-python-headless opencv-python`) so that python3-numpy is used")


def has_capture_timeout(picamera2_class: Any) -> bool:
    """picamera2 >= 0.3.20: capture_array(wait=seconds) times out, cancel_all_and_flush() unblocks stop()."""
    return hasattr(picamera2_class, "cancel_all_and_flush")


class Picamera2Reader:
    """One started Picamera2 camera. A capture that takes longer than `timeout_s` raises, so that LiveSource closes
    this reader and opens a new one; close() flushes the timed-out capture first, else stop() would wait behind it."""

    def __init__(self, index: int, width: int, height: int, fps: float, timeout_s: float):
        picamera2 = import_picamera2()
        self.name = f"picamera2:{index}"
        self.fps: Optional[float] = fps
        self.index = index
        self.timeout: Optional[float] = timeout_s
        if not has_capture_timeout(picamera2):
            log.warning("%s: picamera2 older than 0.3.20 has no capture timeout: a stalled camera is noticed only by "
                        "the service watchdog (sudo apt install --only-upgrade python3-picamera2)", self.name)
            self.timeout = None
        try:
            _release(index)
        except Exception as exc:
            raise SourceError(f"{self.name}: the previous camera object still cannot be closed ({exc})") from None
        try:
            self.camera = picamera2(index)
        except IndexError:
            raise SourceError(f"{self.name}: no CSI camera {index} (is it connected? `rpicam-hello --list-cameras` "
                              f"lists those libcamera sees)") from None
        except RuntimeError as exc:
            raise SourceError(f"{self.name}: cannot open the camera ({exc}); is another program using it?") from None
        _open[index] = self.camera
        try:
            # libcamera's "RGB888" is stored B, G, R in memory: exactly OpenCV's BGR, no conversion needed.
            config = self.camera.create_video_configuration(
                main={"size": (width, height), "format": "RGB888"},
                controls={"FrameRate": float(fps)},
                buffer_count=2,  # few buffers: we always want the newest frame, not a queue
            )
            self.camera.configure(config)
            self.camera.start()
        except Exception as exc:  # libcamera raises RuntimeError, a bad size ValueError
            try:
                self.close()  # else the camera stays acquired and every later open finds it busy
            except Exception as close_exc:  # still listed in _open: the next open tries again
                log.warning("%s: cannot close the camera after the failed start: %s", self.name, close_exc)
            raise SourceError(f"{self.name}: cannot start the camera at {width}x{height} {fps:g} fps ({exc})") from None

    def grab(self) -> Optional[np.ndarray]:
        try:
            image = self.camera.capture_array("main", wait=self.timeout)
        except CaptureTimeout:
            raise SourceError(f"{self.name}: no frame for {self.timeout:g} s (camera stalled or its cable "
                              f"is loose)") from None
        return image[..., :3] if image.ndim == 3 and image.shape[2] == 4 else image

    def close(self) -> None:
        _release(self.index)


def _release(index: int) -> None:
    """Closes the Picamera2 object of camera `index`, if any; one that fails to close stays listed."""
    camera = _open.get(index)
    if camera is None:
        return
    if hasattr(camera, "cancel_all_and_flush"):
        camera.cancel_all_and_flush()  # a timed-out capture is still queued, and stop() would wait behind it
    camera.close()  # stops the camera first
    del _open[index]
