"""Metadata for a bare model (no meta.json): the head layout from its output shapes, the score and box conventions
from one probe inference."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edge_yolox.bundle import META_NAME, ModelMeta
from edge_yolox.classes import default_names
from edge_yolox.errors import ModelError
from edge_yolox.postprocess import STRIDES, grid_shapes

log = logging.getLogger(__name__)


def grid_cells(input_size: Sequence[int], strides: Sequence[int]) -> list[int]:
    """Anchors per stride: the cells of its grid."""
    return [h * w for h, w in grid_shapes(tuple(input_size), strides)]


def order_split(shapes: Sequence[Sequence[int]], input_size: Sequence[int], strides: Sequence[int],
                path: Path) -> list[int]:
    """Indices putting 9 split head maps in postprocess order (reg, obj, cls per stride, stride ascending).

    Each map is identified by its grid (which stride) and its channel count (4 = reg, 1 = obj, else cls);
    exporters name outputs differently and TFLite reorders them, so names cannot be trusted.
    """
    cells = grid_cells(input_size, strides)
    order: list[int] = []
    for n in cells:
        found: dict[str, int] = {}
        for i, shape in enumerate(shapes):
            dims = [d for d in shape if d != 1] or [1]
            if int(np.prod(shape)) % n or n not in _grid_products(shape):
                continue
            channels = int(np.prod(dims)) // n
            kind = {4: "reg", 1: "obj"}.get(channels, "cls")
            found.setdefault(kind, i)
        if len(found) != 3:
            raise ModelError(f"{path}: cannot match outputs {list(map(list, shapes))} to a YOLOX head "
                             f"(input {list(input_size)}, strides {list(strides)})")
        order += [found["reg"], found["obj"], found["cls"]]
    return order


def _grid_products(shape: Sequence[int]) -> set[int]:
    """H·W for every adjacent pair of dims: the candidate grids of an NCHW or NHWC map."""
    dims = list(shape)
    return {dims[i] * dims[i + 1] for i in range(len(dims) - 1)}


def infer_head(shapes: Sequence[Sequence[int]], input_size: Sequence[int], strides: Sequence[int],
               path: Path) -> tuple[str, int, list[int]]:
    """(layout, num_classes, output order) from the output shapes of a bare model."""
    total = sum(grid_cells(input_size, strides))
    if len(shapes) == 1:
        shape = [d for d in shapes[0] if d != 1]
        if len(shape) == 2 and shape[0] == total and shape[1] > 5:
            return "single", shape[1] - 5, [0]
        raise ModelError(f"{path}: output shape {list(shapes[0])} is not a YOLOX head [N={total}, 5+classes] "
                         f"for input {list(input_size)}")
    if len(shapes) == 3 * len(strides):
        order = order_split(shapes, input_size, strides, path)
        cls_size = int(np.prod(shapes[order[2]]))
        return "split", cls_size // grid_cells(input_size, strides)[0], order
    raise ModelError(f"{path}: {len(shapes)} outputs; expected 1 (single YOLOX tensor) or "
                     f"{3 * len(strides)} (split head)")


def probe_conventions(outputs: list[np.ndarray], layout: str) -> tuple[bool, bool]:
    """(sigmoid_applied, boxes_decoded) judged from one inference of a bare model on a blank frame.

    Scores outside [0, 1] are logits. Raw box offsets are small grid-relative numbers, decoded centres
    are pixel positions spread over the whole image, so their median is far above a few cells.
    """
    if layout == "single":
        rows = outputs[0].reshape(-1, outputs[0].shape[-1])
        scores, centres = rows[:, 4:], rows[:, :2]
    else:
        scores = np.concatenate([o.ravel() for o in outputs[1::3] + outputs[2::3]])
        centres = np.concatenate([o.ravel() for o in outputs[0::3]])
    sigmoid = bool(np.nanmin(scores) >= 0.0 and np.nanmax(scores) <= 1.0)
    decoded = bool(np.nanmedian(np.abs(centres)) > 8.0)
    return sigmoid, decoded


def bare_meta(path: Path, backend: str, input_size: Sequence[int],
              infer_raw: Callable[[np.ndarray], list[np.ndarray]]) -> tuple[ModelMeta, list[int]]:
    """Metadata for a model without meta.json, and the order of its outputs for postprocess.

    The head layout comes from the output shapes and the score/box conventions from one probe inference.
    """
    strides = STRIDES
    raw = infer_raw(np.full((*input_size, 3), 114, np.uint8))
    layout, num_classes, order = infer_head([o.shape for o in raw], input_size, strides, path)
    sigmoid, decoded = probe_conventions([raw[i] for i in order], layout)
    names = default_names(num_classes)
    meta = ModelMeta(num_classes=num_classes, input_size=tuple(input_size), layout=layout, strides=strides,
                     sigmoid_applied=sigmoid, boxes_decoded=decoded, class_names=names, backend=backend,
                     variant=path.stem, extra={"inferred": True})
    log.info("%s: no %s, inferred: %s head, %d classes (%s names), input %s, scores %s, boxes %s",
             path, META_NAME, layout, num_classes, "COCO" if num_classes == 80 else "numbered",
             list(input_size), "sigmoided" if sigmoid else "logits", "decoded" if decoded else "raw")
    return meta, order
