"""ONNX export: split per-stride head by default (reg raw, obj/cls sigmoided in-graph), or the official single
[1, N, 5+C] tensor; simplified with onnxslim; checked against torch with onnxruntime before the bundle is written.

Uses the TorchScript-based exporter (dynamo=False): it is deterministic, needs no extra packages on torch 2.13, and
gives the plain Conv/Sigmoid/Resize/Concat graph that onnxruntime and ncnn/pnnx read. Opset 13 by default.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Optional, Union

import numpy as np
import torch

from edge_yolox.bundle import ModelMeta, write_bundle
from edge_yolox.errors import ModelError
from edge_yolox.preprocess import to_nchw

from ..models import YOLOX
from .graph import INPUT_NAME, ExportGraph, check_image, torch_outputs

MODEL_NAME = "model.onnx"
DEFAULT_OPSET = 13
TOLERANCE = 2e-3  # max |onnxruntime - torch| on raw outputs; float32 exports land near 1e-4


def _dynamic_axes(names: list[str], layout: str) -> dict[str, dict[int, str]]:
    axes = {INPUT_NAME: {2: "height", 3: "width"}}
    for name in names:
        axes[name] = {2: f"{name}_h", 3: f"{name}_w"} if layout == "split" else {1: "anchors"}
    return axes


def write_onnx(graph: ExportGraph, path: Path, input_size: tuple[int, int], opset: int, dynamic: bool) -> None:
    """Trace `graph` to ONNX at `path`, then simplify it in place with onnxslim."""
    import onnx
    import onnxslim

    names = graph.output_names()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation and tracer notices
        torch.onnx.export(graph, (torch.zeros(1, 3, *input_size),), str(path), dynamo=False, opset_version=opset,
                          input_names=[INPUT_NAME], output_names=names,
                          dynamic_axes=_dynamic_axes(names, graph.layout) if dynamic else None)
    onnx.save(onnxslim.slim(str(path)), str(path))


def check_onnx(graph: ExportGraph, path: Path, image: np.ndarray) -> float:
    """Max |onnxruntime - torch| over all outputs for one letterboxed HWC uint8 BGR image."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(graph.output_names(), {INPUT_NAME: to_nchw(image)})
    return max(float(np.abs(g - e).max()) for g, e in zip(got, torch_outputs(graph, image)))


def export_onnx(model: YOLOX, out_dir: Union[str, Path], meta: ModelMeta, *, layout: str = "split",
                opset: int = DEFAULT_OPSET, dynamic: bool = False, stem: str = "slice",
                image: Optional[np.ndarray] = None) -> Path:
    """Write an ONNX bundle of `model` to `out_dir` and return it.

    `meta` carries class names, input size, strides and variant; layout, outputs, conventions and the check result
    are filled in here. `image`: a letterboxed HWC uint8 BGR image of meta.input_size for the self-check.
    """
    graph = ExportGraph(model, layout, stem)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / MODEL_NAME
    write_onnx(graph, path, tuple(meta.input_size), opset, dynamic)
    diff = check_onnx(graph, path, check_image(meta.input_size) if image is None else image)
    print(f"onnxruntime vs torch: max |diff| {diff:.2e} over {len(graph.output_names())} output(s)")
    if not diff <= TOLERANCE:
        path.unlink()
        raise ModelError(f"the ONNX export does not match torch (max |diff| {diff:.3g} > {TOLERANCE})")
    meta.layout, meta.outputs = layout, graph.output_names()
    meta.sigmoid_applied, meta.boxes_decoded = True, False
    meta.precision, meta.backend = "fp32", "onnxruntime"
    meta.extra = {**meta.extra, "opset": opset, "dynamic": dynamic, "stem": stem, "check_max_abs_diff": diff}
    return write_bundle(out_dir, meta)
