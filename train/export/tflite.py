"""TFLite export without TensorFlow: litert-torch converts the split-head graph (NHWC in and out) to a
float model; ai-edge-quantizer makes it INT8 (int8 weights and activations, int8 input; the ops in FLOAT_SCOPES
and so the outputs stay float), with the activation ranges calibrated on real images.

Per-branch outputs matter here: one concatenated output would share one scale between box offsets and
probabilities and collapse INT8 accuracy. Scores above the calibration range saturate, so calibrate on
real images with confident detections.
"""

from __future__ import annotations

import contextlib
import io
import tempfile
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from edge_yolox.backends.tflite import dequantize, quantize
from edge_yolox.bundle import ModelMeta, write_bundle
from edge_yolox.errors import ModelError

from .calibration import DEFAULT_CALIB_N, check_request, load_calibration
from .graph import ExportGraph, check_image, torch_outputs

MODEL_NAME = "model.tflite"
FP32_TOLERANCE = 1e-2  # max |tflite - torch| on raw outputs; the float conversion lands near 1e-4
CALIB_METHODS = ("minmax", "mse")  # ai-edge-quantizer algorithms for activation ranges
# Ops left in float, matched on the module path litert-torch writes into tensor names: the stem and the first CSP
# stage (stride 2-4 maps: their outputs hold SiLU-off channels of range ~0.2 that the next BN-folded convs weight by
# up to 30, which one per-tensor scale cannot serve), and the 1x1 prediction convs with their output sigmoids (int8
# logits and a 1/256 obj step cost the low scores that AP ranks). Measured on YOLOX-Nano/coco128, 96 images
# (FP32 AP 0.333), with the calibration below: stem + dark2 float 0.317; also the prediction convs and sigmoids
# 0.328 (all INT8: 0.233). AP moves by about ±1 point between near-equal calibrations, so small gaps mean little.
FLOAT_SCOPES = r"_stem/|Sequential_dark2/|ExportGraph_wrapped/torch\.nn\.modules\.conv\.Conv2d_|serving_default_output"
INPUT_RANGE = (0.0, 255.0)  # pixel values: a scale of exactly 1 keeps the int8 input lossless


def _quiet():
    """litert-torch and the quantizer print progress of their own; keep our output readable."""
    return contextlib.redirect_stdout(io.StringIO())


def convert_float(module: nn.Module, input_size: tuple[int, int], path: Path) -> None:
    """Float .tflite of `module` with an NHWC float input (BGR 0-255) and NHWC outputs."""
    try:
        import litert_torch
    except ImportError:
        raise ModelError("TFLite export needs litert-torch: pip install litert-torch") from None
    n_out = len(module(torch.zeros(1, 3, *input_size)))
    nhwc = litert_torch.to_channel_last_io(module.eval(), args=[0], outputs=list(range(n_out))).eval()
    with _quiet():
        litert_torch.convert(nhwc, (torch.zeros(1, *input_size, 3),)).export(str(path))


def _interpreter(path: Path, threads: int = 1):
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(path), num_threads=threads)
    interpreter.allocate_tensors()
    return interpreter


def ordered_outputs(interpreter) -> list[dict]:
    """Output details in the order the torch module returned them (the signature's output_0, output_1, ...);
    the flatbuffer's own output order need not follow it."""
    details = interpreter.get_signature_runner().get_output_details()
    return [details[key] for key in sorted(details, key=lambda k: int(k.rsplit("_", 1)[1]))]


def run_tflite(interpreter, image: np.ndarray) -> list[np.ndarray]:
    """Float NHWC outputs in module order for one letterboxed H×W×3 uint8 image; (de)quantizes int8 I/O as the
    runtime does."""
    detail = interpreter.get_input_details()[0]
    interpreter.set_tensor(detail["index"], quantize(image[None].astype(np.float32), detail))
    interpreter.invoke()
    return [dequantize(interpreter.get_tensor(out["index"]), out) for out in ordered_outputs(interpreter)]


def quantize_int8(float_path: Path, out_path: Path, images: list[np.ndarray], method: str = "minmax",
                  float_scopes: Optional[str] = FLOAT_SCOPES, progress: bool = True) -> None:
    """Static INT8 (int8 weights and activations) calibrated on `images`; ops whose tensor names
    match `float_scopes` stay float (None: everything INT8, input included)."""
    try:
        from ai_edge_quantizer import quantizer, recipe
    except ImportError:
        raise ModelError("TFLite INT8 needs ai-edge-quantizer: pip install ai-edge-quantizer") from None
    from tqdm import tqdm

    algorithm = {"minmax": recipe.AlgorithmName.MIN_MAX_UNIFORM_QUANT, "mse": recipe.AlgorithmName.MSE}[method]
    interpreter = _interpreter(float_path)
    (name, spec), = interpreter.get_signature_list().items()
    input_name, input_tensor = spec["inputs"][0], interpreter.get_input_details()[0]["name"]
    samples = [{input_name: image[None].astype(np.float32)} for image in images]
    q = quantizer.Quantizer(str(float_path), recipe.static_wi8_ai8(algorithm))
    if float_scopes:  # a later scope wins over the catch-all one
        q.update_quantization_recipe(float_scopes, "*", algorithm_key=recipe.AlgorithmName.NO_QUANTIZE)
    with _quiet():
        ranges = calibrate(q, name, tqdm(samples, desc=f"calibration ({method})", unit="img", disable=not progress))
        ranges[input_tensor] = {**ranges[input_tensor], **{k: np.full_like(ranges[input_tensor][k], v)
                                                           for k, v in zip(("min", "max"), INPUT_RANGE)}}
        q.quantize(ranges).export_model(str(out_path), overwrite=True)


def calibrate(q, signature: str, samples) -> dict:
    """Activation ranges: the mean over images of each image's min and max. The quantizer's own merge is a moving
    average (weight 0.95 on the past) that follows the last ~20 images, so the image order changed the model."""
    per_image = []
    for sample in samples:
        with contextlib.redirect_stderr(io.StringIO()):  # its own progress bar, once per image
            per_image.append(q.calibrate({signature: [sample]}))
    ranges = {}
    for tensor, first in per_image[0].items():
        ranges[tensor] = dict(first)
        for key in ("min", "max"):
            if key in first:
                ranges[tensor][key] = np.mean([r[tensor][key] for r in per_image], axis=0).astype(np.float32)
    return ranges


def check_against_torch(module: nn.Module, path: Path, image: np.ndarray) -> float:
    """Max |tflite - torch| over all outputs on one letterboxed image (NHWC vs NCHW handled)."""
    got = run_tflite(_interpreter(path), image)
    return max(float(np.abs(g[0] - e[0].transpose(1, 2, 0)).max()) for g, e in zip(got, torch_outputs(module, image)))


def output_names(path: Path) -> list[str]:
    return [d["name"] for d in ordered_outputs(_interpreter(path))]


def export_tflite(
    model: nn.Module,
    out_dir: Union[str, Path],
    meta: ModelMeta,
    precision: str = "fp32",
    calib: Optional[Union[str, Path]] = None,
    calib_n: int = DEFAULT_CALIB_N,
    calib_method: str = "minmax",
    progress: bool = True,
) -> Path:
    """Write a TFLite bundle of the YOLOX `model`: split head (outputs in postprocess order), pixel_unshuffle stem."""
    check_request("TFLite", precision, ("fp32", "int8"), calib, calib_method, CALIB_METHODS)
    module = ExportGraph(model, "split", "unshuffle")
    images = load_calibration(calib, calib_n, meta.input_size, progress=progress) if calib is not None else []
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_NAME
    probe = images[0] if images else check_image(meta.input_size)
    extra: dict = {"input_layout": "nhwc"}
    with tempfile.TemporaryDirectory(prefix="edge-yolox-tflite-") as tmp:
        float_path = Path(tmp) / "float.tflite"
        convert_float(module, meta.input_size, float_path)
        diff = check_against_torch(module, float_path, probe)
        print(f"tflite float vs torch: max |diff| {diff:.2e}")
        if not diff <= FP32_TOLERANCE:
            raise ModelError(f"the TFLite conversion does not match torch (max |diff| {diff:.3g} > {FP32_TOLERANCE})")
        if precision == "int8":
            quantize_int8(float_path, path, images, calib_method, FLOAT_SCOPES, progress)
            extra["calibration"] = {"images": len(images), "method": calib_method, "folder": str(calib)}
            extra["float_scopes"] = FLOAT_SCOPES
        else:
            path.write_bytes(float_path.read_bytes())
    if precision == "int8":
        diff = check_against_torch(module, path, probe)
        print(f"tflite int8 vs torch: max |diff| {diff:.3g} (raw outputs)")
        extra["check_max_abs_diff"] = round(diff, 5)
    meta.layout, meta.outputs, meta.sigmoid_applied, meta.boxes_decoded = "split", output_names(path), True, False
    meta.precision, meta.backend = precision, "tflite"
    meta.extra = {**meta.extra, **extra}
    return write_bundle(out_dir, meta)
