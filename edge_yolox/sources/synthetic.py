"""A synthetic scene of moving, bouncing shapes: demos and tests without a camera (deterministic per seed)."""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np


class SyntheticReader:
    """An endless scene; `frames` bounds it (0 = endless)."""

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, objects: int = 5, seed: int = 0,
                 frames: int = 0):
        self.name = "synthetic"
        self.fps: Optional[float] = fps
        self.size = (height, width)
        self.frames = frames
        self._count = 0
        rng = np.random.default_rng(seed)
        # A fixed gradient background, drawn once: each frame is a copy plus the shapes.
        ramp = np.linspace(40, 200, width, dtype=np.float32)[None, :, None]
        shade = np.linspace(0.6, 1.0, height, dtype=np.float32)[:, None, None]
        self.background = (ramp * shade * np.array([1.0, 0.9, 0.8], np.float32)).astype(np.uint8)
        self.sizes = rng.integers(min(width, height) // 10, min(width, height) // 4, (objects, 2))
        self.pos = rng.uniform(0, 1, (objects, 2)) * (np.array([width, height]) - self.sizes)
        self.vel = rng.uniform(-6, 6, (objects, 2))
        self.colors = rng.integers(0, 255, (objects, 3))
        self.kinds = rng.integers(0, 2, objects)

    def grab(self) -> Optional[np.ndarray]:
        if self.frames and self._count >= self.frames:
            return None
        self._count += 1
        h, w = self.size
        frame = self.background.copy()
        self.pos += self.vel
        limit = np.array([w, h]) - self.sizes
        bounced = (self.pos < 0) | (self.pos > limit)
        self.vel[bounced] *= -1
        self.pos = np.clip(self.pos, 0, limit)
        for (x, y), (sw, sh), color, kind in zip(self.pos.astype(int), self.sizes, self.colors, self.kinds):
            color = tuple(int(c) for c in color)
            if kind:
                cv2.ellipse(frame, (x + sw // 2, y + sh // 2), (sw // 2, sh // 2), 0, 0, 360, color, -1)
            else:
                cv2.rectangle(frame, (x, y), (x + sw, y + sh), color, -1)
        return frame

    def close(self) -> None:
        pass
