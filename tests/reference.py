"""A plain numpy implementation of edge_yolox.postprocess, the yardstick for the C++ core.

Written for clarity, not speed: it follows the official YOLOX decode and torchvision-style NMS.
"""

from __future__ import annotations

import math

import numpy as np


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return (1.0 / (1.0 + np.exp(-x))).astype(np.float32)


def grids(input_size, strides):
    """(gx, gy, stride) per anchor, strides in order, row-major within each level."""
    cols = []
    for s in strides:
        h, w = math.ceil(input_size[0] / s), math.ceil(input_size[1] / s)
        gy, gx = np.meshgrid(np.arange(h), np.arange(w), indexing="ij")
        cols.append(np.stack([gx.ravel(), gy.ravel(), np.full(h * w, s)], axis=1))
    return np.concatenate(cols).astype(np.float32)


def split_to_rows(maps, channels_last=False):
    """Split per-stride maps [reg, obj, cls]×levels (unbatched) → the official [N, 5+C] rows."""
    rows = []
    for i in range(0, len(maps), 3):
        level = [np.asarray(m, np.float32) for m in maps[i : i + 3]]
        if not channels_last:
            level = [m.transpose(1, 2, 0) for m in level]
        rows.append(np.concatenate([m.reshape(-1, m.shape[-1]) for m in level], axis=1))
    return np.concatenate(rows)


def nms(boxes, scores, classes, iou, agnostic, max_det):
    order = np.argsort(-scores, kind="stable")
    keep = []
    for i in order:
        if len(keep) >= max_det:
            break
        ok = True
        for k in keep:
            if not agnostic and classes[k] != classes[i]:
                continue
            iw = min(boxes[k, 2], boxes[i, 2]) - max(boxes[k, 0], boxes[i, 0])
            ih = min(boxes[k, 3], boxes[i, 3]) - max(boxes[k, 1], boxes[i, 1])
            if iw <= 0 or ih <= 0:
                continue
            inter = iw * ih
            area = lambda b: max(0.0, b[2] - b[0]) * max(0.0, b[3] - b[1])  # noqa: E731
            union = area(boxes[k]) + area(boxes[i]) - inter
            if union > 0 and inter / union > iou:
                ok = False
                break
        if ok:
            keep.append(i)
    return np.array(keep, dtype=np.int64)


_nms = nms  # postprocess's `nms` flag shadows the function's name


def postprocess(rows, input_size, *, conf=0.25, iou=0.45, class_agnostic=False, max_det=100, ratio=1.0,
                pad=(0.0, 0.0), frame_size=None, strides=(8, 16, 32), multi_label=False, apply_sigmoid=False,
                decode_boxes=True, nms=True):
    """rows: the official [N, 5+C] tensor of one image → float32 [K, 6]. nms=False: the max_det best by score
    (an end-to-end model's selection)."""
    rows = np.asarray(rows, np.float32)
    if rows.ndim == 3:
        rows = rows[0]
    reg = rows[:, :4]
    obj, cls = rows[:, 4], rows[:, 5:]
    raw_cls = cls  # the best class is the same before and after the (monotonic) sigmoid
    if apply_sigmoid:
        obj, cls = _sigmoid(obj), _sigmoid(cls)
    if decode_boxes:
        g = grids(input_size, strides)
        with np.errstate(over="ignore"):
            cxcy = (reg[:, :2] + g[:, :2]) * g[:, 2:]
            wh = np.exp(reg[:, 2:]) * g[:, 2:]
    else:
        cxcy, wh = reg[:, :2], reg[:, 2:]
    with np.errstate(invalid="ignore", over="ignore"):
        boxes = np.concatenate([cxcy - 0.5 * wh, cxcy + 0.5 * wh], axis=1).astype(np.float32)
        if multi_label:
            anchor, cls_id = np.nonzero(obj[:, None] * cls >= conf)
        else:
            filled = np.where(np.isnan(raw_cls), -np.inf, raw_cls)
            cls_id = filled.argmax(axis=1)
            anchor = np.nonzero(~np.all(np.isnan(raw_cls), axis=1))[0]
            cls_id = cls_id[anchor]
        scores = (obj[anchor] * cls[anchor, cls_id]).astype(np.float32)
        boxes = boxes[anchor]
        valid = (scores >= conf) & np.all(np.isfinite(boxes), axis=1) & np.isfinite(scores) & (obj[anchor] >= conf)
    boxes, scores, cls_id = boxes[valid], scores[valid], cls_id[valid]
    if nms:
        keep = _nms(boxes, scores, cls_id, iou, class_agnostic, max_det)
    else:
        keep = np.argsort(-scores, kind="stable")[:max_det]
    boxes, scores, cls_id = boxes[keep], scores[keep], cls_id[keep]
    boxes = (boxes - np.array([pad[0], pad[1], pad[0], pad[1]], np.float32)) / np.float32(ratio)
    if frame_size is not None:
        boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, frame_size[1])
        boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, frame_size[0])
    return np.concatenate([boxes, scores[:, None], cls_id[:, None].astype(np.float32)], axis=1).astype(np.float32)
