"""The synthetic source: the training scenes' shapes (edge_yolox.scene) moving, turning and bouncing over a textured
background — what `edge-yolox run --demo` shows without a camera. Deterministic per seed."""

from __future__ import annotations

from typing import Optional

import cv2
import numpy as np

from edge_yolox.scene import CLASSES, background, draw_shape, shape_box, shape_points


class SyntheticReader:
    """An endless scene; `frames` bounds it (0 = endless). After each grab, `boxes` [N, 4] (xyxy pixels) and
    `classes` [N] (indices into `names`) are the ground truth of the returned frame."""

    names = CLASSES

    def __init__(self, width: int = 640, height: int = 480, fps: float = 30.0, objects: int = 5, seed: int = 0,
                 frames: int = 0, radius: tuple[float, float] = (0.07, 0.14)):
        self.name = "synthetic"
        self.fps: Optional[float] = fps
        self.size = (height, width)
        self.frames = frames
        self._count = 0
        rng = np.random.default_rng(seed)
        self.background = background(rng, height, width)  # drawn once: each frame is a copy plus the shapes
        self.kinds = rng.permutation(objects) % len(CLASSES)  # every class shows up once there are four objects
        side = min(width, height)
        self.radii = rng.uniform(radius[0] * side, radius[1] * side, objects)
        self.pos = self._place(rng, np.array([width, height], np.float64))
        heading = rng.uniform(0, 2 * np.pi, objects)
        self.vel = rng.uniform(1.5, 4.0, (objects, 1)) * np.stack([np.cos(heading), np.sin(heading)], 1)
        self.angle = rng.uniform(0, 2 * np.pi, objects)
        self.spin = rng.uniform(0.01, 0.05, objects) * rng.choice((-1, 1), objects)
        hsv = np.stack([rng.integers(0, 180, objects), rng.integers(120, 256, objects),
                        rng.integers(120, 256, objects)], 1).astype(np.uint8)[None]
        self.colors = cv2.cvtColor(hsv, cv2.COLOR_HSV2BGR)[0]  # saturated: they stand out of the texture
        self.boxes = np.zeros((0, 4), np.float32)
        self.classes = np.zeros(0, np.int64)

    def _place(self, rng: np.random.Generator, extent: np.ndarray) -> np.ndarray:
        """Starting centres inside the frame whose circumcircles do not overlap (a few tries each, then anywhere)."""
        pos = np.zeros((len(self.radii), 2))
        for i, r in enumerate(self.radii):
            for _ in range(50):
                pos[i] = rng.uniform(r, np.maximum(extent - r, r + 1))
                if all(np.hypot(*(pos[i] - pos[j])) > r + self.radii[j] for j in range(i)):
                    break
        return pos

    def _step(self) -> None:
        """Move; bounce off the frame edges and, as equal masses, off each other (circumcircles touching)."""
        h, w = self.size
        self.pos += self.vel
        self.angle += self.spin
        r = self.radii[:, None]
        low, high = self.pos < r, self.pos > np.array([w, h]) - r
        self.vel[low] = np.abs(self.vel[low])
        self.vel[high] = -np.abs(self.vel[high])
        for i in range(len(r)):
            for j in range(i + 1, len(r)):
                d = self.pos[j] - self.pos[i]
                dist = np.hypot(*d)
                closing = np.dot(self.vel[j] - self.vel[i], d)
                if 0 < dist < r[i, 0] + r[j, 0] and closing < 0:
                    exchange = closing / dist ** 2 * d  # swap the velocity components along the centre line
                    self.vel[i] += exchange
                    self.vel[j] -= exchange

    def grab(self) -> Optional[np.ndarray]:
        if self.frames and self._count >= self.frames:
            return None
        if self._count:
            self._step()
        self._count += 1
        h, w = self.size
        frame = self.background.copy()
        boxes = []
        for kind, (cx, cy), r, angle, color in zip(self.kinds, self.pos, self.radii, self.angle, self.colors):
            points = shape_points(int(kind), cx, cy, r, angle)
            draw_shape(frame, points, tuple(int(c) for c in color))
            boxes.append(shape_box(points, w, h))
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.classes = self.kinds.astype(np.int64)
        return frame

    def close(self) -> None:
        pass
