"""Synthetic scenes: coloured shapes on textured backgrounds, with exact boxes, written as a COCO-JSON dataset.

Used by the tests (no download) and to train the built-in demo model. Deterministic for a given seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

CLASSES = ("circle", "square", "triangle", "star")


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Smooth colour noise plus a few random lines: texture without objects."""
    coarse = rng.integers(0, 256, (rng.integers(3, 9), rng.integers(3, 9), 3), dtype=np.uint8)
    image = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    image = cv2.add(image, rng.integers(0, 24, (h, w, 3), dtype=np.uint8))
    for _ in range(int(rng.integers(0, 6))):
        p1 = tuple(int(v) for v in rng.integers(0, (w, h)))
        p2 = tuple(int(v) for v in rng.integers(0, (w, h)))
        cv2.line(image, p1, p2, tuple(int(c) for c in rng.integers(0, 256, 3)), int(rng.integers(1, 4)))
    return image


def _shape_points(kind: str, cx: float, cy: float, r: float, angle: float) -> np.ndarray:
    if kind == "square":
        t = angle + np.pi / 4 + np.arange(4) * np.pi / 2
        radii = np.full(4, r)
    elif kind == "triangle":
        t = angle + np.arange(3) * 2 * np.pi / 3
        radii = np.full(3, r)
    elif kind == "star":
        t = angle + np.arange(10) * np.pi / 5
        radii = np.where(np.arange(10) % 2 == 0, r, r * 0.45)
    else:  # circle
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        radii = np.full(48, r)
    return np.stack([cx + radii * np.cos(t), cy + radii * np.sin(t)], 1)


def _iou(box: np.ndarray, boxes: list[np.ndarray]) -> float:
    if not boxes:
        return 0.0
    b = np.asarray(boxes)
    lt, rb = np.maximum(b[:, :2], box[:2]), np.minimum(b[:, 2:], box[2:])
    inter = np.clip(rb - lt, 0, None).prod(1)
    area = (box[2:] - box[:2]).prod() + (b[:, 2:] - b[:, :2]).prod(1) - inter
    return float((inter / area).max())


def render_scene(rng: np.random.Generator, size: tuple[int, int] = (416, 416), max_objects: int = 6,
                 radius: tuple[float, float] = (0.025, 0.17)):
    """(BGR image, boxes [N, 4] xyxy, classes [N]) for one scene; shapes (radius a fraction of the shorter side)
    overlap little (IoU < 0.2)."""
    h, w = size
    radius = (radius[0] * min(h, w), radius[1] * min(h, w))
    image = _background(rng, h, w)
    boxes, classes = [], []
    for _ in range(int(rng.integers(1, max_objects + 1)) * 3):  # a few tries per wanted object
        if len(boxes) >= max_objects:
            break
        kind = int(rng.integers(len(CLASSES)))
        r = rng.uniform(*radius)
        cx, cy = rng.uniform(r * 0.5, w - r * 0.5), rng.uniform(r * 0.5, h - r * 0.5)
        points = _shape_points(CLASSES[kind], cx, cy, r, rng.uniform(0, 2 * np.pi))
        box = np.concatenate([points.min(0).clip(0, None), np.minimum(points.max(0), (w, h))])
        if (box[2:] - box[:2]).min() < 6 or _iou(box, boxes) > 0.2:
            continue
        color = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.fillPoly(image, [np.round(points * 16).astype(np.int32)], color, cv2.LINE_AA, shift=4)
        boxes.append(box)
        classes.append(kind)
    return image, np.asarray(boxes, np.float32).reshape(-1, 4), np.asarray(classes, np.int64)


def generate_scenes(out_dir: str | Path, num_images: int, size: tuple[int, int] = (416, 416), seed: int = 0,
                    max_objects: int = 6) -> Path:
    """Write `out_dir/images/*.jpg` and `out_dir/annotations/instances.json`; return the annotation path."""
    out = Path(out_dir)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    images, annotations = [], []
    for i in range(num_images):
        image, boxes, classes = render_scene(rng, size, max_objects)
        name = f"{i:06d}.jpg"
        cv2.imwrite(str(out / "images" / name), image, [cv2.IMWRITE_JPEG_QUALITY, 95])
        images.append({"id": i + 1, "file_name": name, "height": size[0], "width": size[1]})
        for box, cls in zip(boxes.tolist(), classes.tolist()):
            bw, bh = box[2] - box[0], box[3] - box[1]
            annotations.append({"id": len(annotations) + 1, "image_id": i + 1, "category_id": cls + 1,
                                "bbox": [round(v, 2) for v in (box[0], box[1], bw, bh)], "area": bw * bh,
                                "iscrowd": 0})
    categories = [{"id": i + 1, "name": n, "supercategory": "shape"} for i, n in enumerate(CLASSES)]
    path = out / "annotations" / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations, "categories": categories}))
    return path
