"""The export formats in one place: each format's precisions, INT8 calibration methods and writer, for
`edge-yolox export` and `edge-yolox quantize-report` alike. Writers are imported when called: they need torch
and their converters."""

from __future__ import annotations

from pathlib import Path

PRECISIONS = {"onnx": ("fp32",), "ncnn": ("fp32", "fp16", "int8"), "tflite": ("fp32", "int8"),
              "openvino": ("fp32", "fp16", "int8")}
FORMATS = tuple(PRECISIONS)


def calib_methods() -> dict[str, tuple[str, ...]]:
    """The activation-range methods each format's INT8 calibration takes (defaults first)."""
    from .int8_ncnn import CALIB_METHODS as NCNN
    from .openvino import CALIB_METHODS as OPENVINO
    from .tflite import CALIB_METHODS as TFLITE

    return {"ncnn": NCNN, "tflite": TFLITE, "openvino": OPENVINO}


def export_bundle(fmt: str, model, out_dir: Path, meta, **options) -> Path:
    """Write `model` as a `fmt` bundle in `out_dir`; `options` are that format's writer keywords (onnx: layout,
    opset, dynamic, stem; ncnn, tflite and openvino: precision, calib, calib_n, calib_method, progress; ncnn also
    threads). An end-to-end model's bundle records `nms: false` (its scores already include the selector)."""
    from ..models import needs_nms

    meta.nms = needs_nms(model)
    if fmt == "onnx":
        from .onnx import export_onnx as write
    elif fmt == "ncnn":
        from .ncnn import export_ncnn as write
    elif fmt == "tflite":
        from .tflite import export_tflite as write
    elif fmt == "openvino":
        from .openvino import export_openvino as write
    else:
        raise ValueError(f"export format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    return write(model, out_dir, meta, **options)
