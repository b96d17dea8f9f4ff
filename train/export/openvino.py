"""OpenVINO export: the split-head ONNX graph (onnx.write_onnx) converted to an IR (model.xml + model.bin) with
`openvino.convert_model`; fp16 stores the weights in fp16 (`compress_to_fp16`; the runtime computes in f32 unless
told otherwise), INT8 is NNCF post-training quantization calibrated on real images.

NNCF inserts FakeQuantize pairs on the inputs of convolutions; the ops matching IGNORED_PATTERNS stay float, for the
reasons the NCNN and TFLite exporters keep them: the stem and the first CSP stage (channels of small range that
the next BN-folded convs weight heavily, which one per-tensor activation scale cannot serve) and the nine 1x1
prediction convs (int8 logits cost the low scores that AP ranks).
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Optional, Union

import numpy as np
from torch import nn

from edge_yolox.bundle import ModelMeta, write_bundle
from edge_yolox.errors import ModelError
from edge_yolox.preprocess import to_nchw

from .calibration import DEFAULT_CALIB_N, check_request, load_calibration
from .graph import INPUT_NAME, ExportGraph, check_image, torch_outputs
from .onnx import DEFAULT_OPSET, write_onnx

XML_NAME = "model.xml"  # save_model writes model.bin beside it
FP32_TOLERANCE = 1e-2  # max |openvino - torch| on raw outputs; the f32 conversion lands near 1e-4
# NNCF presets: symmetric (default: as accurate here, and faster) or asymmetric activation ranges
CALIB_METHODS = ("performance", "mixed")
# OpenVINO op names come from the ONNX export's node names (module paths)
IGNORED_PATTERNS = (r".*/stem/.*", r".*/dark2/.*", r".*_preds\.\d+/.*")


def run_openvino(model, image: np.ndarray) -> list[np.ndarray]:
    """Outputs of an ov.Model (compiled for the CPU in f32) on one letterboxed H×W×3 uint8 BGR image."""
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(to_nchw(image))
    return [result[out] for out in compiled.outputs]


def check_against_torch(module: nn.Module, model, image: np.ndarray) -> float:
    """Max |openvino - torch| over all outputs on one letterboxed image."""
    return max(float(np.abs(g - e).max()) for g, e in zip(run_openvino(model, image), torch_outputs(module, image)))


def quantize_int8(model, images: list[np.ndarray], preset: str, ignored: tuple[str, ...] = IGNORED_PATTERNS):
    """The INT8 ov.Model of `model`: NNCF post-training quantization calibrated on `images` (all of them), the ops
    matching `ignored` kept float."""
    try:
        import nncf
    except ImportError:
        raise ModelError("OpenVINO INT8 needs NNCF: pip install nncf") from None

    nncf_log = logging.getLogger("nncf")
    level = nncf_log.level
    nncf_log.setLevel(logging.WARNING)  # an INFO line per op it leaves float
    try:
        return nncf.quantize(model, nncf.Dataset(images, to_nchw), subset_size=len(images),
                             preset=nncf.QuantizationPreset(preset),
                             ignored_scope=nncf.IgnoredScope(patterns=list(ignored), validate=False))
    finally:
        nncf_log.setLevel(level)


def export_openvino(model: nn.Module, out_dir: Union[str, Path], meta: ModelMeta, precision: str = "fp32",
                    calib: Optional[Union[str, Path]] = None, calib_n: int = DEFAULT_CALIB_N,
                    calib_method: str = "performance", progress: bool = True) -> Path:
    """Write an OpenVINO IR bundle of the YOLOX `model`: split head, outputs in postprocess order."""
    check_request("OpenVINO", precision, ("fp32", "fp16", "int8"), calib, calib_method, CALIB_METHODS)
    try:
        import openvino as ov
    except ImportError:
        raise ModelError("OpenVINO export needs openvino: pip install openvino") from None
    module = ExportGraph(model, "split", "slice")
    images = load_calibration(calib, calib_n, meta.input_size, progress=progress) if calib is not None else []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    probe = images[0] if images else check_image(meta.input_size)
    extra: dict = {"input": INPUT_NAME}
    with tempfile.TemporaryDirectory(prefix="edge-yolox-openvino-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        write_onnx(module, onnx_path, tuple(meta.input_size), DEFAULT_OPSET, dynamic=False)
        converted = ov.convert_model(onnx_path)
    diff = check_against_torch(module, converted, probe)
    print(f"openvino fp32 vs torch: max |diff| {diff:.2e}")
    if not diff <= FP32_TOLERANCE:
        raise ModelError(f"the OpenVINO conversion does not match torch (max |diff| {diff:.3g} > {FP32_TOLERANCE})")
    if precision == "int8":
        converted = quantize_int8(converted, images, calib_method)
        extra["calibration"] = {"images": len(images), "method": calib_method, "folder": str(calib)}
        extra["float_scopes"] = list(IGNORED_PATTERNS)
    ov.save_model(converted, out_dir / XML_NAME, compress_to_fp16=precision == "fp16")
    if precision != "fp32":
        diff = check_against_torch(module, ov.Core().read_model(out_dir / XML_NAME), probe)
        print(f"openvino {precision} vs torch: max |diff| {diff:.3g} (raw outputs)")
        extra["check_max_abs_diff"] = round(diff, 5)
    meta.layout, meta.outputs = "split", module.output_names()
    meta.sigmoid_applied, meta.boxes_decoded = True, False
    meta.precision, meta.backend = precision, "openvino"
    meta.extra = {**meta.extra, **extra}
    return write_bundle(out_dir, meta)
