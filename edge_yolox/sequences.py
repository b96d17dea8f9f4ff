"""Scripted scenes with ground-truth identities, for tracking.

The demo's shapes (edge_yolox.scene) enter from an edge, walk through waypoints, stop a while, pass over and under
each other and leave. An `Actor` is a shape with a path of keyframes; a sequence is the actors in order of entry
(a list, or an endless generator). `render` draws one frame of the actors on screen, in id order (a later actor
covers an earlier one), and returns its ground truth: ids, boxes, classes and how much of each shape is visible.

Two sequences, by name in `SEQUENCES` (what `--source synthetic:<name>` plays):
- `tracks`: endless traffic — actors enter at random times from random edges, walk to a random point (half of
  them wait there), and leave through another edge; crossings and occlusions happen as they come.
- `gate`: a fixed script for events, with its zones/lines layout `GATE_LAYOUT` (the YAML of `--zones`): shapes
  cross the `gate` line both ways, one parks in the `bay` zone, one walks through it, and two pass over each other
  away from the line and the zone, so that counting can be checked exactly against the ground truth.

numpy + OpenCV only; deterministic per seed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from edge_yolox.scene import CLASSES, draw_shape, saturated_colors, shape_box, shape_points

Point = tuple[float, float]


@dataclass(frozen=True)
class Actor:
    """One shape and its path: keyframes (frame, cx, cy) with increasing frames, walked in straight lines between
    them (two keyframes at one place: a stop). Before its first and after its last keyframe it is not there."""

    id: int
    kind: int  # index into scene.CLASSES
    radius: float  # circumradius, px
    color: tuple[int, int, int]  # BGR
    path: tuple[tuple[float, float, float], ...]
    angle: float = 0.0  # radians at frame 0, turning by `spin` per frame
    spin: float = 0.0

    @property
    def start(self) -> float:
        return self.path[0][0]

    @property
    def end(self) -> float:
        return self.path[-1][0]

    def points(self, t: int) -> np.ndarray | None:
        """The shape's polygon at frame t, or None when the actor is not in the scene then."""
        if not self.start <= t <= self.end:
            return None
        keys = np.asarray(self.path)
        cx, cy = np.interp(t, keys[:, 0], keys[:, 1]), np.interp(t, keys[:, 0], keys[:, 2])
        return shape_points(self.kind, cx, cy, self.radius, self.angle + self.spin * t)


@dataclass(frozen=True)
class Truth:
    """The ground truth of one frame: the actors with a part of their box in it, in drawing order."""

    ids: np.ndarray  # int64 [N]
    boxes: np.ndarray  # float32 [N, 4] x1, y1, x2, y2, clipped to the frame
    classes: np.ndarray  # int64 [N]
    visible: np.ndarray  # float32 [N]: fraction of the shape's area inside the frame and not covered by others


def walk(t0: float, points: Sequence[Point], speed: float, stops: dict[int, int] | None = None
         ) -> tuple[tuple[float, float, float], ...]:
    """Keyframes of a walk from frame t0 through `points` at `speed` px per frame, waiting `stops[i]` frames at
    points[i]."""
    stops = stops or {}
    t = float(t0)
    keys = [(t, *points[0])]
    for i, (p, q) in enumerate(zip(points, points[1:])):
        if stops.get(i):
            t += stops[i]
            keys.append((t, *p))
        t += max(1.0, float(np.hypot(q[0] - p[0], q[1] - p[1])) / speed)
        keys.append((t, *q))
    return tuple(keys)


def outside(edge: int, along: float, margin: float, size: tuple[int, int]) -> Point:
    """The point `margin` px beyond edge 0 left, 1 right, 2 top, 3 bottom of an h×w frame, at `along` (0–1) of it."""
    h, w = size
    return ((-margin, along * h), (w + margin, along * h), (along * w, -margin), (along * w, h + margin))[edge]


def render(background: np.ndarray, actors: Iterable[Actor], t: int) -> tuple[np.ndarray, Truth]:
    """Frame t: the actors drawn over a copy of the background, in id order, and its ground truth."""
    h, w = background.shape[:2]
    frame = background.copy()
    shown = []
    for actor in sorted(actors, key=lambda a: a.id):
        points = actor.points(t)
        if points is None:
            continue
        box = shape_box(points, w, h)
        if (box[2:] - box[:2]).min() <= 0:  # wholly outside the frame
            continue
        draw_shape(frame, points, actor.color)
        shown.append((actor, points, box))
    visible = [_visible(points, box, [p for _, p, _ in shown[i + 1:]]) for i, (_, points, box) in enumerate(shown)]
    truth = Truth(np.array([a.id for a, _, _ in shown], np.int64),
                  np.array([b for _, _, b in shown], np.float32).reshape(-1, 4),
                  np.array([a.kind for a, _, _ in shown], np.int64), np.array(visible, np.float32))
    return frame, truth


def _visible(points: np.ndarray, box: np.ndarray, over: list[np.ndarray]) -> float:
    """The fraction of the polygon's area inside `box` (its clipped box) and outside the polygons drawn over it."""
    x0, y0 = np.floor(box[:2]).astype(int)
    x1, y1 = np.ceil(box[2:]).astype(int)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    offset = np.array([x0, y0])
    cv2.fillPoly(mask, [np.round((points - offset) * 16).astype(np.int32)], 1, cv2.LINE_8, shift=4)
    for q in over:
        cv2.fillPoly(mask, [np.round((q - offset) * 16).astype(np.int32)], 0, cv2.LINE_8, shift=4)
    return min(1.0, float(mask.sum()) / cv2.contourArea(points.astype(np.float32)))


def tracks(size: tuple[int, int], seed: int = 0, every: float = 40.0, most: int = 5,
           radius: tuple[float, float] = (0.07, 0.11), speed: tuple[float, float] = (0.005, 0.01)
           ) -> Iterator[Actor]:
    """Endless traffic in an h×w frame: an actor enters every `every` frames on average (at most `most` at once)
    from a random edge, walks to a random point in the middle of the frame, waits there (half of them, 20–80
    frames) and leaves through another edge. Radii and speeds (per frame) are fractions of the shorter side."""
    rng = np.random.default_rng(seed)
    side = min(size)
    t, leaving, ident = 0.0, [], 0
    while True:
        leaving = [end for end in leaving if end > t]
        if len(leaving) >= most:
            t = min(leaving)
            continue
        ident += 1
        r = rng.uniform(*radius) * side
        enter, exit_ = rng.choice(4, 2, replace=False)
        middle = (rng.uniform(0.2, 0.8) * size[1], rng.uniform(0.2, 0.8) * size[0])
        route = [outside(int(enter), rng.uniform(0.15, 0.85), r, size), middle,
                 outside(int(exit_), rng.uniform(0.15, 0.85), r, size)]
        stops = {1: int(rng.integers(20, 80))} if rng.random() < 0.5 else {}
        actor = Actor(ident, int(rng.integers(len(CLASSES))), r, saturated_colors(rng, 1)[0],
                      walk(round(t), route, rng.uniform(*speed) * side, stops), rng.uniform(0, 2 * np.pi),
                      rng.uniform(-0.04, 0.04))
        leaving.append(actor.end)
        yield actor
        t += rng.exponential(every)


# The gate script's layout, in the form of a `--zones` file (normalised coordinates): a vertical line at 60 % of
# the width, and a parking bay in the lower left.
GATE_LAYOUT = {
    "zones": {"bay": {"polygon": [[0.05, 0.55], [0.42, 0.55], [0.42, 0.97], [0.05, 0.97]]}},
    "lines": {"gate": {"points": [[0.6, 0.0], [0.6, 1.0]]}},
}


def gate(size: tuple[int, int], seed: int = 0) -> list[Actor]:
    """The fixed script for counting in an h×w frame (the layout and speeds scale with it; 390 frames):
    1 walks left to right across the gate; 2 comes down from the top, passes over 1 in the upper left, parks in
    the bay and leaves left; 3 comes in from the right, crosses the gate leftwards and leaves by the top; 4 and 5
    pass over each other right of the gate; 6 crosses the gate rightwards, waits, and comes back; 7 walks through
    the bay and on across the gate. Five crossings (three rightwards), two bay entries, no crossing or entry
    while a shape is covered. `seed` picks the colours and the turning."""
    h, w = size
    side = min(size)
    rng = np.random.default_rng(seed)
    r = 0.09 * side

    def at(x: float, y: float) -> Point:
        return x * w, y * h

    def edge(which: int, along: float) -> Point:
        return outside(which, along, r, size)

    def path(t0: int, points: list[Point], speed: float, stops: dict[int, int] | None = None):
        return walk(t0, points, speed * side, stops)

    scripts = [  # (kind, keyframes), in order of entry; speeds in shorter sides per frame
        (0, path(0, [edge(0, 0.2), edge(1, 0.2)], 0.009)),
        (1, path(0, [edge(2, 0.25), at(0.25, 0.75), edge(0, 0.75)], 0.008, {1: 60})),
        (2, path(40, [edge(1, 0.45), at(0.45, 0.45), edge(2, 0.45)], 0.009)),
        (3, path(140, [edge(2, 0.86), edge(3, 0.86)], 0.009)),
        (1, path(140, [edge(3, 0.9), edge(2, 0.9)], 0.009)),
        (0, path(150, [edge(0, 0.31), at(0.79, 0.31), edge(0, 0.31)], 0.011, {1: 30})),
        (3, path(230, [edge(3, 0.15), at(0.26, 0.69), edge(1, 0.78)], 0.011)),
    ]
    colors = saturated_colors(rng, len(scripts))
    return [Actor(i + 1, kind, r, colors[i], keys, rng.uniform(0, 2 * np.pi), rng.uniform(-0.03, 0.03))
            for i, (kind, keys) in enumerate(scripts)]


SEQUENCES: dict[str, Callable[[tuple[int, int], int], Iterable[Actor]]] = {"tracks": tracks, "gate": gate}
