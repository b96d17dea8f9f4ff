"""The export graph every format converts: YOLOX as a plain float32 eval-mode module with the split per-stride head
(or the official single tensor), and the torch reference each exporter checks its converted model against."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from edge_yolox.preprocess import to_nchw

from ..models import YOLOX, UnshuffleFocus

INPUT_NAME = "images"  # the input's name in every exported model
SINGLE_OUTPUT = "output"  # the official export's name
LAYOUTS = ("split", "single")
STEMS = ("slice", "unshuffle")


def split_output_names(strides) -> list[str]:
    """reg8, obj8, cls8, reg16, ...: the order edge_yolox.postprocess takes split maps in."""
    return [f"{kind}{s}" for s in strides for kind in ("reg", "obj", "cls")]


class ExportGraph(nn.Module):
    """x [B,3,H,W] BGR 0-255 -> the 9 split maps (NCHW) or the undecoded single tensor [B, N, 5+C].

    Works on a float32 eval-mode copy. stem="unshuffle" swaps the Focus slices for pixel_unshuffle plus a
    channel-permuted stem conv (exact; converters such as pnnx reject step-2 slices).
    """

    def __init__(self, model: YOLOX, layout: str = "split", stem: str = "slice"):
        super().__init__()
        if layout not in LAYOUTS or stem not in STEMS:
            raise ValueError(f"layout must be one of {LAYOUTS} and stem one of {STEMS}, got {layout!r}, {stem!r}")
        model = copy.deepcopy(model).float().eval()
        if stem == "unshuffle":
            model.backbone.backbone.stem = UnshuffleFocus(model.backbone.backbone.stem)
        model.head.decode_in_inference = False  # the runtime decodes (C++ core)
        self.backbone, self.head, self.layout = model.backbone, model.head, layout
        self.eval()  # torch.onnx.export restores the mode it finds, recursively: it must find eval

    def output_names(self) -> list[str]:
        return split_output_names(self.head.strides) if self.layout == "split" else [SINGLE_OUTPUT]

    def forward(self, x: torch.Tensor):
        features = self.backbone(x)
        return tuple(self.head.split_outputs(features)) if self.layout == "split" else self.head(features)


def torch_outputs(graph: nn.Module, image: np.ndarray) -> list[np.ndarray]:
    """The export graph's outputs ([1, ...], NCHW) for one letterboxed HWC uint8 BGR image: the reference
    every exporter checks its converted model against."""
    with torch.no_grad():
        out = graph(torch.from_numpy(to_nchw(image)))
    return [t.numpy() for t in (out if isinstance(out, tuple) else (out,))]


def check_image(input_size: tuple[int, int]) -> np.ndarray:
    """A fixed, busy test image (smooth gradients plus noise) when no real image is given."""
    h, w = input_size
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
    return np.clip(base + rng.normal(0, 40, base.shape), 0, 255).astype(np.uint8)
