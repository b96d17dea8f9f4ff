"""The synthetic sources: the training scenes' shapes (edge_yolox.scene) moving, turning and bouncing over a textured
background — what `edge-yolox run --demo` shows without a camera — and the scripted sequences with identities of
edge_yolox.sequences (`synthetic:tracks`, `synthetic:gate`). Deterministic per seed."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Optional

import numpy as np

from edge_yolox.errors import SourceError
from edge_yolox.scene import CLASSES, background, draw_shape, saturated_colors, shape_box, shape_points
from edge_yolox.sequences import SEQUENCES, Actor, Truth, render


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
        self.colors = saturated_colors(rng, objects)
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
            draw_shape(frame, points, color)
            boxes.append(shape_box(points, w, h))
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.classes = self.kinds.astype(np.int64)
        return frame

    def close(self) -> None:
        pass


class ScriptedReader:
    """A scripted sequence (edge_yolox.sequences): `actors` in order of entry, possibly endless. It ends after
    `frames` frames (0: when the last actor has left). After each grab, `truth` is the ground truth of the
    returned frame, with the actors' ids."""

    names = CLASSES

    def __init__(self, actors: Iterable[Actor], width: int = 640, height: int = 480, fps: float = 30.0,
                 frames: int = 0, seed: int = 0, name: str = "synthetic"):
        self.name = name
        self.fps: Optional[float] = fps
        self.size = (height, width)
        self.frames = frames
        self.background = background(np.random.default_rng(seed), height, width)
        self._waiting = iter(actors)
        self._next = next(self._waiting, None)
        self._on: list[Actor] = []
        self._count = 0
        self.truth = Truth(np.zeros(0, np.int64), np.zeros((0, 4), np.float32), np.zeros(0, np.int64),
                           np.zeros(0, np.float32))

    def grab(self) -> Optional[np.ndarray]:
        t = self._count
        while self._next is not None and self._next.start <= t:
            self._on.append(self._next)
            self._next = next(self._waiting, None)
        self._on = [a for a in self._on if a.end >= t]
        if (self.frames and t >= self.frames) or (self._next is None and not self._on):
            return None
        self._count += 1
        frame, self.truth = render(self.background, self._on, t)
        return frame

    def close(self) -> None:
        pass


def open_sequence(name: str, width: int, height: int, fps: float, seed: int = 0) -> ScriptedReader:
    """The sequence `name` of edge_yolox.sequences.SEQUENCES as a reader of width×height frames."""
    if name not in SEQUENCES:
        known = ", ".join(f"synthetic:{n}" for n in SEQUENCES)
        raise SourceError(f"synthetic:{name}: no such sequence (there are synthetic, {known})")
    return ScriptedReader(SEQUENCES[name]((height, width), seed), width, height, fps, seed=seed,
                          name=f"synthetic:{name}")
