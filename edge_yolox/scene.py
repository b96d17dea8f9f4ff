"""Synthetic scenes: coloured shapes (circle, square, triangle, star) on textured backgrounds, with exact boxes.

One renderer for both uses, so the demo model sees at run time what it was trained on: the training set writer
(edge_yolox.train.data.synthetic) stores still scenes as COCO JSON, and the runtime's `synthetic` source
(edge_yolox.sources.synthetic) animates the same shapes. numpy + OpenCV only. Deterministic for a given generator.
"""

from __future__ import annotations

import cv2
import numpy as np

from edge_yolox.postprocess import box_iou

CLASSES = ("circle", "square", "triangle", "star")


def background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour noise plus a few random lines: texture without objects."""
    coarse = rng.integers(0, 256, (rng.integers(3, 9), rng.integers(3, 9), 3), dtype=np.uint8)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    image = cv2.add(image, rng.integers(0, 24, (h, w, 3), dtype=np.uint8))
    for _ in range(int(rng.integers(0, 6))):
        p1 = tuple(int(v) for v in rng.integers(0, (w, h)))
        p2 = tuple(int(v) for v in rng.integers(0, (w, h)))
        cv2.line(image, p1, p2, tuple(int(c) for c in rng.integers(0, 256, 3)), int(rng.integers(1, 4)))
    return image


def shape_points(kind: int, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    """Polygon [K, 2] (x, y) of shape class `kind` (an index into CLASSES), circumradius r, turned by angle."""
    name = CLASSES[kind]
    if name == "square":
        t = angle + np.pi / 4 + np.arange(4) * np.pi / 2
        radii = np.full(4, r)
    elif name == "triangle":
        t = angle + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, r)
    elif name == "star":
        t = angle + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    else:  # circle
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        radii = np.full(48, r)
    return np.stack([cx + radii * np.cos(t), cy + radii * np.sin(t)], 1)


def shape_box(points: np.ndarray, w: int, h: int) -> np.ndarray:
    """The polygon's xyxy box, clipped to a w×h image."""
    return np.concatenate([points.min(0).clip(0, None), np.minimum(points.max(0), (w, h))])


def saturated_colors(rng: np.random.Generator, n: int) -> list[tuple[int, int, int]]:
    """n random BGR colours of high saturation and value: they stand out of the background's texture."""
    hsv = np.stack([rng.integers(0, 180, n), rng.integers(120, 256, n), rng.integers(120, 256, n)], 1)
    return [tuple(int(c) for c in bgr) for bgr in cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2BGR)[0]]


def draw_shape(image: np.ndarray, points: np.ndarray, color: tuple[int, int, int]) -> None:
    """Fill the polygon in place, anti-aliased at 1/16 px precision."""
    cv2.fillPoly(image, [np.round(points * 16).astype(np.int32)], color, cv2.LINE_AA, shift=4)


def _max_iou(box: np.ndarray, boxes: list[np.ndarray]) -> float:
    return float(box_iou(box, boxes).max()) if boxes else 0.0


def render_scene(rng: np.random.Generator, size: tuple[int, int] = (416, 416), max_objects: int = 6,
                 radius: tuple[float, float] = (0.025, 0.17)):
    """(BGR image, boxes [N, 4] xyxy, classes [N]) for one still scene; shapes (radius a fraction of the shorter
    side) overlap little (IoU < 0.2)."""
    h, w = size
    radius = (radius[0] * min(h, w), radius[1] * min(h, w))
    image = background(rng, h, w)
    boxes, classes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1)) * 3):  # a few tries per wanted object
        if len(boxes) >= max_objects:
            break
        kind = int(rng.integers(len(CLASSES)))
        r = rng.uniform(*radius)
        cx, cy = rng.uniform(r * 0.5, w - r * 0.5), rng.uniform(r * 0.5, h - r * 0.5)
        points = shape_points(kind, cx, cy, r, rng.uniform(0, 2 * np.pi))
        box = shape_box(points, w, h)
        if (box[2:] - box[:2]).min() < 6 or _max_iou(box, boxes) > 0.2:
            continue
        draw_shape(image, points, tuple(int(c) for c in rng.integers(0, 256, 3)))
        boxes.append(box)
        classes.append(kind)
    return image, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)
