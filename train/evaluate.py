"""COCO evaluation through pycocotools, for a PyTorch model or any runtime model (ONNX, NCNN, TFLite, bundle).

Both paths share everything but inference: letterbox at the model size -> outputs -> edge_yolox.postprocess (the
C++ core) with the official settings (conf 0.01, per-class NMS 0.65) -> COCO results -> COCOeval. So FP32 and INT8
exports are measured exactly like the PyTorch model.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from edge_yolox.errors import ConfigError
from edge_yolox.files import DATA_BYTES, load_json
from edge_yolox.postprocess import box_iou, postprocess_batch
from edge_yolox.preprocess import letterbox

from .data.datasets import DetectionDataset

if TYPE_CHECKING:  # torch is imported only to evaluate a PyTorch model: runtime models need none
    from torch import nn

OFFICIAL_CONF = 0.01
OFFICIAL_IOU = 0.65
METRICS = ("AP", "AP50", "AP75", "APs", "APm", "APl")  # COCOeval.stats[0:6]
TORCH_BATCH = 8

# frames (BGR uint8) -> detections [K, 6] (x1, y1, x2, y2, score, class) in source pixels, one array per frame
DetectFn = Callable[[Sequence[np.ndarray]], list[np.ndarray]]


def torch_detect_fn(model: nn.Module, input_size: tuple[int, int], conf: float, iou: float,
                    nms: bool = True) -> DetectFn:
    """Batched PyTorch inference (on the model's device and dtype) and the shared C++ postprocess (`nms` False:
    threshold and top-k only, for end-to-end models)."""
    import torch

    param = next(model.parameters())
    decode = not model.head.decode_in_inference  # the head may already return decoded boxes (the default)

    @torch.no_grad()
    def detect(frames: Sequence[np.ndarray]) -> list[np.ndarray]:
        boxed = [letterbox(frame, input_size) for frame in frames]
        batch = torch.from_numpy(np.stack([image for image, _ in boxed])).permute(0, 3, 1, 2)
        outputs = model(batch.to(param.device, param.dtype)).float().cpu().numpy()
        return postprocess_batch(outputs, input_size, conf=conf, iou=iou, decode_boxes=decode, nms=nms,
                                 ratio=[r for _, r in boxed], frame_size=[f.shape[:2] for f in frames])

    return detect


def detector_detect_fn(detector) -> DetectFn:
    """A runtime edge_yolox.detector.Detector, frame by frame."""
    return lambda frames: [detector.detect(frame)[0] for frame in frames]


def _batches(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield list(indices[start:start + size])


def predict(detect: DetectFn, dataset: DetectionDataset, indices: Sequence[int], batch: int,
            progress: bool = True) -> list[dict[str, Any]]:
    """COCO-format results (bbox x, y, w, h in source pixels, the dataset's category ids) for `indices`."""
    from tqdm import tqdm

    results: list[dict[str, Any]] = []
    with tqdm(total=len(indices), desc="eval", unit="img", disable=not progress, dynamic_ncols=True) as bar:
        for chunk in _batches(indices, batch):
            frames = [dataset.load(i)[0] for i in chunk]
            for i, dets in zip(chunk, detect(frames)):
                image_id = dataset.records[i].image_id
                for x1, y1, x2, y2, score, cls in dets.tolist():
                    results.append({"image_id": image_id, "category_id": dataset.category_ids[int(cls)],
                                    "bbox": [x1, y1, x2 - x1, y2 - y1], "score": score})
            bar.update(len(chunk))
    return results


def ground_truth(dataset: DetectionDataset) -> dict:
    """The original COCO annotation file when the dataset is one (crowd regions and mask areas count as COCO
    counts them), else the dataset converted to COCO."""
    source = Path(dataset.source)
    if source.suffix == ".json" and source.is_file():
        return load_json(source, "COCO annotation file", DATA_BYTES)
    return dataset.to_coco()


def coco_metrics(gt: dict, results: list[dict[str, Any]], image_ids: Sequence[int],
                 classes: Optional[dict[str, int]] = None) -> dict[str, Any]:
    """COCOeval bbox metrics over `image_ids`, as pycocotools gives them (fractions 0-1; -1 where these images have
    no ground truth for a metric, e.g. APs without small objects). With `classes` (name -> category id), per-class
    AP50:95 too (None for a class without ground truth in these images)."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    metrics: dict[str, Any] = dict.fromkeys(METRICS, 0.0)
    if not results:
        if classes is not None:
            metrics["per_class"] = dict.fromkeys(classes, 0.0)
        return metrics
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress of its own
        coco_gt = COCO()
        coco_gt.dataset = gt
        coco_gt.createIndex()
        evaluator = COCOeval(coco_gt, coco_gt.loadRes(results), "bbox")
        evaluator.params.imgIds = list(image_ids)
        evaluator.evaluate()
        evaluator.accumulate()
        evaluator.summarize()
    metrics.update({k: float(v) for k, v in zip(METRICS, evaluator.stats)})
    if classes is not None:
        precision = evaluator.eval["precision"][:, :, :, 0, -1]  # [iou, recall, category] at area all, 100 dets
        column = {cat: k for k, cat in enumerate(evaluator.params.catIds)}
        per_class = {}
        for name, cat in classes.items():
            p = precision[:, :, column[cat]] if cat in column else np.full(1, -1.0)
            per_class[name] = float(p[p > -1].mean()) if (p > -1).any() else None
        metrics["per_class"] = per_class
    return metrics


def evaluate(detect: DetectFn, dataset: DetectionDataset, *, batch: int = 1, limit: int = 0, per_class: bool = False,
             progress: bool = True) -> dict[str, Any]:
    """Run `detect` over the dataset (its first `limit` images when limit > 0) and score it with pycocotools."""
    indices = list(range(len(dataset) if limit <= 0 else min(limit, len(dataset))))
    results = predict(detect, dataset, indices, batch, progress)
    image_ids = [dataset.records[i].image_id for i in indices]
    classes = dict(zip(dataset.names, dataset.category_ids)) if per_class else None
    metrics = coco_metrics(ground_truth(dataset), results, image_ids, classes)
    metrics.update(images=len(indices), detections=len(results))
    return metrics


def evaluate_dataset(model: nn.Module, dataset: DetectionDataset, input_size: tuple[int, int], *,
                     conf: float = OFFICIAL_CONF, iou: float = OFFICIAL_IOU, limit: int = 0, per_class: bool = False,
                     progress: bool = True, nms: Optional[bool] = None) -> dict[str, Any]:
    """COCO metrics of a PyTorch YOLOX on a dataset at `input_size` (h, w), official settings by default; an
    end-to-end model without NMS unless `nms` says otherwise (models.needs_nms).
    The model is evaluated in eval mode and left in the mode it came in."""
    if model.head.num_classes != dataset.num_classes:
        raise ConfigError(f"the model predicts {model.head.num_classes} classes but {dataset.source} has "
                          f"{dataset.num_classes}")
    from .models import needs_nms

    was_training = model.training
    model.eval()
    try:
        detect = torch_detect_fn(model, input_size, conf, iou, needs_nms(model) if nms is None else nms)
        return evaluate(detect, dataset, batch=TORCH_BATCH, limit=limit,
                        per_class=per_class, progress=progress)
    finally:
        model.train(was_training)


def duplicates_per_object(detections: Sequence[np.ndarray], labels: Sequence[np.ndarray],
                          iou: float = 0.5) -> tuple[float, float, float]:
    """How often a detector reports an object more than once: over every ground-truth object, the detections of its
    class with IoU >= `iou` to it beyond the first, per object; the share of objects with such a duplicate; the share
    found at all (one detection or more). `detections` [K, 6] (x1, y1, x2, y2, score, class) and `labels` [N, 5]
    (x1, y1, x2, y2, class), one array each per image, in the same pixels; zeros without any object."""
    extra = dup_objects = found = total = 0
    for dets, objects in zip(detections, labels):
        for obj in objects:
            hits = int((box_iou(obj, dets[dets[:, 5] == obj[4]]) >= iou).sum())
            total += 1
            found += hits > 0
            extra += max(hits - 1, 0)
            dup_objects += hits > 1
    return (extra / total, dup_objects / total, found / total) if total else (0.0, 0.0, 0.0)


def format_metrics(metrics: dict[str, Any]) -> str:
    """The headline metrics, and the per-class table when present, as aligned text."""
    def text(value: Optional[float]) -> str:
        return "    -" if value is None or value < 0 else f"{value:.3f}"

    lines = ["  ".join(f"{k} {text(metrics[k]).strip()}" for k in METRICS)]
    per_class = metrics.get("per_class")
    if per_class:
        width = max(len(n) for n in per_class)
        lines.append(f"{'class':<{width}}  AP50:95")
        lines += [f"{name:<{width}}  {text(ap)}" for name, ap in per_class.items()]
    return "\n".join(lines)
