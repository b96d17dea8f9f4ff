"""Exporters: each writes a model bundle (edge_yolox.bundle) that the runtime backends load.

`base_meta` gives the fields every format shares (classes, input size, strides, variant); each exporter fills in
layout, outputs, precision and backend. onnx.py lives here; ncnn.py and tflite.py sit beside it.
"""

from __future__ import annotations

from collections.abc import Sequence

from edge_yolox.bundle import ModelMeta


def base_meta(variant: str, num_classes: int, input_size: tuple[int, int], class_names: Sequence[str],
              strides: Sequence[int] = (8, 16, 32), source: str = "") -> ModelMeta:
    """The format-independent part of a bundle's meta.json."""
    extra = {"source": source} if source else {}
    return ModelMeta(num_classes=num_classes, input_size=tuple(input_size), strides=tuple(strides),
                     class_names=list(class_names), variant=variant, extra=extra)
