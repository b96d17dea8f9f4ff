"""Annotated frames to a video file (.mp4, .avi, .mkv) or to numbered JPEGs in a folder (`--save`): what the
preview shows (edge_yolox.draw: boxes, track ids and trails, zones and lines with their counts)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Optional

import cv2
import numpy as np

from edge_yolox.draw import Trails, annotate
from edge_yolox.errors import ConfigError
from edge_yolox.schema import options
from edge_yolox.sinks.base import Sink, SinkContext

NAME = "video"
DEFAULTS = {"path": "", "fps": 0.0}
log = logging.getLogger(__name__)
CODECS = {".mp4": "mp4v", ".avi": "MJPG", ".mkv": "mp4v"}


def add_arguments(parser) -> None:
    parser.add_argument("--save", metavar="OUT", help="annotated frames to a video (out.mp4) or a folder of JPEGs")


def section_from_args(args) -> Optional[dict]:
    return {"path": args.save} if getattr(args, "save", None) else None


def from_config(section: dict, ctx: SinkContext) -> VideoSink:
    opts = options(section, f"outputs.{NAME}", DEFAULTS)
    if not opts["path"]:
        raise ConfigError(f"outputs.{NAME}.path: required (a .mp4/.avi/.mkv file or a folder)")
    fps = float(opts["fps"]) or ctx.fps or 10.0
    return VideoSink(Path(opts["path"]).expanduser(), fps, ctx)


class VideoSink(Sink):
    name = NAME
    wants_frames = True

    def __init__(self, path: Path, fps: float, ctx: SinkContext):
        self.path = path
        self.fps = fps
        self.zones, self.lines = ctx.zones, ctx.lines
        self.trails = Trails(anchor=ctx.anchor)
        self.writer: Optional[cv2.VideoWriter] = None
        self.to_folder = path.suffix.lower() not in CODECS
        target = path if self.to_folder else path.parent
        try:
            target.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"outputs.{NAME}.path: cannot create {target} ({exc.strerror})") from None
        self.count = 0

    def write(self, record: dict[str, Any], frame: Optional[np.ndarray] = None) -> None:
        if frame is None:
            return
        self.trails.update(record)
        image = annotate(frame, record, self.zones, self.lines, self.trails.paths())
        if self.to_folder:
            cv2.imwrite(str(self.path / f"frame_{record['frame']:06d}.jpg"), image)
        else:
            if self.writer is None:
                self.writer = self._open(image.shape[1], image.shape[0])
            self.writer.write(image)
        self.count += 1

    def _open(self, width: int, height: int) -> cv2.VideoWriter:
        fourcc = cv2.VideoWriter_fourcc(*CODECS[self.path.suffix.lower()])
        writer = cv2.VideoWriter(str(self.path), fourcc, self.fps, (width, height))
        if not writer.isOpened():
            raise ConfigError(f"outputs.{NAME}.path: OpenCV cannot write {self.path} (codec not available?)")
        return writer

    def close(self) -> None:
        if self.writer is not None:
            self.writer.release()
            self.writer = None
        if self.count:
            log.info("saved %d annotated frames to %s", self.count, self.path)
