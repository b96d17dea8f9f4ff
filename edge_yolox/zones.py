"""Zones and lines: the named regions of the `zones:` and `lines:` config sections, and the geometry the events
engine (edge_yolox.events) tests tracks against.

Coordinates are normalised (0–1 of the frame's width and height) when every value of the zone or line is <= 1,
pixels otherwise; `pixels(width, height)` gives them in a frame's pixels either way. Image coordinates: x to the
right, y downwards.

- **Inside a zone**: even-odd rule (a figure-eight polygon is two zones); a point on an edge or a corner counts
  as inside.
- **Side of a line**: "left" and "right" of the direction a -> b as the image shows it, i.e. facing from a to b
  on the screen. A point exactly on the (infinite) line is on neither side.
- **Crossing**: the anchor's move from p (strictly on one side) to q (strictly on the other) crosses the segment
  a-b when it passes through it, its end points included. A move onto the line is not a crossing and neither is
  touching it and going back: the events engine keeps the last position that was strictly on a side and tests
  the move from there, so the crossing is counted on the frame the point reaches the other side.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

LEFT, RIGHT = 1, -1
DIRECTIONS = ("left", "right")
MAX_POINTS = 1000  # corners of a polygon: every corner is tested for every track on every frame
MAX_NAME = 64
COORD_MAX = 100_000.0  # pixels; normalised coordinates are <= 1

Point = tuple[float, float]


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a zone or line (it becomes an MQTT topic level and a Home Assistant sensor), or
    None."""
    if not name or len(name) > MAX_NAME:
        return f"a name of 1 to {MAX_NAME} characters"
    if any(c in "/+#" or ord(c) < 32 or ord(c) == 127 for c in name):
        return "a name without '/', '+', '#' or control characters (it is an MQTT topic level)"
    return None


def _points_problem(points: Sequence) -> str | None:
    for point in points:
        if not isinstance(point, (list, tuple)) or len(point) != 2:
            return "points of 2 numbers [x, y]"
        for v in point:
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) \
                    or not 0 <= v <= COORD_MAX:
                return f"coordinates from 0 to {COORD_MAX:g} (0-1: fractions of the frame)"
    return None


def polygon_problem(points: Sequence) -> str | None:
    """Why `points` is not a usable zone polygon, or None."""
    if not 3 <= len(points) <= MAX_POINTS:
        return f"a polygon of 3 to {MAX_POINTS} points [x, y]"
    problem = _points_problem(points)
    if problem is None and degenerate(np.asarray(points, np.float64)):
        return "a polygon enclosing some area (its points are on one line, or its halves cancel out)"
    return problem


def segment_problem(points: Sequence) -> str | None:
    """Why `points` is not a usable line [[x1, y1], [x2, y2]], or None."""
    if len(points) != 2:
        return "2 points [[x1, y1], [x2, y2]]"
    problem = _points_problem(points)
    if problem is None and tuple(points[0]) == tuple(points[1]):
        return "2 distinct points"
    return problem


def _scale(values: np.ndarray, width: int, height: int) -> np.ndarray:
    """Normalised values (all <= 1) to pixels; pixel values as they are."""
    return values * (width, height) if values.max() <= 1 else values.copy()


@dataclass(frozen=True)
class Zone:
    name: str
    points: tuple[Point, ...]
    classes: tuple[str, ...] = ()  # labels the zone counts; empty: all
    min_frames: int = 3  # consecutive frames inside (outside) before a track enters (leaves)

    def __post_init__(self):
        problem = name_problem(self.name) or polygon_problem(self.points)
        if problem:
            raise ValueError(f"zone {self.name!r}: {problem}")

    def pixels(self, width: int, height: int) -> np.ndarray:
        """float64 [N, 2]: the corners in pixels of a width x height frame."""
        return _scale(np.asarray(self.points, np.float64), width, height)

    def accepts(self, label: str) -> bool:
        return not self.classes or label in self.classes


@dataclass(frozen=True)
class Line:
    name: str
    a: Point
    b: Point
    classes: tuple[str, ...] = ()  # labels the line counts; empty: all
    direction: str = "left"  # "in" is a crossing towards this side of a -> b

    def __post_init__(self):
        problem = name_problem(self.name) or segment_problem((self.a, self.b)) or \
            (None if self.direction in DIRECTIONS else f"direction {', '.join(DIRECTIONS)}")
        if problem:
            raise ValueError(f"line {self.name!r}: {problem}")

    def pixels(self, width: int, height: int) -> np.ndarray:
        """float64 [2, 2]: a and b in pixels of a width x height frame."""
        return _scale(np.asarray((self.a, self.b), np.float64), width, height)

    def accepts(self, label: str) -> bool:
        return not self.classes or label in self.classes

    @property
    def in_side(self) -> int:
        return LEFT if self.direction == "left" else RIGHT


# ---- geometry


def anchor_points(boxes: np.ndarray, anchor: str = "bottom") -> np.ndarray:
    """[N, 2] the point of each xyxy box that zones and lines test: its bottom centre (`bottom`, where a walking
    object touches the floor) or its centre."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    y = boxes[:, 3] if anchor == "bottom" else (boxes[:, 1] + boxes[:, 3]) / 2
    return np.stack([(boxes[:, 0] + boxes[:, 2]) / 2, y], axis=1)


def degenerate(polygon: np.ndarray) -> bool:
    """Whether [N, 2] corners enclose no area: their shoelace area is nil next to their extent (rounding aside)."""
    x, y = polygon[:, 0] - polygon[:, 0].min(), polygon[:, 1] - polygon[:, 1].min()
    area = 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))
    return area <= 1e-9 * float(np.ptp(polygon, axis=0).max()) ** 2


def inside(polygon: np.ndarray, points: np.ndarray) -> np.ndarray:
    """bool [P]: which of `points` [P, 2] lie in `polygon` [N, 2] (even-odd rule; edges and corners inside)."""
    p = np.asarray(points, np.float64).reshape(-1, 1, 2)
    a = np.asarray(polygon, np.float64)[None]
    b = np.roll(a, -1, axis=1)
    px, py, ax, ay, bx, by = p[..., 0], p[..., 1], a[..., 0], a[..., 1], b[..., 0], b[..., 1]
    cross = (bx - ax) * (py - ay) - (by - ay) * (px - ax)
    on_edge = (cross == 0) & (np.minimum(ax, bx) <= px) & (px <= np.maximum(ax, bx)) \
        & (np.minimum(ay, by) <= py) & (py <= np.maximum(ay, by))
    # Edges that straddle the horizontal through p (half-open: a corner is counted for one of its edges only);
    # p is left of such an edge a->b when the sign of `cross` agrees with the edge's direction in y.
    straddles = (ay > py) != (by > py)
    left_of = np.where(by > ay, cross > 0, cross < 0)
    return ((straddles & left_of).sum(axis=1) % 2 == 1) | on_edge.any(axis=1)


def side(a: Sequence[float], b: Sequence[float], p: Sequence[float]) -> int:
    """LEFT (1) or RIGHT (-1) of the direction a -> b as the image shows it (y downwards); 0 on the line."""
    cross = (b[0] - a[0]) * (p[1] - a[1]) - (b[1] - a[1]) * (p[0] - a[0])
    return RIGHT if cross > 0 else LEFT if cross < 0 else 0


def crossing(a: Sequence[float], b: Sequence[float], p: Sequence[float], q: Sequence[float]) -> int:
    """The side of a -> b (LEFT or RIGHT) that the move p -> q crossed the segment a-b towards, or 0: no crossing
    (p or q on the line, both on one side, or the move passes beside the segment)."""
    before, after = side(a, b, p), side(a, b, q)
    if before == 0 or after == 0 or before == after:
        return 0
    # p and q are on opposite sides of the line a-b: the move crosses the segment unless a and b lie strictly on
    # one side of the line p-q.
    return after if side(p, q, a) * side(p, q, b) <= 0 else 0
