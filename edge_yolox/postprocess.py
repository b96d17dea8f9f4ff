"""Typed entry points to the C++ decode/NMS core (csrc/).

Both YOLOX head layouts are accepted:
- the official single tensor, [N, 5+C] or [B, N, 5+C], rows of (x, y, w, h, obj, cls...);
- split per-stride maps, a sequence of 3 arrays per stride in stride order: reg (4 channels),
  obj (1), cls (C), each [C, H, W] / [H, W, C] or with a leading batch dim (layout detected from the
  grid size, or forced with ``layout``).

Results are float32 [K, 6] arrays of (x1, y1, x2, y2, score, class_id) in source-frame pixels.

End-to-end (NMS-free) models, whose head keeps one box per object, take ``nms=False``: threshold and top-k
(``max_det``) only; ``iou`` and ``class_agnostic`` are then unused.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np

from edge_yolox import _core

Outputs = Union[np.ndarray, Sequence[np.ndarray]]
Pair = tuple[float, float]
STRIDES = (8, 16, 32)  # YOLOX's head strides: every layer of the runtime and the exporters takes them from here
# Detection defaults: the config's (edge_yolox.config.DetectConfig), the Detector's and this API's.
CONF, IOU, MAX_DET = 0.25, 0.45, 100


def postprocess_batch(
    outputs: Outputs,
    input_size: tuple[int, int],
    *,
    conf: float = CONF,
    iou: float = IOU,
    class_agnostic: bool = False,
    max_det: int = MAX_DET,
    ratio: Union[float, Sequence[float]] = 1.0,
    pad: Union[Pair, Sequence[Pair]] = (0.0, 0.0),
    frame_size: Union[None, tuple[int, int], Sequence[tuple[int, int]]] = None,
    strides: Sequence[int] = STRIDES,
    multi_label: bool = False,
    apply_sigmoid: bool = False,
    decode_boxes: bool = True,
    layout: str = "auto",
    nms: bool = True,
) -> list[np.ndarray]:
    """Decode, threshold, NMS (or, with nms=False, only the top max_det by score) and un-letterbox a batch in one
    call (the GIL is released meanwhile).

    input_size: the model input (h, w). ratio/pad/frame_size: the letterbox scale, its (x, y) padding
    and the source (h, w) used for clipping; one value for all images or one per image.
    apply_sigmoid: scores are logits. decode_boxes: boxes are raw grid offsets (the official export);
    False when they are already (cx, cy, w, h) in input pixels. multi_label: every class above conf
    per anchor, not only the best.
    """
    arrays = [outputs] if isinstance(outputs, np.ndarray) else list(outputs)
    return _core.postprocess(
        arrays,
        _pair(input_size, "input_size", int),
        float(conf),
        float(iou),
        bool(class_agnostic),
        int(max_det),
        bool(multi_label),
        bool(apply_sigmoid),
        bool(decode_boxes),
        [int(s) for s in strides],
        layout,
        _per_image(ratio, "ratio", np.isscalar, float),
        _per_image(pad, "pad", _is_pair_of_numbers, lambda p: _pair(p, "pad", float)),
        _per_image(frame_size, "frame_size", lambda f: f is None or _is_pair_of_numbers(f), _frame_size),
        bool(nms),
    )


def postprocess(outputs: Outputs, input_size: tuple[int, int], **kwargs) -> np.ndarray:
    """`postprocess_batch` for one image (a batch dimension of 1 is fine): float32 [K, 6]."""
    results = postprocess_batch(outputs, input_size, **kwargs)
    if len(results) != 1:
        raise ValueError(f"outputs hold a batch of {len(results)} images; use postprocess_batch")
    return results[0]


def box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    """IoU of one (x1, y1, x2, y2) box with each row of `boxes` [K, >=4] (further columns ignored): [K]."""
    boxes = np.asarray(boxes)
    lt, rb = np.maximum(boxes[:, :2], box[:2]), np.minimum(boxes[:, 2:4], box[2:4])
    inter = np.clip(rb - lt, 0, None).prod(1)
    union = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) - inter
    return inter / np.maximum(union, 1e-9)


def grid_shapes(input_size: tuple[int, int], strides: Sequence[int] = STRIDES) -> list[tuple[int, int]]:
    """(h, w) of each stride's head map for a model input (h, w): ceil(size / stride), what YOLOX's stride-2
    convolutions produce; the C++ core's own rule, so Python never disagrees with it."""
    return [tuple(g) for g in _core.grid_shapes(*_pair(input_size, "input_size", int), [int(s) for s in strides])]


def _pair(value, name: str, kind) -> tuple:
    try:
        a, b = value
        return kind(a), kind(b)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a pair of numbers, got {value!r}") from None


def _frame_size(value) -> tuple[float, float]:
    return (0.0, 0.0) if value is None else _pair(value, "frame_size", float)


def _per_image(value, name: str, is_single, convert) -> list:
    """One value shared by every image, or a sequence with one value per image."""
    if is_single(value):
        return [convert(value)]
    try:
        items = list(value)
    except TypeError:
        items = []
    if not items:
        raise ValueError(f"{name} must be one value or one per image, got {value!r}")
    return [convert(v) for v in items]


def _is_pair_of_numbers(value) -> bool:
    try:
        return len(value) == 2 and all(np.isscalar(v) for v in value)
    except TypeError:
        return False


__all__ = ["CONF", "IOU", "MAX_DET", "STRIDES", "grid_shapes", "postprocess", "postprocess_batch"]
