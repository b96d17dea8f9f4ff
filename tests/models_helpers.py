"""Shared by the model/checkpoint/eval/export tests: the real checkpoint, images and coco128 subsets."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from conftest import shared_path

from edge_yolox.postprocess import postprocess
from edge_yolox.preprocess import letterbox, to_nchw

SIZE = (416, 416)


def nano_checkpoint() -> Path:
    return shared_path("weights", "yolox_nano_coco.pth")


def coco128() -> Path:
    return shared_path("coco128")


def load_nano():
    """The shared official YOLOX-Nano COCO weights in our model, eval mode."""
    from edge_yolox.train.checkpoint import model_from_checkpoint

    return model_from_checkpoint(nano_checkpoint(), say=lambda _: None).model


def letterboxed(name: str) -> tuple[np.ndarray, np.ndarray, float]:
    """(frame, letterboxed 416 image, ratio) of a shared image."""
    frame = cv2.imread(str(shared_path("images", name)))
    image, ratio = letterbox(frame, SIZE)
    return frame, image.copy(), ratio


def torch_input(image: np.ndarray, dtype=None):
    import torch

    return torch.from_numpy(to_nchw(image)).to(dtype or torch.float32)


def detections(outputs, frame: np.ndarray, ratio: float, **options) -> np.ndarray:
    """Detections through the shared C++ postprocess at the README's reference settings unless overridden."""
    options = {"conf": 0.3, "iou": 0.45, **options}
    return postprocess(outputs, SIZE, ratio=ratio, frame_size=frame.shape[:2], **options)


def match(a: np.ndarray, b: np.ndarray, box_tol: float, score_tol: float) -> bool:
    """Same detections (class, box, score) in the same order, within tolerances."""
    return a.shape == b.shape and np.array_equal(a[:, 5], b[:, 5]) and \
        np.abs(a[:, :4] - b[:, :4]).max(initial=0) <= box_tol and np.abs(a[:, 4] - b[:, 4]).max(initial=0) <= score_tol
