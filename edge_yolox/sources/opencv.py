"""OpenCV readers: V4L2 camera index, video file, RTSP/HTTP URL, GStreamer pipeline (incl. Jetson CSI),
and still images (one file or a folder)."""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import cv2
import numpy as np

from edge_yolox.errors import SourceError, redact

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff"}


class CaptureReader:
    """A cv2.VideoCapture as a Reader."""

    def __init__(self, cap: cv2.VideoCapture, name: str):
        self.cap = cap
        self.name = name
        fps = cap.get(cv2.CAP_PROP_FPS)
        self.fps: Optional[float] = fps if 0 < fps < 1000 else None

    def grab(self) -> Optional[np.ndarray]:
        ok, image = self.cap.read()
        return image if ok and image is not None and image.size else None

    def close(self) -> None:
        self.cap.release()


def _open(target, api: int, name: str, params: Sequence[int] = (), hint: str = "") -> cv2.VideoCapture:
    # The (source, api, params) form exists from OpenCV 4.5.2 on: JetPack 4 and Debian bullseye have older ones.
    cap = cv2.VideoCapture(target, api, list(params)) if params else cv2.VideoCapture(target, api)
    if not cap.isOpened():
        cap.release()
        raise SourceError(f"{name}: cannot open{hint}")
    return cap


def open_camera(index: int, width: int, height: int, fps: float, fourcc: str = "") -> CaptureReader:
    """A USB/V4L2 camera. The device node is checked first: V4L2 on a missing node can take seconds."""
    name = f"camera{index}"
    if sys.platform.startswith("linux") and not Path(f"/dev/video{index}").exists():
        present = sorted(p.name for p in Path("/dev").glob("video*"))
        raise SourceError(f"{name}: /dev/video{index} does not exist (cameras present: "
                          f"{', '.join(present) or 'none'}); is the camera connected, or is it a CSI camera "
                          f"(use --source picamera2)?")
    api = cv2.CAP_V4L2 if sys.platform.startswith("linux") else cv2.CAP_ANY
    cap = _open(index, api, name, hint=" (busy, or not a video capture device?)")
    if fourcc:
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*fourcc))
    cap.set(cv2.CAP_PROP_FRAME_WIDTH, width)
    cap.set(cv2.CAP_PROP_FRAME_HEIGHT, height)
    cap.set(cv2.CAP_PROP_FPS, fps)
    cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # the driver queue would otherwise hand us stale frames
    got = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    if got != (width, height):
        log.info("%s: asked for %dx%d, the camera gives %dx%d", name, width, height, *got)
    return CaptureReader(cap, name)


def open_video(path: Path) -> CaptureReader:
    return CaptureReader(_open(str(path), cv2.CAP_ANY, str(path), hint=" as a video (unsupported or corrupt file?)"),
                         str(path))


def open_url(url: str, timeout_s: float) -> CaptureReader:
    """RTSP/HTTP through FFmpeg, with open and read timeouts so a dead server cannot hang a read forever."""
    ms = int(timeout_s * 1000)
    if hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
        params: tuple[int, ...] = (cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, ms)
    else:
        log.warning("OpenCV %s has no stream timeouts (4.5.2+ does): a dead server can hang a read", cv2.__version__)
        params = ()
    return CaptureReader(_open(url, cv2.CAP_FFMPEG, redact(url), params, " (server down or wrong URL?)"),
                         redact(url))


def has_gstreamer() -> bool:
    return any(line.split(":")[0].strip() == "GStreamer" and "YES" in line
               for line in cv2.getBuildInformation().splitlines())


def open_gstreamer(pipeline: str, name: str = "gstreamer") -> CaptureReader:
    if not has_gstreamer():
        raise SourceError(f"{name}: this OpenCV ({cv2.__version__}, {cv2.__file__}) is built without "
                          f"GStreamer, as pip's are; on JetPack 6 use JetPack's own OpenCV from a venv made with "
                          f"--system-site-packages and no pip OpenCV in it (JetPack 4/5: see the README's Jetson "
                          f"section)")
    return CaptureReader(_open(pipeline, cv2.CAP_GSTREAMER, name, hint=f" pipeline {pipeline!r}"), name)


def nvargus_pipeline(template: str, sensor_id: int, width: int, height: int, fps: float, flip: int) -> str:
    """The Jetson CSI pipeline from the board config's template (nvarguscamerasrc → BGR appsink)."""
    return template.format(sensor_id=sensor_id, width=width, height=height, fps=int(fps), flip=flip)


class ImageReader:
    """Still images, in name order; an unreadable file is skipped with a warning."""

    fps = None

    def __init__(self, paths: list[Path], name: str):
        self.paths = list(paths)
        self.name = name
        self.current_name = ""

    def grab(self) -> Optional[np.ndarray]:
        while self.paths:
            path = self.paths.pop(0)
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is not None:
                self.current_name = path.name
                return image
            log.warning("%s: not a readable image, skipped", path)
        return None

    def close(self) -> None:
        self.paths = []


def open_images(path: Path) -> ImageReader:
    paths = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) if path.is_dir() else [path]
    if not paths:
        raise SourceError(f"{path}: no images ({', '.join(sorted(IMAGE_SUFFIXES))}) in this folder")
    if not path.is_dir() and cv2.imread(str(path)) is None:
        raise SourceError(f"{path}: not a readable image")
    return ImageReader(paths, str(path))
