"""OpenVINO backend: reads our ONNX export or an IR (.xml + .bin) bundle; the device from
`model.options.openvino.device`, threads from the board, a latency hint.

The floating-point precision is pinned (`precision`, default f32): left alone, OpenVINO computes in bf16 on CPUs
that have it, which moved YOLOX's raw box outputs by 0.5. INT8 IR bundles still run their quantized layers in INT8.
A device that is asked for but not present here (GPU, NPU) costs one log line and the model runs on the CPU (a
board file can ask for it safely); `device` reports where it actually runs.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Optional

import numpy as np

from edge_yolox import schema
from edge_yolox.backends.base import Backend, bundle_order, check_input_size, import_runtime, static_size
from edge_yolox.backends.probe import bare_meta
from edge_yolox.bundle import ModelMeta
from edge_yolox.errors import ModelError, reason

log = logging.getLogger(__name__)
DEVICES = ("CPU", "GPU", "NPU", "AUTO")
# device: where to compile the model (AUTO: OpenVINO picks); precision: the INFERENCE_PRECISION_HINT
OPTIONS = {"device": schema.Choice("CPU", *DEVICES), "precision": schema.Choice("f32", "f32", "f16", "bf16")}


class OpenVinoBackend(Backend):
    name = "openvino"

    def __init__(self, meta: ModelMeta, path: Path, compiled, order: list[int]):
        super().__init__(meta, path)
        self.compiled = compiled
        self.request = compiled.create_infer_request()
        self.order = order
        self.device = ", ".join(compiled.get_property("EXECUTION_DEVICES"))  # AUTO's choice, not "AUTO"

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        try:
            self.request.infer({0: x})
        except Exception as exc:  # OpenVINO raises RuntimeError subclasses of its own
            raise ModelError(f"{self.path}: OpenVINO failed on a {list(x.shape)} input ({ov_reason(exc)})") from None
        # copies: the request reuses its output buffers on the next inference
        return [self.request.get_output_tensor(i).data.copy() for i in self.order]

    def close(self) -> None:
        self.request = self.compiled = None


def ov_reason(exc: BaseException) -> str:
    """OpenVINO's messages start with the C++ source line that threw; what went wrong is the last line."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    return reason(RuntimeError(lines[-1])) if lines else reason(exc)


def pick_device(requested: str, available: list[str], path: Path) -> str:
    """`requested` when OpenVINO has it here (AUTO always), else the CPU with one log line."""
    if requested == "AUTO" or any(d.split(".")[0] == requested for d in available):
        return requested
    log.warning("%s: OpenVINO device %s is not present here (available: %s), using CPU instead", path, requested,
                ", ".join(available))
    return "CPU"


def load(path: Path, meta: Optional[ModelMeta], threads: Optional[int], input_size: Optional[tuple[int, int]], *,
         device: str, precision: str) -> OpenVinoBackend:
    ov = import_runtime("openvino", path, "openvino")
    core = ov.Core()
    try:
        model = core.read_model(str(path))  # an .xml finds its .bin beside it
    except Exception as exc:  # OpenVINO's own exception types for unreadable models
        raise ModelError(f"{path}: not a loadable OpenVINO/ONNX model ({ov_reason(exc)})") from None
    if len(model.inputs) != 1 or model.inputs[0].partial_shape.rank.get_length() != 4:
        raise ModelError(f"{path}: expects one image input [1,3,H,W], the model has {len(model.inputs)} input(s) "
                         f"{[str(i.partial_shape) for i in model.inputs]}")
    dims = [d.get_length() if d.is_static else None for d in model.inputs[0].partial_shape]
    if dims[1] != 3:
        raise ModelError(f"{path}: input shape {dims} is not an image batch [1,3,H,W]")
    if meta is not None:
        check_input_size(meta, dims[2:], path)
        size = tuple(meta.input_size)
    else:
        size = static_size(dims[2:], input_size, path)
    if model.inputs[0].partial_shape.is_dynamic:
        model.reshape({0: [1, 3, *size]})
    device = pick_device(device, core.available_devices, path)
    config = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": precision}
    if threads and device == "CPU":  # the other devices take no thread count
        config["INFERENCE_NUM_THREADS"] = int(threads)
    try:
        compiled = core.compile_model(model, device, config)
    except Exception as exc:
        raise ModelError(f"{path}: OpenVINO cannot compile the model for {device} ({ov_reason(exc)})") from None
    names = [o.get_any_name() for o in model.outputs]
    if meta is not None:
        return OpenVinoBackend(meta, path, compiled, bundle_order(meta, names, path))
    probe = OpenVinoBackend(ModelMeta(num_classes=0, input_size=size), path, compiled, list(range(len(names))))
    meta, order = bare_meta(path, "openvino", size, probe.infer)
    return OpenVinoBackend(meta, path, compiled, order)
