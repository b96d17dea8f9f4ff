"""Multi-object tracking: ByteTrack in the C++ core (csrc/tracker.h), configured from the `track:` section.

Feed it each frame's detections (float32 [K, 6]: x1, y1, x2, y2, score, class_id in frame pixels, the
detector's output) and get back which track each detection belongs to, the tracks' boxes, and the tracks that
ended. Detections below the `track.thresh` score still matter: ByteTrack uses those above `track.low` to keep
occluded objects' tracks alive, so the detector should run at min(detect.conf, track.low).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, NamedTuple, Optional

import numpy as np

from edge_yolox import _core

if TYPE_CHECKING:
    from edge_yolox.config import TrackConfig

REFERENCE_FPS = 30  # track.buffer is given in frames at this rate


class TrackResult(NamedTuple):
    ids: np.ndarray  # int32 [K]: each detection's track id, 0 when it is not part of a confirmed, tracked track
    tracks: np.ndarray  # float64 [M, 7]: id, x1, y1, x2, y2 (Kalman-filtered box), score, class_id
    ended: np.ndarray  # int32 [E]: ids of confirmed tracks that ended this frame


class Tracker:
    """One ByteTrack tracker for one video stream; ids start at 1."""

    def __init__(self, config: TrackConfig, fps: Optional[float] = None):
        usable_fps = fps if fps is not None and math.isfinite(fps) and fps > 0 else None
        frame_rate = config.frame_rate or usable_fps or REFERENCE_FPS
        # A lost track is kept for the same time, not the same number of frames, whatever the frame rate.
        self.buffer = int(frame_rate / REFERENCE_FPS * config.buffer)
        self._core = _core.ByteTracker(
            track_thresh=config.thresh,
            low_thresh=config.low,
            match_thresh=config.match,
            buffer=self.buffer,
            max_tracks=config.max_tracks,
            per_class=config.per_class,
        )

    def update(self, detections: np.ndarray) -> TrackResult:
        """Advance one frame (the GIL is released meanwhile); ValueError unless detections is [K, 6], finite."""
        return TrackResult(*self._core.update(detections))

    def reset(self) -> None:
        """Forget every track (a new stream); ids start again at 1."""
        self._core.reset()

    def __len__(self) -> int:
        """Live tracks: tracked, unconfirmed and lost."""
        return len(self._core)
