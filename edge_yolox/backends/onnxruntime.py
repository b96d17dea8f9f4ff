"""onnxruntime backend: intra-op threads from the board config, the execution provider from
`model.options.onnxruntime.provider`.

`auto` takes the best one the installed onnxruntime offers: TensorRT (JetPack's onnxruntime-gpu), then CUDA, then
the CPU. The CPU is always listed last, so a model or node the GPU providers refuse still runs; a provider that
is asked for but not installed costs one log line, not a failure (a board file can ask for it safely).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Optional

import numpy as np

from edge_yolox import schema
from edge_yolox.backends.base import Backend, bundle_order, check_input_size, import_runtime, static_size
from edge_yolox.backends.probe import bare_meta
from edge_yolox.bundle import ModelMeta
from edge_yolox.errors import ModelError, reason

log = logging.getLogger(__name__)
# Best first: `auto` tries them all, a named one itself and those after it.
PROVIDERS = {"tensorrt": "TensorrtExecutionProvider", "cuda": "CUDAExecutionProvider", "cpu": "CPUExecutionProvider"}
OPTIONS = {"provider": schema.Choice("auto", "auto", *PROVIDERS)}


class OnnxBackend(Backend):
    name = "onnxruntime"

    def __init__(self, meta: ModelMeta, path: Path, session, nchw: bool, order: list[int]):
        super().__init__(meta, path)
        self.session = session
        self.nchw = nchw
        self.order = order
        self.input_name = session.get_inputs()[0].name
        self.device = session.get_providers()[0]  # what onnxruntime actually uses, not what was asked for

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        try:
            outputs = self.session.run(None, {self.input_name: x})
        except Exception as exc:  # onnxruntime's own exception types: e.g. a dynamic model that cannot take this size
            raise ModelError(f"{self.path}: onnxruntime failed on a {list(x.shape)} input ({reason(exc)})") from None
        return [outputs[i] for i in self.order]

    def close(self) -> None:
        self.session = None


def engine_cache() -> Path:
    """Where TensorRT keeps its built engines: the service's state directory (the first start builds them, later
    starts load them), else the user's cache."""
    state = os.environ.get("STATE_DIRECTORY", "").split(":")[0]  # systemd lists one per StateDirectory= entry
    return Path(state) / "trt" if state else Path.home() / ".cache" / "edge-yolox" / "trt"


def select_providers(requested: str, available: list[str], precision: Optional[str],
                     cache: Path) -> list[tuple[str, dict]]:
    """(provider, its options) to hand onnxruntime, best first: `requested` ("auto": the best) and those after it
    that are installed, the CPU always last."""
    names = list(PROVIDERS)
    start = 0 if requested == "auto" else names.index(requested)
    chosen = [PROVIDERS[n] for n in names[start:] if PROVIDERS[n] in available or n == "cpu"]
    trt = {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache)}
    if precision == "int8":  # the QDQ ONNX carries the scales; INT8 kernels only for models quantised for them
        trt["trt_int8_enable"] = True
    return [(p, trt if p == PROVIDERS["tensorrt"] else {}) for p in chosen]


def load(path: Path, meta: Optional[ModelMeta], threads: Optional[int], input_size: Optional[tuple[int, int]], *,
         provider: str) -> OnnxBackend:
    ort = import_runtime("onnxruntime", path, "onnx")
    available, cache = ort.get_available_providers(), engine_cache()
    providers = select_providers(provider, available, meta.precision if meta else None, cache)
    if provider != "auto" and PROVIDERS[provider] not in available:
        log.warning("%s: onnxruntime provider %s is not installed here (available: %s), using %s instead", path,
                    PROVIDERS[provider], ", ".join(available), providers[0][0])
    if providers[0][0] == PROVIDERS["tensorrt"]:
        try:  # TensorRT creates only the last level of its cache path
            cache.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ModelError(f"{path}: cannot create the TensorRT engine cache {cache} ({reason(exc)})") from None
    options = ort.SessionOptions()
    # Fatal only: its warnings and errors would bypass our logging, and every error also raises, which `run` turns
    # into our one-line ModelError.
    options.log_severity_level = 4
    options.inter_op_num_threads = 1  # a single sequential graph: inter-op threads only add wake-ups
    if threads:
        options.intra_op_num_threads = int(threads)
    try:
        session = ort.InferenceSession(str(path), options, providers=[p for p, _ in providers],
                                       provider_options=[o for _, o in providers])
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
