"""The Backend interface every runtime implements, and the helpers backend modules share (input conversion, size
checks, importing the runtime's package). Backend modules import this, never the registry (edge_yolox.backends)."""

from __future__ import annotations

import importlib
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

import numpy as np

from edge_yolox.bundle import MAX_INPUT, META_NAME, ModelMeta, Preprocess
from edge_yolox.errors import ModelError
from edge_yolox.preprocess import to_nchw

log = logging.getLogger(__name__)
DEFAULT_INPUT_SIZE = (416, 416)


class Backend:
    """A loaded model. Subclasses set `name`, `meta`, `nchw` and implement `run`."""

    name = ""
    nchw = True
    device = "CPU"  # where it runs, for the log and the bench table

    def __init__(self, meta: ModelMeta, path: Path):
        self.meta = meta
        self.path = path

    def infer(self, image: np.ndarray) -> list[np.ndarray]:
        """Letterboxed H×W×3 BGR uint8 image of meta.input_size -> raw outputs in postprocess order."""
        return self.run(self.prepare(image))

    def prepare(self, image: np.ndarray) -> np.ndarray:
        """Letterboxed H×W×3 BGR uint8 image -> the model's input tensor. Touches no runtime state."""
        self.check_size(image)
        return normalize(image, self.meta.preprocess, self.nchw)

    def check_size(self, image: np.ndarray) -> None:
        if image.shape[:2] != tuple(self.meta.input_size):
            raise ValueError(f"{self.path}: expects a {self.meta.input_size} image, got {image.shape[:2]}")

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        """The input tensor from `prepare` -> raw outputs in postprocess order."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the runtime's memory; the backend is unusable afterwards."""


def normalize(image: np.ndarray, pre: Preprocess, nchw: bool = True) -> np.ndarray:
    """uint8 BGR H×W×3 -> float32 model input ([1,3,H,W] or [1,H,W,3]) with the model's colour/mean/std."""
    if pre.color == "rgb":
        image = image[..., ::-1]
    x = to_nchw(image) if nchw else image[None].astype(np.float32)
    channel = (3, 1, 1) if nchw else (3,)
    if pre.scale != 1.0:
        x *= pre.scale
    if pre.mean is not None:
        x -= np.asarray(pre.mean, dtype=np.float32).reshape(channel)
    if pre.std is not None:
        x /= np.asarray(pre.std, dtype=np.float32).reshape(channel)
    return x


def bundle_order(meta: ModelMeta, names: Sequence[str], path: Path) -> list[int]:
    """Output indices in the order meta.outputs lists them (the model's own order when it lists none)."""
    if not meta.outputs:
        return list(range(len(names)))
    missing = [n for n in meta.outputs if n not in names]
    if missing:
        raise ModelError(f"{path}: outputs {missing} named in {META_NAME} are not in the model (it has {list(names)})")
    return [list(names).index(n) for n in meta.outputs]


def check_input_size(meta: ModelMeta, model_size: Sequence, path: Path) -> None:
    """A bundle whose meta.json disagrees with its model file is a mismatched copy."""
    if all(isinstance(d, int) for d in model_size) and tuple(model_size) != tuple(meta.input_size):
        raise ModelError(f"{path}: model input is {list(model_size)} but {META_NAME} says {list(meta.input_size)}")


def static_size(dims: Sequence, fallback: Optional[Sequence[int]], path: Path) -> tuple[int, int]:
    """(h, w) from a model's input dims, or the fallback (board/flag) when they are dynamic."""
    if all(isinstance(d, int) and d > 0 for d in dims):
        if max(dims) > MAX_INPUT:
            raise ModelError(f"{path}: declares a {list(dims)} input, larger than {MAX_INPUT} per side: refused")
        return int(dims[0]), int(dims[1])
    size = tuple(fallback or DEFAULT_INPUT_SIZE)
    log.info("%s: dynamic input size, using %s", path, list(size))
    return int(size[0]), int(size[1])


def import_runtime(package: str, path: Path, extra: str):
    """The runtime's Python package, or a ModelError saying how to install it."""
    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise ModelError(f"{path}: needs the python package {package!r} ({exc}); "
                         f"install it with: pip install 'edge-yolox[{extra}]'") from None


def check_outputs(outputs: list[np.ndarray], path: Path) -> None:
    """NaN/inf on a blank frame means broken weights: say so at load time instead of detecting garbage."""
    if not all(np.isfinite(out).all() for out in outputs):
        raise ModelError(f"{path}: the model produces NaN/inf outputs (corrupt weights or wrong precision?)")
