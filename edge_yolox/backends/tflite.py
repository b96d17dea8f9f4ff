"""TFLite backend through ai-edge-litert (falling back to tflite-runtime), with XNNPACK and threads.

Handles float and quantized (int8/uint8) inputs and outputs: quantized tensors are converted with each
tensor's own scale and zero point, which is why split-head exports keep box and score maps apart.
"""

from __future__ import annotations

import importlib
import logging
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edge_yolox.backends.base import Backend, check_input_size, static_size
from edge_yolox.backends.probe import bare_meta, infer_head
from edge_yolox.bundle import ModelMeta
from edge_yolox.errors import ModelError, reason

log = logging.getLogger(__name__)
OPTIONS = {"xnnpack": True}  # LiteRT's default CPU delegate; off: the plain built-in kernels


def interpreter_module():
    """The Interpreter module of whichever TFLite runtime is installed."""
    for name in ("ai_edge_litert.interpreter", "tflite_runtime.interpreter"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ImportError("neither ai-edge-litert nor tflite-runtime is installed")


class TfliteBackend(Backend):
    name = "tflite"

    def __init__(self, meta: ModelMeta, path: Path, interpreter, nchw: bool, order: list[int]):
        super().__init__(meta, path)
        self.interpreter = interpreter
        self.nchw = nchw
        self.input = interpreter.get_input_details()[0]
        self.outputs = [interpreter.get_output_details()[i] for i in order]

    def prepare(self, image: np.ndarray) -> np.ndarray:
        identity = self.meta.preprocess.is_identity and not self.nchw
        if identity and (levels := pixel_levels(image, self.input)) is not None:
            self.check_size(image)
            return levels
        return quantize(super().prepare(image), self.input)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        self.interpreter.set_tensor(self.input["index"], x)
        self.interpreter.invoke()
        return [dequantize(self.interpreter.get_tensor(d["index"]), d) for d in self.outputs]

    def close(self) -> None:
        self.interpreter = None


def pixel_levels(image: np.ndarray, detail: dict) -> Optional[np.ndarray]:
    """The input's integer levels straight from uint8 pixels, when they are the pixels shifted (scale 1, as
    our INT8 exporter writes): a ~0.02 ms bit flip instead of a ~5 ms float round trip. None otherwise."""
    scale, zero = detail["quantization"]
    if scale != 1.0:
        return None
    if detail["dtype"] == np.uint8 and zero == 0:
        return image[None]
    if detail["dtype"] == np.int8 and zero == -128:
        return (image[None] ^ np.uint8(0x80)).view(np.int8)  # p - 128 in two's complement
    return None


def quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """Float values -> the tensor's integers by its own scale and zero point (float tensors pass through).
    Also the TFLite exporter's, so its self-check feeds a model exactly as the runtime does."""
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero), info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, detail: dict) -> np.ndarray:
    """The tensor's integers -> float values (float tensors pass through)."""
    if q.dtype == np.float32:
        return q
    scale, zero = detail["quantization"]
    return (q.astype(np.float32) - zero) * np.float32(scale)


def load(path: Path, meta: Optional[ModelMeta], threads: Optional[int], input_size: Optional[tuple[int, int]], *,
         xnnpack: bool) -> TfliteBackend:
    try:
        tfl = interpreter_module()
    except ImportError as exc:
        raise ModelError(f"{path}: {exc}; install it with: pip install 'edge-yolox[tflite]'") from None
    kwargs: dict[str, Any] = {"model_path": str(path), "num_threads": int(threads) if threads else None}
    if not xnnpack:  # XNNPACK is LiteRT's default CPU delegate; this resolver leaves it out
        kwargs["experimental_op_resolver_type"] = tfl.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    try:
        interpreter = tfl.Interpreter(**kwargs)
        interpreter.allocate_tensors()
    except (ValueError, RuntimeError) as exc:
        raise ModelError(f"{path}: not a loadable TFLite model ({reason(exc)})") from None
    dims = [int(d) for d in interpreter.get_input_details()[0]["shape"]]
    if len(dims) != 4 or 3 not in (dims[1], dims[3]):
        raise ModelError(f"{path}: input shape {dims} is not an image batch [1,H,W,3] or [1,3,H,W]")
    nchw = dims[1] == 3 and dims[3] != 3
    hw = dims[2:4] if nchw else dims[1:3]
    details = interpreter.get_output_details()
    if meta is not None:
        check_input_size(meta, hw, path)
        names = [d["name"] for d in details]
        order = [names.index(n) for n in meta.outputs] if meta.outputs and set(meta.outputs) <= set(names) \
            else _order_by_shape(meta, details, path)
        return TfliteBackend(meta, path, interpreter, nchw, order)
    size = static_size(hw, input_size, path)
    probe = TfliteBackend(ModelMeta(num_classes=0, input_size=size), path, interpreter, nchw,
                          list(range(len(details))))
    meta, order = bare_meta(path, "tflite", size, probe.infer)
    return TfliteBackend(meta, path, interpreter, nchw, order)


def _order_by_shape(meta: ModelMeta, details: list[dict], path: Path) -> list[int]:
    """TFLite converters rename outputs; a bundle's names may not survive, its shapes always do."""
    _, _, order = infer_head([list(d["shape"]) for d in details], meta.input_size, meta.strides, path)
    return order
