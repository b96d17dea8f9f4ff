"""The ncnn model files: the text .param format (magic, layer and blob counts, one layer a line: type, name,
bottom and top counts, bottom and top blobs, then `key=value` params) and opening an `ncnn.Net` on a .param and
its .bin with our options. Shared by the ncnn backend and the INT8 writer (edge_yolox.train.export.int8_ncnn)."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from edge_yolox.backends.base import import_runtime
from edge_yolox.errors import ModelError

MAGIC = "7767517"


@dataclass
class Layer:
    type: str
    name: str
    bottoms: list[str]
    tops: list[str]
    params: dict[str, str]  # raw "key=value" pairs, in file order (ncnn reads them by integer key)

    def get(self, key: int, default: int) -> int:
        return int(self.params.get(str(key), default))


def parse_param(text: str, source) -> list[Layer]:
    """The layers of a text .param; a ModelError naming `source` when the magic, the counts or a line is wrong."""
    lines = [ln.split() for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2 or lines[0] != [MAGIC] or len(lines[1]) != 2:
        raise ModelError(f"{source}: not an ncnn text .param file (expected magic {MAGIC} and layer/blob counts)")
    try:
        declared = int(lines[1][0])
        layers = [_layer(fields) for fields in lines[2:]]
        if declared != len(layers):
            raise ValueError
    except (ValueError, IndexError):
        raise ModelError(f"{source}: truncated or malformed ncnn .param (layer lines do not match the header)") \
            from None
    return layers


def _layer(fields: list[str]) -> Layer:
    n_bottom, n_top = int(fields[2]), int(fields[3])
    blobs, params = fields[4:4 + n_bottom + n_top], fields[4 + n_bottom + n_top:]
    if n_bottom < 0 or n_top < 0 or len(blobs) != n_bottom + n_top or not all("=" in p for p in params):
        raise ValueError
    return Layer(fields[0], fields[1], blobs[:n_bottom], blobs[n_bottom:], dict(p.split("=", 1) for p in params))


def read_param(path: Path) -> list[Layer]:
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"{path}: unreadable ncnn .param ({exc})") from None
    return parse_param(text, path)


def render_param(layers: list[Layer], blob_count: int) -> str:
    lines = [MAGIC, f"{len(layers)} {blob_count}"]
    for layer in layers:
        head = f"{layer.type:<24} {layer.name:<24} {len(layer.bottoms)} {len(layer.tops)}"
        lines.append(" ".join([head, *layer.bottoms, *layer.tops, *(f"{k}={v}" for k, v in layer.params.items())]))
    return "\n".join(lines) + "\n"


def blob_count(layers: list[Layer]) -> int:
    """The header's blob count: every blob is the top of exactly one layer."""
    return sum(len(layer.tops) for layer in layers)


def input_layer(layers: list[Layer], source) -> Layer:
    inputs = [layer for layer in layers if layer.type == "Input"]
    if len(inputs) != 1:
        raise ModelError(f"{source}: expected one Input layer, found {len(inputs)}")
    return inputs[0]


def output_blobs(layers: list[Layer]) -> list[str]:
    """Blobs produced but never consumed, in file order: the model's outputs."""
    consumed = {b for layer in layers for b in layer.bottoms}
    return [t for layer in layers for t in layer.tops if t not in consumed]


def open_net(layers: list[Layer], weights: Path, source: Path, threads: Optional[int], fp16: bool, int8: bool,
             device=None):
    """An ncnn.Net with our options, loaded from `layers` and the .bin `weights`; ModelError saying why not.
    device: a backends.vulkan.Device to run on, None for the CPU."""
    ncnn = import_runtime("ncnn", source, "ncnn")
    net = ncnn.Net()
    # Options must be set before load_param: ncnn picks layer implementations when it loads them.
    net.opt.use_vulkan_compute = device is not None
    if device is not None:
        net.set_vulkan_device(device.index)
    net.opt.lightmode = True  # free intermediate blobs as soon as they are consumed
    net.opt.num_threads = int(threads) if threads else 1  # on Vulkan too: layers without a GPU kernel run here
    # On a GPU, fp16 only where the device reports it (a CPU has ncnn's own fallbacks).
    net.opt.use_fp16_packed = bool(fp16) and (device is None or device.fp16_packed)
    net.opt.use_fp16_storage = bool(fp16) and (device is None or device.fp16_storage)
    net.opt.use_fp16_arithmetic = bool(fp16) and (device is None or device.fp16_arithmetic)
    net.opt.use_int8_inference = bool(int8)
    with c_stderr() as said:
        ok = net.load_param_mem(render_param(layers, blob_count(layers))) == 0
    if not ok:
        unknown = sorted({layer.type for layer in layers if ncnn.layer_to_index(layer.type) < 0})
        hint = f"layers this ncnn lacks: {', '.join(unknown)}" if unknown else said()
        raise ModelError(f"{source}: ncnn could not load the .param ({hint})")
    with c_stderr() as said:
        ok = net.load_model(str(weights)) == 0
    if not ok:
        raise ModelError(f"{weights}: ncnn could not load the weights, truncated or not made for {source.name} "
                         f"({said()})")
    return net


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
