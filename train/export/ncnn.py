"""NCNN export: pnnx converts the split-head graph to an fp32 NCNN model; fp16 and INT8 are written from it.

The graph is graph.ExportGraph with the split head and the pixel_unshuffle stem (pnnx rejects Focus's step-2
slices; pixel_unshuffle becomes ncnn's Reorg). Weights are converted as fp32: pnnx's default fp16 weights on the
0-255 input move the stem's outputs by whole units.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch
from torch import nn

from edge_yolox.bundle import ModelMeta, write_bundle
from edge_yolox.errors import ModelError

from . import int8_ncnn
from .calibration import DEFAULT_CALIB_N, check_request, load_calibration
from .graph import INPUT_NAME, ExportGraph, check_image, split_output_names, torch_outputs

PARAM_NAME, BIN_NAME = "model.ncnn.param", "model.ncnn.bin"
FP32_TOLERANCE = 1e-2  # max |ncnn - torch| on raw outputs; fp32 conversions land near 1e-4


def run_pnnx(module: nn.Module, sample: torch.Tensor, workdir: Path) -> tuple[Path, Path]:
    """Trace `module` and convert it with the pnnx executable (fp32 weights); returns (param, bin)."""
    try:
        import pnnx
    except ImportError:
        raise ModelError("NCNN export needs pnnx: pip install pnnx") from None
    traced = workdir / "model.pt"
    with torch.no_grad():
        torch.jit.trace(module, sample, check_trace=False).save(str(traced))
    shape = ",".join(str(d) for d in sample.shape)
    outs = {k: workdir / f"model.{k}" for k in ("ncnnparam", "ncnnbin", "pnnxparam", "pnnxbin", "pnnxpy",
                                                  "pnnxonnx", "ncnnpy")}
    command = [pnnx.EXEC_PATH, str(traced), f"inputshape=[{shape}]f32", "fp16=0", "device=cpu",
               *(f"{k}={v}" for k, v in outs.items())]
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True)
    param, bin_ = outs["ncnnparam"], outs["ncnnbin"]
    if result.returncode != 0 or not param.is_file() or not bin_.is_file():
        tail = "\n".join((result.stdout + result.stderr).strip().split("\n")[-15:])
        raise ModelError(f"pnnx failed to convert the model (exit {result.returncode}):\n{tail}")
    return param, bin_


def rename_blobs(model: int8_ncnn.NcnnModel, names: dict[str, str]) -> None:
    for layer in model.layers:
        layer.bottoms = [names.get(b, b) for b in layer.bottoms]
        layer.tops = [names.get(t, t) for t in layer.tops]


def convert_fp32(module: nn.Module, input_size: tuple[int, int], outputs: list[str], workdir: Path
                 ) -> int8_ncnn.NcnnModel:
    """The fp32 NCNN model of `module` (split-head outputs), with input/output blobs named for the bundle."""
    sample = torch.zeros(1, 3, *input_size)
    param, bin_ = run_pnnx(module, sample, workdir)
    model = int8_ncnn.read_ncnn(param, bin_)
    got = model.output_blobs()
    if len(got) != len(outputs):
        raise ModelError(f"pnnx produced {len(got)} outputs, expected {len(outputs)} ({', '.join(outputs)})")
    # pnnx names the input in0 and the outputs out0, out1, ... in the order the module returns them
    names = {"in0": INPUT_NAME, **{f"out{i}": name for i, name in enumerate(outputs)}}
    rename_blobs(model, names)
    return model


def check_against_torch(module: nn.Module, param: Path, bin_: Path, image: np.ndarray, outputs: list[str],
                        int8: bool = False) -> float:
    """Max |ncnn - torch| over all outputs on one letterboxed image."""
    got = int8_ncnn.run_outputs(param, bin_, image, outputs, int8=int8)
    return max(float(np.abs(g - e[0]).max()) for g, e in zip(got, torch_outputs(module, image)))


def export_ncnn(
    model: nn.Module,
    out_dir: Union[str, Path],
    meta: ModelMeta,
    precision: str = "fp32",
    calib: Optional[Union[str, Path]] = None,
    calib_n: int = DEFAULT_CALIB_N,
    calib_method: str = "kl",
    keep_fp32: Union[str, Iterable[str]] = "auto",
    threads: int = 2,
    progress: bool = True,
) -> Path:
    """Write an NCNN bundle of the YOLOX `model` to `out_dir`.

    `meta` carries the class names, input size, strides and variant; precision, backend, layout, outputs
    and calibration details are filled in here.
    """
    check_request("NCNN", precision, ("fp32", "fp16", "int8"), calib, calib_method, int8_ncnn.CALIB_METHODS)
    module = ExportGraph(model, "split", "unshuffle")
    out_dir = Path(out_dir)
    outputs = split_output_names(meta.strides)
    images = load_calibration(calib, calib_n, meta.input_size, progress=progress) if calib is not None else []
    out_dir.mkdir(parents=True, exist_ok=True)
    param, bin_ = out_dir / PARAM_NAME, out_dir / BIN_NAME
    extra: dict = {"input": INPUT_NAME}
    with tempfile.TemporaryDirectory(prefix="edge-yolox-ncnn-") as tmp:
        work = Path(tmp)
        ncnn_model = convert_fp32(module, meta.input_size, outputs, work)
        fp32_param, fp32_bin = work / PARAM_NAME, work / BIN_NAME
        int8_ncnn.write_ncnn(ncnn_model, fp32_param, fp32_bin)
        probe = images[0] if images else check_image(meta.input_size)
        diff = check_against_torch(module, fp32_param, fp32_bin, probe, outputs)
        print(f"ncnn fp32 vs torch: max |diff| {diff:.2e}")
        if not diff <= FP32_TOLERANCE:
            raise ModelError(f"the NCNN conversion does not match torch (max |diff| {diff:.3g} > {FP32_TOLERANCE})")
        if precision == "int8":
            result = int8_ncnn.quantize_ncnn(fp32_param, fp32_bin, param, bin_, images, calib_method, keep_fp32,
                                             threads, progress)
            extra["calibration"] = {"images": len(images), "method": calib_method, "folder": str(calib)}
            extra["int8_layers"] = len(result.quantized)
            extra["fp32_layers"] = result.fp32_layers
        elif precision == "fp16":
            # the stem stays fp32: it sees 0-255 pixels, where fp16 weights cost whole units
            stem = {layer.name for layer in ncnn_model.layers if layer.bottoms and layer.bottoms[0] == INPUT_NAME}
            for layer in ncnn_model.layers:
                layer.fp16 = layer.weight is not None and layer.name not in stem
            int8_ncnn.write_ncnn(ncnn_model, param, bin_)
            extra["fp32_layers"] = sorted(stem)
        else:
            shutil.copyfile(fp32_param, param)
            shutil.copyfile(fp32_bin, bin_)
    if precision != "fp32":
        diff = check_against_torch(module, param, bin_, probe, outputs, int8=precision == "int8")
        print(f"ncnn {precision} vs torch: max |diff| {diff:.3g} (raw outputs)")
        extra["check_max_abs_diff"] = round(diff, 5)
    meta.layout, meta.outputs, meta.sigmoid_applied, meta.boxes_decoded = "split", outputs, True, False
    meta.precision, meta.backend = precision, "ncnn"
    meta.extra = {**meta.extra, **extra}
    return write_bundle(out_dir, meta)

