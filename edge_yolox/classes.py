"""Class names: the 80 COCO names as COCO's annotations and the official YOLOX (`COCO_CLASSES`) spell them, the
darknet/VOC spellings older bundles carry accepted as aliases, and the names of a model that records none."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Optional

COCO_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck",
    "boat", "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat",
    "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe",
    "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard",
    "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake",
    "chair", "couch", "potted plant", "bed", "dining table", "toilet", "tv", "laptop",
    "mouse", "remote", "keyboard", "cell phone", "microwave", "oven", "toaster", "sink",
    "refrigerator", "book", "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)
ALIASES = {"motorbike": "motorcycle", "aeroplane": "airplane", "sofa": "couch", "pottedplant": "potted plant",
           "diningtable": "dining table", "tvmonitor": "tv"}


def default_names(num_classes: int) -> list[str]:
    """COCO's names for an 80-class model, else the class ids as text."""
    return list(COCO_NAMES) if num_classes == 80 else [str(i) for i in range(num_classes)]


def class_index(name: str, names: Sequence[str]) -> Optional[int]:
    """The index of `name` in `names`, either spelling of an aliased COCO class matching the other."""
    wanted = ALIASES.get(name, name)
    return next((i for i, n in enumerate(names) if ALIASES.get(n, n) == wanted), None)
