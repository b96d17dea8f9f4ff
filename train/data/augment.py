"""YOLOX training augmentations on BGR uint8 images with labels [N, 5] = (x1, y1, x2, y2, class) in pixels.

Every random choice comes from the `np.random.Generator` passed in, so a sample is a pure function of its seed
(the loader seeds per epoch and index, which makes resume exact and worker count irrelevant).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import cv2
import numpy as np

from edge_yolox.schema import bounded

PAD_VALUE = 114
MAX_LABELS = 120


@dataclass
class AugmentConfig:
    """The official YOLOX knobs (defaults: the YOLOX-S recipe; `recipe()` in the trainer sets Nano/Tiny)."""

    mosaic_prob: float = bounded(0, 1, default=1.0)
    mixup_prob: float = bounded(0, 1, default=1.0)
    hsv_prob: float = bounded(0, 1, default=1.0)
    flip_prob: float = bounded(0, 1, default=0.5)
    degrees: float = bounded(0, 180, default=10.0)
    translate: float = bounded(0, 1, default=0.1)
    mosaic_scale: tuple[float, float] = field(default=(0.1, 2.0), metadata={"length": 2, "range": (0.01, 10)})
    mixup_scale: tuple[float, float] = field(default=(0.5, 1.5), metadata={"length": 2, "range": (0.01, 10)})
    shear: float = bounded(0, 45, default=2.0)
    hsv_gains: tuple[int, int, int] = field(default=(5, 30, 30), metadata={"length": 3, "range": (0, 255)})


def hsv_jitter(image: np.ndarray, rng: np.random.Generator, gains=(5, 30, 30)) -> np.ndarray:
    """Shift hue/saturation/value by integers drawn in ±gain, each shift kept with probability 1/2."""
    shift = (rng.uniform(-1, 1, 3) * gains * rng.integers(0, 2, 3)).astype(np.int16)
    hsv = cv2.cvtColor(image, cv2.COLOR_BGR2HSV).astype(np.int16)
    hsv[..., 0] = (hsv[..., 0] + shift[0]) % 180
    hsv[..., 1:] = np.clip(hsv[..., 1:] + shift[1:], 0, 255)
    return cv2.cvtColor(hsv.astype(np.uint8), cv2.COLOR_HSV2BGR)


def hflip(image: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    width = image.shape[1]
    labels = labels.copy()
    labels[:, [0, 2]] = width - labels[:, [2, 0]]
    return np.ascontiguousarray(image[:, ::-1]), labels


def resize_to_fit(image: np.ndarray, labels: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Scale so the image fits inside size (h, w), keeping its aspect ratio (the letterbox ratio)."""
    h0, w0 = image.shape[:2]
    r = min(size[0] / h0, size[1] / w0)
    image = cv2.resize(image, (max(1, int(w0 * r)), max(1, int(h0 * r))), interpolation=cv2.INTER_LINEAR)
    labels = labels.copy()
    labels[:, :4] *= r
    return image, labels


def pad_to(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Place the image at the top-left of a size (h, w) canvas filled with 114 (the runtime letterbox)."""
    canvas = np.full((size[0], size[1], 3), PAD_VALUE, np.uint8)
    h, w = min(image.shape[0], size[0]), min(image.shape[1], size[1])
    canvas[:h, :w] = image[:h, :w]
    return canvas


def clip_boxes(labels: np.ndarray, width: float, height: float) -> np.ndarray:
    labels = labels.copy()
    labels[:, [0, 2]] = labels[:, [0, 2]].clip(0, width)
    labels[:, [1, 3]] = labels[:, [1, 3]].clip(0, height)
    return labels


def box_candidates(before: np.ndarray, after: np.ndarray, wh_thr=2.0, ar_thr=20.0, area_thr=0.1) -> np.ndarray:
    """Keep boxes that stay visible after a geometric transform: sides > wh_thr px, aspect ratio < ar_thr and at
    least area_thr of their (scaled) area left, as the official affine does."""
    w0, h0 = before[:, 2] - before[:, 0], before[:, 3] - before[:, 1]
    w1, h1 = after[:, 2] - after[:, 0], after[:, 3] - after[:, 1]
    ratio = np.maximum(w1 / (h1 + 1e-16), h1 / (w1 + 1e-16))
    return (w1 > wh_thr) & (h1 > wh_thr) & (w1 * h1 / (w0 * h0 + 1e-16) > area_thr) & (ratio < ar_thr)


def affine_matrix(rng: np.random.Generator, size: tuple[int, int], degrees: float, translate: float,
                  scale: tuple[float, float], shear: float) -> tuple[np.ndarray, float]:
    """Rotation + scale about the origin, shear, then translation (fractions of size (h, w)); as the official."""
    angle = rng.uniform(-degrees, degrees)
    s = rng.uniform(*scale)
    rot = cv2.getRotationMatrix2D(center=(0, 0), angle=angle, scale=s)
    shear_x = math.tan(math.radians(rng.uniform(-shear, shear)))
    shear_y = math.tan(math.radians(rng.uniform(-shear, shear)))
    m = np.empty((2, 3))
    m[0] = rot[0] + shear_y * rot[1]
    m[1] = rot[1] + shear_x * rot[0]
    m[0, 2] = rng.uniform(-translate, translate) * size[1]
    m[1, 2] = rng.uniform(-translate, translate) * size[0]
    return m, s


def warp(image: np.ndarray, labels: np.ndarray, m: np.ndarray, size: tuple[int, int], scale: float):
    """Apply affine m: the image to a size (h, w) canvas, each box to the bounding box of its warped corners."""
    out = cv2.warpAffine(image, m, dsize=(size[1], size[0]), borderValue=(PAD_VALUE,) * 3)
    if len(labels) == 0:
        return out, labels
    corners = labels[:, [0, 1, 2, 3, 0, 3, 2, 1]].reshape(-1, 2)  # x1y1, x2y2, x1y2, x2y1
    corners = (corners @ m[:, :2].T + m[:, 2]).reshape(-1, 4, 2)
    boxes = np.concatenate([corners.min(1), corners.max(1)], 1)
    warped = clip_boxes(np.concatenate([boxes, labels[:, 4:]], 1), size[1], size[0]).astype(np.float32)
    keep = box_candidates(labels[:, :4] * scale, warped[:, :4])
    return out, warped[keep]


def random_affine(image, labels, rng, size, cfg: AugmentConfig):
    m, s = affine_matrix(rng, size, cfg.degrees, cfg.translate, cfg.mosaic_scale, cfg.shear)
    return warp(image, labels, m, size, s)


def mosaic(items: list[tuple[np.ndarray, np.ndarray]], rng: np.random.Generator, size: tuple[int, int]):
    """Four images around a random centre (0.5-1.5 x size) on a 2x canvas padded with 114."""
    h, w = size
    yc, xc = int(rng.uniform(0.5 * h, 1.5 * h)), int(rng.uniform(0.5 * w, 1.5 * w))
    canvas = np.full((2 * h, 2 * w, 3), PAD_VALUE, np.uint8)
    all_labels = []
    for k, (image, labels) in enumerate(items):
        image, labels = resize_to_fit(image, labels, size)
        ih, iw = image.shape[:2]
        # Large-canvas corners for quadrant k (top-left, top-right, bottom-left, bottom-right of the centre).
        x1, x2 = (max(xc - iw, 0), xc) if k in (0, 2) else (xc, min(xc + iw, 2 * w))
        y1, y2 = (max(yc - ih, 0), yc) if k in (0, 1) else (yc, min(yc + ih, 2 * h))
        # The matching crop of the image, anchored at the side that touches the centre.
        sx1 = iw - (x2 - x1) if k in (0, 2) else 0
        sy1 = ih - (y2 - y1) if k in (0, 1) else 0
        canvas[y1:y2, x1:x2] = image[sy1:sy1 + (y2 - y1), sx1:sx1 + (x2 - x1)]
        labels = labels.copy()
        labels[:, [0, 2]] += x1 - sx1
        labels[:, [1, 3]] += y1 - sy1
        all_labels.append(labels)
    labels = clip_boxes(np.concatenate(all_labels, 0), 2 * w, 2 * h)
    return canvas, labels


def mixup(image: np.ndarray, labels: np.ndarray, other: np.ndarray, other_labels: np.ndarray,
          rng: np.random.Generator, scale_range=(0.5, 1.5)):
    """Blend 50/50 with another image fitted to this size, jittered in scale, maybe flipped, randomly cropped."""
    h, w = image.shape[:2]
    jitter = rng.uniform(*scale_range)
    other, other_labels = resize_to_fit(other, other_labels, (h, w))
    other = pad_to(other, (h, w))
    other = cv2.resize(other, (int(w * jitter), int(h * jitter)), interpolation=cv2.INTER_LINEAR)
    other_labels = other_labels.copy()
    other_labels[:, :4] *= np.array([other.shape[1] / w, other.shape[0] / h] * 2, np.float32)
    if rng.random() < 0.5:
        other, other_labels = hflip(other, other_labels)
    canvas = pad_to(other, (max(h, other.shape[0]), max(w, other.shape[1])))
    dy = int(rng.integers(0, canvas.shape[0] - h + 1))
    dx = int(rng.integers(0, canvas.shape[1] - w + 1))
    crop = canvas[dy:dy + h, dx:dx + w]
    shifted = other_labels.copy()
    shifted[:, [0, 2]] -= dx
    shifted[:, [1, 3]] -= dy
    shifted = clip_boxes(shifted, w, h)
    shifted = shifted[box_candidates(other_labels[:, :4], shifted[:, :4], wh_thr=5)]
    blended = (0.5 * image.astype(np.float32) + 0.5 * crop.astype(np.float32)).astype(np.uint8)
    return blended, np.concatenate([labels, shifted], 0).astype(np.float32)


def pack_targets(labels: np.ndarray, max_labels: int = MAX_LABELS) -> np.ndarray:
    """xyxy+class labels -> [max_labels, 5] rows (class, cx, cy, w, h), dropping boxes with a side <= 1 px,
    zero rows as padding."""
    wh = labels[:, 2:4] - labels[:, :2]
    keep = np.minimum(wh[:, 0], wh[:, 1]) > 1
    labels, wh = labels[keep][:max_labels], wh[keep][:max_labels]
    out = np.zeros((max_labels, 5), np.float32)
    out[:len(labels), 0] = labels[:, 4]
    out[:len(labels), 1:3] = labels[:, :2] + wh / 2
    out[:len(labels), 3:5] = wh
    return out
