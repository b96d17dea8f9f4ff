"""onnxruntime backend: CPU execution provider, intra-op threads from the board config."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from edge_yolox.backends.base import Backend, bundle_order, check_input_size, import_runtime, static_size
from edge_yolox.backends.probe import bare_meta
from edge_yolox.bundle import ModelMeta
from edge_yolox.errors import ModelError, reason

log = logging.getLogger(__name__)
OPTIONS: dict = {}


class OnnxBackend(Backend):
    name = "onnxruntime"

    def __init__(self, meta: ModelMeta, path: Path, session, nchw: bool, order: list[int]):
        super().__init__(meta, path)
        self.session = session
        self.nchw = nchw
        self.order = order
        self.input_name = session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        try:
            outputs = self.session.run(None, {self.input_name: x})
        except Exception as exc:  # onnxruntime's own exception types: e.g. a dynamic model that cannot take this size
            raise ModelError(f"{self.path}: onnxruntime failed on a {list(x.shape)} input ({reason(exc)})") from None
        return [outputs[i] for i in self.order]

    def close(self) -> None:
        self.session = None


def load(path: Path, meta: Optional[ModelMeta], threads: Optional[int],
         input_size: Optional[tuple[int, int]]) -> OnnxBackend:
    ort = import_runtime("onnxruntime", path, "onnx")
    options = ort.SessionOptions()
    # Fatal only: its warnings and errors would bypass our logging, and every error also raises, which `run` turns
    # into our one-line ModelError.
    options.log_severity_level = 4
    options.inter_op_num_threads = 1  # a single sequential graph: inter-op threads only add wake-ups
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types for unreadable models
        raise ModelError(f"{path}: not a loadable ONNX model ({reason(exc)})") from None
    dims = session.get_inputs()[0].shape
    if len(dims) != 4 or 3 not in (dims[1], dims[3]):
        raise ModelError(f"{path}: input shape {dims} is not an image batch [1,3,H,W] or [1,H,W,3]")
    nchw = dims[1] == 3
    hw = dims[2:4] if nchw else dims[1:3]
    names = [o.name for o in session.get_outputs()]
    if meta is not None:
        check_input_size(meta, hw, path)
        return OnnxBackend(meta, path, session, nchw, bundle_order(meta, names, path))
    size = static_size(hw, input_size, path)
    probe = OnnxBackend(ModelMeta(num_classes=0, input_size=size), path, session, nchw, list(range(len(names))))
    meta, order = bare_meta(path, "onnxruntime", size, probe.infer)
    return OnnxBackend(meta, path, session, nchw, order)
