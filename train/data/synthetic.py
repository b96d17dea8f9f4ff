"""The synthetic-scene dataset: still scenes from edge_yolox.scene written as COCO JSON.

Used by the tests (no download) and to train the built-in demo model. Deterministic for a given seed.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np

from edge_yolox.scene import CLASSES, render_scene

__all__ = ["CLASSES", "generate_scenes"]


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
