"""Detector: frame -> letterbox -> backend -> C++ postprocess -> detections in source-frame pixels."""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np

from edge_yolox.backends import Backend, load_backend
from edge_yolox.classes import class_index
from edge_yolox.errors import ConfigError
from edge_yolox.postprocess import CONF, IOU, MAX_DET, postprocess
from edge_yolox.preprocess import letterbox


@dataclass
class Prepared:
    """A frame ready for the backend."""

    input: np.ndarray  # the model's input tensor
    ratio: float  # letterbox scale, to map boxes back to the frame
    ms: float  # time the preparation took


class Detector:
    """Runs one model on BGR frames.

    `model` is a loaded Backend or a path for `load_backend` (backend/threads/options pass through).
    `classes` keeps only those classes (ids or names). The backend applies the model's preprocessing
    (meta.preprocess: BGR 0-255, or the legacy RGB/255/mean-std); `legacy=True` forces the latter.
    An end-to-end model (meta.json `nms: false`) is postprocessed without NMS (threshold + top-k, `iou` and
    `class_agnostic` unused); `nms=True` forces NMS on it anyway (to compare), `nms=False` skips it on any model.
    """

    def __init__(self, model: Union[str, Path, Backend], *, conf: float = CONF, iou: float = IOU,
                 class_agnostic: bool = False, max_det: int = MAX_DET, classes: Optional[Iterable] = None,
                 backend: Optional[str] = None, threads: Optional[int] = None, nms: Optional[bool] = None,
                 **opts: Any):
        self.backend = model if isinstance(model, Backend) else load_backend(model, backend, threads, **opts)
        self.meta = self.backend.meta
        self.options = dict(conf=conf, iou=iou, class_agnostic=class_agnostic, max_det=max_det,
                            **self.meta.postprocess_options)
        if nms is not None:
            self.options["nms"] = nms
        self.keep = None if classes is None else self._class_ids(classes)

    @property
    def nms(self) -> bool:
        """Whether detections go through NMS (False for an end-to-end model unless forced)."""
        return bool(self.options["nms"])

    @property
    def class_names(self) -> list[str]:
        return self.meta.class_names or [str(i) for i in range(self.meta.num_classes)]

    def _class_ids(self, classes: Iterable) -> np.ndarray:
        names = self.class_names
        ids = []
        for c in classes:
            if isinstance(c, (int, np.integer)) or (isinstance(c, str) and c.isdigit()):
                i = int(c)
            elif (found := class_index(c, names)) is not None:
                i = found
            else:
                raise ConfigError(f"detect.classes: unknown class {c!r}; this model has: {', '.join(names)}")
            if not 0 <= i < self.meta.num_classes:
                raise ConfigError(f"detect.classes: class id {i} out of range 0..{self.meta.num_classes - 1}")
            ids.append(i)
        return np.asarray(sorted(set(ids)), dtype=np.float32)

    def prepare(self, frame: np.ndarray) -> Prepared:
        """Letterbox and convert one frame to the model's input. Thread-safe: a source may call it ahead."""
        t0 = time.perf_counter()
        canvas, ratio = letterbox(frame, self.meta.input_size)
        return Prepared(self.backend.prepare(canvas), ratio, (time.perf_counter() - t0) * 1e3)

    def detect(self, frame: np.ndarray, prepared: Optional[Prepared] = None) -> tuple[np.ndarray, dict[str, float]]:
        """float32 [K, 6] (x1, y1, x2, y2, score, class_id) and the stage times in ms (pre, infer, post).

        `prepared` is `prepare(frame)` done earlier (e.g. in the decoding thread, overlapping inference)."""
        prepared = prepared or self.prepare(frame)
        t0 = time.perf_counter()
        outputs = self.backend.run(prepared.input)
        t1 = time.perf_counter()
        dets = postprocess(outputs, self.meta.input_size, ratio=prepared.ratio, frame_size=frame.shape[:2],
                           **self.options)
        if self.keep is not None:
            dets = dets[np.isin(dets[:, 5], self.keep)]
        t2 = time.perf_counter()
        return dets, {"pre": prepared.ms, "infer": (t1 - t0) * 1e3, "post": (t2 - t1) * 1e3}

    def to_json(self, dets: np.ndarray, track_ids: Optional[np.ndarray] = None) -> list[dict[str, Any]]:
        """Detections as records carry them (ARCHITECTURE.md, "Records"); with `track_ids` (0: none) each gets a
        `track_id` (null: not part of a track)."""
        names = self.class_names
        out = [{"label": names[int(c)] if int(c) < len(names) else str(int(c)), "class_id": int(c),
                "score": round(float(s), 4), "box": [round(float(v), 1) for v in (x1, y1, x2, y2)]}
               for x1, y1, x2, y2, s, c in dets]
        if track_ids is not None:
            for det, track_id in zip(out, track_ids.tolist()):
                det["track_id"] = track_id or None
        return out

    def close(self) -> None:
        self.backend.close()
