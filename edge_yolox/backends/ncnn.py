"""ncnn backend (Python binding): threads from the board config, fp16/int8/gpu from `model.options.ncnn`.

With `gpu` ≥ 0 the model runs on that Vulkan device (fp16 where the device supports it), after a warm-up
inference that compiles its pipelines; with no such device, or when the model fails on it, it runs on the CPU
and one log line says why (a board file can ask for the GPU safely).

Third-party YOLOX exports (the official ncnn demo's layout, used by most Pi projects) contain the custom
layer `YoloV5Focus`, which stock ncnn lacks. We rewrite it in memory to standard layers: `Reorg` (mode 1
gives the space-to-depth groups top-left, top-right, bottom-left, bottom-right), a `Slice` into those four
groups and a `Concat` in the YOLOX order top-left, bottom-left, top-right, bottom-right. This runs in C++
at full speed, unlike a Python custom layer.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Optional

import numpy as np

from edge_yolox.backends.base import Backend, check_input_size, check_outputs, import_runtime, static_size
from edge_yolox.backends.ncnn_param import Layer, input_layer, open_net, output_blobs, read_param
from edge_yolox.backends.probe import bare_meta
from edge_yolox.backends.vulkan import Device, devices
from edge_yolox.bundle import ModelMeta
from edge_yolox.errors import ModelError

log = logging.getLogger(__name__)
# fp16 storage/arithmetic; int8 inference for int8 models; the Vulkan device to run on (-1: the CPU)
OPTIONS = {"fp16": False, "int8": True, "gpu": -1}


class NcnnBackend(Backend):
    name = "ncnn"

    def __init__(self, meta: ModelMeta, path: Path, net, ncnn, input_blob: str, outputs: list[str]):
        super().__init__(meta, path)
        self.net = net
        self.ncnn = ncnn
        self.input_blob = input_blob
        self.outputs = outputs

    def prepare(self, image: np.ndarray) -> np.ndarray:
        return super().prepare(image)[0]  # ncnn takes C×H×W, no batch axis

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        # ncnn.Mat wraps the numpy memory without copying: the caller keeps `x` alive until extract returns.
        with self.net.create_extractor() as ex:
            ex.input(self.input_blob, self.ncnn.Mat(x))
            results = []
            for name in self.outputs:
                ret, mat = ex.extract(name)
                if ret != 0:
                    raise ModelError(f"{self.path}: ncnn failed to compute blob {name!r} (error {ret})")
                results.append(np.array(mat))  # a copy: the Mat dies with the extractor
        return results

    def close(self) -> None:
        self.net.clear()


def rewrite_focus(layers: list[Layer]) -> tuple[list[Layer], int]:
    """Replace YoloV5Focus layers with Reorg + Slice + Concat; returns the layers and the added blob count."""
    out, added = [], 0
    for layer in layers:
        if layer.type != "YoloV5Focus":
            out.append(layer)
            continue
        name, src, dst = layer.name, layer.bottoms[0], layer.tops[0]
        groups = [f"{name}_tl", f"{name}_tr", f"{name}_bl", f"{name}_br"]
        out += [
            Layer("Reorg", f"{name}_reorg", [src], [f"{name}_s2d"], {"0": "2", "1": "1"}),
            Layer("Slice", f"{name}_slice", [f"{name}_s2d"], groups, {"-23300": "4,-233,-233,-233,-233", "1": "0"}),
            Layer("Concat", name, [groups[0], groups[2], groups[1], groups[3]], [dst], {"0": "0"}),
        ]
        added += 5
    return out, added


def load(path: Path, meta: Optional[ModelMeta], threads: Optional[int], input_size: Optional[tuple[int, int]], *,
         fp16: bool, int8: bool, gpu: int) -> NcnnBackend:
    ncnn = import_runtime("ncnn", path, "ncnn")
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise ModelError(f"{weights}: missing (an ncnn model is a .param and a .bin)")
    layers, added = rewrite_focus(read_param(path))
    if added:
        log.info("%s: rewrote the custom YoloV5Focus layer to Reorg + Slice + Concat", path)
    build = functools.partial(_build, ncnn, path, meta, input_size, layers, threads, fp16, int8)
    device = _device(ncnn, gpu, path)
    if device is not None:
        try:
            return _warmed(build(device))
        except ModelError as exc:
            log.warning("%s: fails on Vulkan device %d, running on the CPU: %s", path, device.index, exc)
    return build(None)


def _device(ncnn, gpu: int, path: Path) -> Optional[Device]:
    """Vulkan device `gpu`, or None for the CPU (logging why when a device was asked for)."""
    if gpu < 0:
        return None
    found = devices(ncnn)
    if gpu < len(found):
        return found[gpu]
    have = ", ".join(d.summary() for d in found) or "ncnn finds none: no Vulkan driver or GPU"
    log.warning("%s: no Vulkan device %d (%s), running on the CPU", path, gpu, have)
    return None


def _warmed(backend: NcnnBackend) -> NcnnBackend:
    """Run once on a gray frame: compiles the GPU pipelines now, and a model the device breaks fails here."""
    try:
        check_outputs(backend.infer(np.full((*backend.meta.input_size, 3), 114, np.uint8)), backend.path)
    except ModelError:
        backend.close()
        raise
    return backend


def _build(ncnn, path: Path, meta: Optional[ModelMeta], input_size: Optional[tuple[int, int]], layers: list[Layer],
           threads: Optional[int], fp16: bool, int8: bool, device: Optional[Device]) -> NcnnBackend:
    """The backend on `device` (None: the CPU); a bare model's metadata comes from probe inferences."""
    image = input_layer(layers, path)
    input_blob, outputs = image.tops[0], output_blobs(layers)
    net = open_net(layers, path.with_suffix(".bin"), path, threads, fp16, int8, device)
    hw = (image.get(1, 0), image.get(0, 0))  # ncnn Input: 0=w 1=h 2=c
    if meta is not None:
        check_input_size(meta, hw if all(hw) else meta.input_size, path)
        backend = NcnnBackend(meta, path, net, ncnn, input_blob, meta.outputs or outputs)
    else:
        size = static_size(hw if all(hw) else (None, None), input_size, path)
        probe = NcnnBackend(ModelMeta(num_classes=0, input_size=size), path, net, ncnn, input_blob, outputs)
        meta, order = bare_meta(path, "ncnn", size, probe.infer)
        meta.precision = "fp16" if fp16 else "fp32"
        backend = NcnnBackend(meta, path, net, ncnn, input_blob, [outputs[i] for i in order])
    if device is not None:
        backend.device = f"Vulkan device {device.index} ({device.name})"
    return backend
