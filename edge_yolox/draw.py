"""Annotated frames (boxes, labels, fps) for the video sink and the live preview."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Optional

import cv2
import numpy as np


def color(class_id: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per class (golden-ratio hue steps)."""
    hue = int((class_id * 0.618033988749895 % 1.0) * 179)
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def annotate(frame: np.ndarray, detections: Sequence[dict[str, Any]], fps: Optional[float] = None) -> np.ndarray:
    """A copy of `frame` with each detection (record schema) boxed and labelled."""
    out = frame.copy()
    scale = max(0.4, min(out.shape[:2]) / 900)
    thick = max(1, round(scale * 2))
    for det in detections:
        x1, y1, x2, y2 = (int(round(v)) for v in det["box"])
        c = color(int(det["class_id"]))
        cv2.rectangle(out, (x1, y1), (x2, y2), c, thick)
        text = f"{det['label']} {det['score']:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thick)
        top = max(y1 - th - base, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw, top + th + base), c, -1)
        cv2.putText(out, text, (x1, top + th), cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thick, cv2.LINE_AA)
    if fps is not None:
        cv2.putText(out, f"{fps:.1f} fps", (8, int(30 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thick, cv2.LINE_AA)
    return out
