"""Frame sources: OpenCV (camera index, video file, image or folder, RTSP/HTTP URL, GStreamer pipeline),
picamera2 (Pi CSI cameras), the Jetson nvarguscamerasrc pipeline, and a synthetic moving-objects scene.

`open_source(source_config, camera_config)` picks one from `source.uri`:
`camera` (the board's camera: camera.kind), `synthetic` (or `synthetic:tracks`, `synthetic:gate`: scripted
sequences with identities, edge_yolox.sequences), `picamera2`, `nvargus`, an RTSP/HTTP URL,
a GStreamer pipeline (contains "!"), a video file, an image or a folder of images.
Cameras and streams are live (newest frame only, reconnect with backoff); files are read frame by frame
unless `source.realtime`.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edge_yolox.config import CameraConfig, SourceConfig
from edge_yolox.errors import SourceError
from edge_yolox.sources.base import Frame, LiveSource, Paced, Reader, SequentialSource, Source
from edge_yolox.sources.opencv import (
    IMAGE_SUFFIXES,
    nvargus_pipeline,
    open_camera,
    open_gstreamer,
    open_images,
    open_url,
    open_video,
)
from edge_yolox.sources.synthetic import SyntheticReader, open_sequence


def camera_opener(kind: str, cam: CameraConfig, timeout_s: float):
    """A function opening the board camera of `kind` (called again on each reconnect)."""
    if kind == "picamera2":
        from edge_yolox.sources.csi import Picamera2Reader

        return lambda: Picamera2Reader(cam.index, cam.width, cam.height, cam.fps, timeout_s)
    if kind == "nvargus":
        if not cam.pipeline:
            raise SourceError("camera.pipeline: the nvargus camera needs a GStreamer pipeline template "
                              "(see boards/jetson-nano.yaml)")
        pipeline = nvargus_pipeline(cam.pipeline, cam.index, cam.width, cam.height, cam.fps, cam.flip)
        return lambda: open_gstreamer(pipeline, f"nvargus:{cam.index}")
    return lambda: open_camera(cam.index, cam.width, cam.height, cam.fps, cam.fourcc)


def uses_argus(source: SourceConfig, camera: CameraConfig) -> bool:
    """Whether the source reads a Jetson CSI camera through Argus (nvargus-daemon, over /tmp/argus_socket)."""
    uri = source.uri
    return uri == "nvargus" or (uri == "camera" and camera.kind == "nvargus") or "nvarguscamerasrc" in uri


def open_source(source: SourceConfig, camera: CameraConfig,
                prepare: Optional[Callable[[np.ndarray], Any]] = None) -> Source:
    """The source `source.uri` names. `prepare` (frame -> model input) runs ahead in the decoding thread of
    sources that deliver every frame; live sources leave it to the caller, as most of their frames are dropped."""
    uri = source.uri
    backoff = (source.reconnect_min_s, source.reconnect_max_s)
    if uri in ("camera", "picamera2", "nvargus"):
        return LiveSource(camera_opener(camera.kind if uri == "camera" else uri, camera, source.timeout_s), backoff)
    if "://" in uri:
        return LiveSource(lambda: open_url(uri, source.timeout_s), backoff)
    if "!" in uri:
        return LiveSource(lambda: open_gstreamer(uri), backoff)
    if uri == "synthetic":
        reader: Reader = SyntheticReader(camera.width, camera.height, camera.fps)
    elif uri.startswith("synthetic:"):
        reader = open_sequence(uri.partition(":")[2], camera.width, camera.height, camera.fps)
    else:
        path = Path(uri).expanduser()
        if not path.exists():
            raise SourceError(f"{uri}: no such file or folder (and not camera, synthetic, a URL or a pipeline)")
        reader = open_images(path) if path.is_dir() or path.suffix.lower() in IMAGE_SUFFIXES else open_video(path)
    if source.realtime:
        return LiveSource(lambda: Paced(reader, reader.fps), backoff, reconnect=False)
    return SequentialSource(reader, prepare=prepare)


__all__ = ["Frame", "LiveSource", "SequentialSource", "Source", "open_source", "uses_argus"]
