"""Inference backends: one small interface over onnxruntime, ncnn and TFLite.

`load_backend(path)` accepts a model bundle (directory with meta.json) or a bare model made by another
tool (.onnx, .tflite, .param/.bin, or a directory holding one); for bare models the metadata is inferred
from the file and a probe inference, and what was inferred is logged. A Backend takes the letterboxed
BGR uint8 image and returns raw head outputs ready for `postprocess(..., **backend.meta.postprocess_options)`,
in two steps: `prepare` (the model's input tensor; may run in another thread, ahead) and `run` (the runtime).
Backend libraries are imported only when their backend is used.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edge_yolox.bundle import MAX_INPUT, META_NAME, ModelMeta, Preprocess, read_bundle
from edge_yolox.classes import default_names
from edge_yolox.errors import ModelError
from edge_yolox.preprocess import to_nchw

log = logging.getLogger(__name__)

# Backend name -> (module under edge_yolox.backends, the Python package it needs, model file suffixes)
BACKENDS: dict[str, tuple[str, str, tuple[str, ...]]] = {
    "ncnn": ("ncnn", "ncnn", (".param", ".bin")),
    "tflite": ("tflite", "ai_edge_litert", (".tflite",)),
    "onnxruntime": ("onnxruntime", "onnxruntime", (".onnx",)),
}
DEFAULT_INPUT_SIZE = (416, 416)


class Backend:
    """A loaded model. Subclasses set `name`, `meta`, `nchw` and implement `run`."""

    name = ""
    nchw = True

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


def grid_cells(input_size: Sequence[int], strides: Sequence[int]) -> list[int]:
    h, w = input_size
    return [(h // s) * (w // s) for s in strides]


def order_split(shapes: Sequence[Sequence[int]], input_size: Sequence[int], strides: Sequence[int],
                path: Path) -> list[int]:
    """Indices putting 9 split head maps in postprocess order (reg, obj, cls per stride, stride ascending).

    Each map is identified by its grid (which stride) and its channel count (4 = reg, 1 = obj, else cls);
    exporters name outputs differently and TFLite reorders them, so names cannot be trusted.
    """
    cells = grid_cells(input_size, strides)
    order: list[int] = []
    for n in cells:
        found: dict[str, int] = {}
        for i, shape in enumerate(shapes):
            dims = [d for d in shape if d != 1] or [1]
            if int(np.prod(shape)) % n or n not in _grid_products(shape):
                continue
            channels = int(np.prod(dims)) // n
            kind = {4: "reg", 1: "obj"}.get(channels, "cls")
            found.setdefault(kind, i)
        if len(found) != 3:
            raise ModelError(f"{path}: cannot match outputs {list(map(list, shapes))} to a YOLOX head "
                             f"(input {list(input_size)}, strides {list(strides)})")
        order += [found["reg"], found["obj"], found["cls"]]
    return order


def _grid_products(shape: Sequence[int]) -> set[int]:
    """H·W for every adjacent pair of dims: the candidate grids of an NCHW or NHWC map."""
    dims = list(shape)
    return {dims[i] * dims[i + 1] for i in range(len(dims) - 1)}


def infer_head(shapes: Sequence[Sequence[int]], input_size: Sequence[int], strides: Sequence[int],
               path: Path) -> tuple[str, int, list[int]]:
    """(layout, num_classes, output order) from the output shapes of a bare model."""
    total = sum(grid_cells(input_size, strides))
    if len(shapes) == 1:
        shape = [d for d in shapes[0] if d != 1]
        if len(shape) == 2 and shape[0] == total and shape[1] > 5:
            return "single", shape[1] - 5, [0]
        raise ModelError(f"{path}: output shape {list(shapes[0])} is not a YOLOX head [N={total}, 5+classes] "
                         f"for input {list(input_size)}")
    if len(shapes) == 3 * len(strides):
        order = order_split(shapes, input_size, strides, path)
        cls_size = int(np.prod(shapes[order[2]]))
        return "split", cls_size // grid_cells(input_size, strides)[0], order
    raise ModelError(f"{path}: {len(shapes)} outputs; expected 1 (single YOLOX tensor) or "
                     f"{3 * len(strides)} (split head)")


def probe_conventions(outputs: list[np.ndarray], layout: str) -> tuple[bool, bool]:
    """(sigmoid_applied, boxes_decoded) judged from one inference of a bare model on a blank frame.

    Scores outside [0, 1] are logits. Raw box offsets are small grid-relative numbers, decoded centres
    are pixel positions spread over the whole image, so their median is far above a few cells.
    """
    if layout == "single":
        rows = outputs[0].reshape(-1, outputs[0].shape[-1])
        scores, centres = rows[:, 4:], rows[:, :2]
    else:
        scores = np.concatenate([o.ravel() for o in outputs[1::3] + outputs[2::3]])
        centres = np.concatenate([o.ravel() for o in outputs[0::3]])
    sigmoid = bool(np.nanmin(scores) >= 0.0 and np.nanmax(scores) <= 1.0)
    decoded = bool(np.nanmedian(np.abs(centres)) > 8.0)
    return sigmoid, decoded


def bare_meta(path: Path, backend: str, input_size: Sequence[int],
              infer_raw: Callable[[np.ndarray], list[np.ndarray]]) -> tuple[ModelMeta, list[int]]:
    """Metadata for a model without meta.json, and the order of its outputs for postprocess.

    The head layout comes from the output shapes and the score/box conventions from one probe inference.
    """
    strides = (8, 16, 32)
    raw = infer_raw(np.full((*input_size, 3), 114, np.uint8))
    layout, num_classes, order = infer_head([o.shape for o in raw], input_size, strides, path)
    sigmoid, decoded = probe_conventions([raw[i] for i in order], layout)
    names = default_names(num_classes)
    meta = ModelMeta(num_classes=num_classes, input_size=tuple(input_size), layout=layout, strides=strides,
                     sigmoid_applied=sigmoid, boxes_decoded=decoded, class_names=names, backend=backend,
                     variant=path.stem, extra={"inferred": True})
    log.info("%s: no %s, inferred: %s head, %d classes (%s names), input %s, scores %s, boxes %s",
             path, META_NAME, layout, num_classes, "COCO" if num_classes == 80 else "numbered",
             list(input_size), "sigmoided" if sigmoid else "logits", "decoded" if decoded else "raw")
    return meta, order


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


def find_model(path: Path, backend: Optional[str]) -> tuple[str, Path, Optional[ModelMeta]]:
    """(backend name, model file, bundle meta or None) for a bundle directory, a bare file or a folder."""
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    meta = None
    files = [path]
    if path.is_dir():
        if (path / META_NAME).exists():
            meta = read_bundle(path)
            backend = backend or meta.backend or None
        files = sorted(p for p in path.iterdir() if p.is_file())
    candidates = [(name, f) for f in files for name, (_, _, suffixes) in BACKENDS.items()
                  if f.suffix in suffixes and (backend is None or name == backend)]
    if backend is not None and backend not in BACKENDS:
        raise ModelError(f"{path}: unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if not candidates:
        wanted = f"a {backend} model" if backend else "a .onnx, .tflite or .param/.bin model"
        raise ModelError(f"{path}: no {wanted} here")
    name, file = candidates[0]
    if name == "ncnn":
        file = file.with_suffix(".param")
    unlisted = [f.name for f in (file, file.with_suffix(".bin") if name == "ncnn" else file)
                if meta is not None and f.name not in meta.files]
    if unlisted:
        raise ModelError(f"{path / META_NAME}: files: does not list {unlisted[0]}, so it cannot be verified")
    return name, file, meta


def load_backend(model_path, backend: Optional[str] = None, threads: Optional[int] = None,
                 **opts: Any) -> Backend:
    """Load a model for inference.

    backend: force one ("onnxruntime", "ncnn", "tflite"); by default the model's file type decides.
    threads: CPU threads. opts: `input_size` (h, w) for bare models whose input is dynamic, `legacy`
    (RGB/255/mean-std preprocessing of pre-0.1.1 YOLOX weights), `class_names`, and backend options
    (ncnn: `fp16`, `int8`; tflite: `xnnpack`).
    """
    path = Path(model_path)
    name, file, meta = find_model(path, backend)
    module = importlib.import_module(f"edge_yolox.backends.{BACKENDS[name][0]}")
    loaded: Backend = module.load(file, meta, threads=threads, **opts)
    if opts.get("legacy"):
        loaded.meta.preprocess = Preprocess.legacy()
    if opts.get("class_names"):
        names = list(opts["class_names"])
        if len(names) != loaded.meta.num_classes:
            raise ModelError(f"{path}: {len(names)} class names given for a {loaded.meta.num_classes}-class model")
        loaded.meta.class_names = names
    check_outputs(loaded.infer(np.full((*loaded.meta.input_size, 3), 114, np.uint8)), file)  # and warms up
    log.info("loaded %s with %s (%s, %d classes, input %s)", file, name, loaded.meta.precision,
             loaded.meta.num_classes, list(loaded.meta.input_size))
    return loaded


def available() -> dict[str, Optional[str]]:
    """Backend name -> None when usable here, else why not (for `edge-yolox doctor`)."""
    result: dict[str, Optional[str]] = {}
    for name, (_, package, _) in BACKENDS.items():
        packages = ("ai_edge_litert", "tflite_runtime") if name == "tflite" else (package,)
        found = any(importlib.util.find_spec(p) is not None for p in packages)
        result[name] = None if found else f"python package {' or '.join(packages)} not installed"
    return result


def check_outputs(outputs: list[np.ndarray], path: Path) -> None:
    """NaN/inf on a blank frame means broken weights: say so at load time instead of detecting garbage."""
    if not all(np.isfinite(out).all() for out in outputs):
        raise ModelError(f"{path}: the model produces NaN/inf outputs (corrupt weights or wrong precision?)")


__all__ = ["BACKENDS", "Backend", "available", "load_backend", "normalize"]
