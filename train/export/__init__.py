"""Exporters: each writes a model bundle (edge_yolox.bundle) that the runtime backends load.

What every format shares lives here: `base_meta` (classes, input size, strides, variant) and the class names it
records; each exporter fills in layout, outputs, precision and backend. graph.py holds the module they all
convert, registry.py the formats and their writers; onnx.py, ncnn.py and tflite.py are the writers.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from edge_yolox.bundle import ModelMeta
from edge_yolox.classes import default_names
from edge_yolox.errors import ConfigError
from edge_yolox.postprocess import STRIDES


def base_meta(variant: str, num_classes: int, input_size: tuple[int, int], class_names: Sequence[str],
              strides: Sequence[int] = STRIDES, source: str = "") -> ModelMeta:
    """The format-independent part of a bundle's meta.json."""
    extra = {"source": source} if source else {}
    return ModelMeta(num_classes=num_classes, input_size=tuple(input_size), strides=tuple(strides),
                     class_names=list(class_names), variant=variant, extra=extra)


def read_names(spec: str) -> list[str]:
    """Class names from a names file, a YOLO data.yaml or any dataset open_dataset reads."""
    path = Path(spec)
    if path.suffix in (".txt", ".names"):
        try:
            return [line.strip() for line in path.read_text().splitlines() if line.strip()]
        except OSError as exc:
            raise ConfigError(f"--names {spec}: cannot read ({exc})") from None
    from ..data.datasets import open_dataset

    return open_dataset(path).names


def class_names(spec: Optional[str], recorded: Optional[list[str]], num_classes: int) -> list[str]:
    """--names, else the names the checkpoint records, else COCO's for 80 classes, else numbers (said)."""
    if spec:
        names = read_names(spec)
        if len(names) != num_classes:
            raise ConfigError(f"--names {spec}: {len(names)} names for a {num_classes}-class model")
        return names
    if recorded:
        return recorded
    if num_classes == 80:
        print("class names: COCO (80 classes; --names overrides)", file=sys.stderr)
    else:
        print(f"class names: 0..{num_classes - 1} (pass --names for real ones)", file=sys.stderr)
    return default_names(num_classes)
