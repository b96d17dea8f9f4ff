"""ncnn backend (Python binding): threads from the board config, fp16/int8 from `model.options.ncnn`.

Third-party YOLOX exports (the official ncnn demo's layout, used by most Pi projects) contain the custom
layer `YoloV5Focus`, which stock ncnn lacks. We rewrite it in memory to standard layers: `Reorg` (mode 1
gives the space-to-depth groups top-left, top-right, bottom-left, bottom-right), a `Slice` into those four
groups and a `Concat` in the YOLOX order top-left, bottom-left, top-right, bottom-right. This runs in C++
at full speed, unlike a Python custom layer.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import tempfile
from pathlib import Path
from typing import Optional

import numpy as np

from edge_yolox.backends.base import Backend, check_input_size, import_runtime, static_size
from edge_yolox.backends.probe import bare_meta
from edge_yolox.bundle import ModelMeta
from edge_yolox.errors import ModelError

log = logging.getLogger(__name__)
MAGIC = "7767517"
OPTIONS = {"fp16": False, "int8": True}  # fp16 storage/arithmetic; int8 inference for int8 models


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


def parse_param(text: str, path: Path) -> list[list[str]]:
    """The layer lines of a text .param, each split into fields; checks the magic and the counts."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2 or lines[0] != [MAGIC] or len(lines[1]) != 2:
        raise ModelError(f"{path}: not an ncnn text .param file (expected magic {MAGIC} and layer/blob counts)")
    try:
        declared = int(lines[1][0])
        layers = lines[2:]
        if declared != len(layers) or any(len(f) < 4 or len(f) < 4 + int(f[2]) + int(f[3]) for f in layers):
            raise ValueError
    except ValueError:
        raise ModelError(f"{path}: truncated or malformed ncnn .param (layer lines do not match the header)") from None
    return layers


def io_blobs(layers: list[list[str]], path: Path) -> tuple[str, list[str], list[str]]:
    """(input blob, its Input layer params, output blobs = blobs produced but never consumed)."""
    inputs = [f for f in layers if f[0] == "Input"]
    if len(inputs) != 1:
        raise ModelError(f"{path}: expected one Input layer, found {len(inputs)}")
    produced, consumed = [], set()
    for f in layers:
        nb, nt = int(f[2]), int(f[3])
        consumed.update(f[4:4 + nb])
        produced += f[4 + nb:4 + nb + nt]
    outputs = [b for b in produced if b not in consumed]
    return inputs[0][4], inputs[0][5:], outputs


def rewrite_focus(layers: list[list[str]]) -> tuple[list[list[str]], int]:
    """Replace YoloV5Focus layers with Reorg + Slice + Concat; returns the layers and the added blob count."""
    out, added = [], 0
    for f in layers:
        if f[0] != "YoloV5Focus":
            out.append(f)
            continue
        name, src, dst = f[1], f[4], f[5]
        groups = [f"{name}_tl", f"{name}_tr", f"{name}_bl", f"{name}_br"]
        out += [
            ["Reorg", f"{name}_reorg", "1", "1", src, f"{name}_s2d", "0=2", "1=1"],
            ["Slice", f"{name}_slice", "1", "4", f"{name}_s2d", *groups, "-23300=4,-233,-233,-233,-233", "1=0"],
            ["Concat", name, "4", "1", groups[0], groups[2], groups[1], groups[3], dst, "0=0"],
        ]
        added += 5
    return out, added


@contextlib.contextmanager
def c_stderr():
    """Capture what ncnn's C++ prints on fd 2 while loading, to put it in our one-line error instead."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        text: list[str] = []
        try:
            yield lambda: "; ".join(text) or "no details"
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            text += [line.strip() for line in tmp.read().decode(errors="replace").splitlines() if line.strip()]


def render_param(layers: list[list[str]], blob_count: int) -> str:
    return "\n".join([MAGIC, f"{len(layers)} {blob_count}"] + [" ".join(f) for f in layers]) + "\n"


def load(path: Path, meta: Optional[ModelMeta], threads: Optional[int], input_size: Optional[tuple[int, int]], *,
         fp16: bool, int8: bool) -> NcnnBackend:
    ncnn = import_runtime("ncnn", path, "ncnn")
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise ModelError(f"{weights}: missing (an ncnn model is a .param and a .bin)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: unreadable ncnn .param ({exc})") from None
    layers = parse_param(text, path)
    blob_count = int(text.split()[2])
    layers, added = rewrite_focus(layers)
    if added:
        log.info("%s: rewrote the custom YoloV5Focus layer to Reorg + Slice + Concat", path)
    input_blob, input_params, output_blobs = io_blobs(layers, path)

    net = ncnn.Net()
    # Options must be set before load_param: ncnn picks layer implementations when it loads them.
    net.opt.use_vulkan_compute = False
    net.opt.lightmode = True  # free intermediate blobs as soon as they are consumed
    net.opt.num_threads = int(threads) if threads else 1
    net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = net.opt.use_fp16_packed = bool(fp16)
    net.opt.use_int8_inference = bool(int8)
    with c_stderr() as said:
        ok = net.load_param_mem(render_param(layers, blob_count + added)) == 0
    if not ok:
        unknown = sorted({f[0] for f in layers if ncnn.layer_to_index(f[0]) < 0})
        hint = f"layers this ncnn lacks: {', '.join(unknown)}" if unknown else said()
        raise ModelError(f"{path}: ncnn could not load the .param ({hint})")
    with c_stderr() as said:
        ok = net.load_model(str(weights)) == 0
    if not ok:
        raise ModelError(f"{weights}: ncnn could not load the weights, truncated or not made for {path.name} "
                         f"({said()})")

    params = dict(p.split("=", 1) for p in input_params if "=" in p)
    hw = (int(params.get("1", 0)), int(params.get("0", 0)))  # ncnn Input: 0=w 1=h 2=c
    if meta is not None:
        check_input_size(meta, hw if all(hw) else meta.input_size, path)
        outputs = meta.outputs or output_blobs
        return NcnnBackend(meta, path, net, ncnn, input_blob, outputs)
    size = static_size(hw if all(hw) else (None, None), input_size, path)
    probe = NcnnBackend(ModelMeta(num_classes=0, input_size=size), path, net, ncnn, input_blob, output_blobs)
    meta, order = bare_meta(path, "ncnn", size, probe.infer)
    meta.precision = "fp16" if fp16 else "fp32"
    return NcnnBackend(meta, path, net, ncnn, input_blob, [output_blobs[i] for i in order])

