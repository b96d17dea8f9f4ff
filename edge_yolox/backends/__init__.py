"""Inference backends: one small interface (edge_yolox.backends.base) over onnxruntime, ncnn, TFLite and OpenVINO; this
module is the registry and the loader.

`load_backend(path)` accepts a model bundle (directory with meta.json) or a bare model made by another
tool (.onnx, .tflite, .param/.bin, .xml/.bin, or a directory holding one); for bare models the metadata is inferred
from the file and a probe inference (edge_yolox.backends.probe), and what was inferred is logged. A Backend takes
the letterboxed BGR uint8 image and returns raw head outputs ready for
`postprocess(..., **backend.meta.postprocess_options)`, in two steps: `prepare` (the model's input tensor; may run
in another thread, ahead) and `run` (the runtime). Backend libraries are imported only when their backend is used.

Each backend module `edge_yolox.backends.<name>` declares `OPTIONS` (its own knobs with their defaults, set per
backend under `model.options.<name>` in the config) and `load(path, meta, threads, input_size, **options)`.
"""

from __future__ import annotations

import importlib
import importlib.util
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, NamedTuple, Optional

import numpy as np

from edge_yolox import schema
from edge_yolox.backends.base import Backend, check_outputs, normalize
from edge_yolox.bundle import META_NAME, ModelMeta, Preprocess, read_bundle
from edge_yolox.errors import ModelError

log = logging.getLogger(__name__)


class Spec(NamedTuple):
    packages: tuple[str, ...]  # Python packages providing the runtime, any one of them
    suffixes: tuple[str, ...]  # model file suffixes


# Backend name (also its module under edge_yolox.backends) -> what it needs and reads
BACKENDS: dict[str, Spec] = {
    "ncnn": Spec(("ncnn",), (".param", ".bin")),
    "tflite": Spec(("ai_edge_litert", "tflite_runtime"), (".tflite",)),
    "onnxruntime": Spec(("onnxruntime",), (".onnx",)),
    "openvino": Spec(("openvino",), (".xml", ".onnx")),  # after onnxruntime: a bare .onnx goes to onnxruntime
}
# Backends whose model file (.param, .xml) has its weights in a .bin beside it
WEIGHTS_BESIDE = ("ncnn", "openvino")


@dataclass(frozen=True)
class ModelFile:
    """A model found on disk: the backend that runs it, its file, and its bundle's meta (None for a bare model)."""

    backend: str
    file: Path
    meta: Optional[ModelMeta]


def find_model(path: Path, backend: Optional[str]) -> ModelFile:
    """The model in a bundle directory, a bare file or a folder, for `backend` (None: by file type)."""
    if not path.exists():
        raise ModelError(f"{path}: model not found")
    meta = None
    files = [path]
    if path.is_dir():
        if (path / META_NAME).exists():
            meta = read_bundle(path)
            backend = backend or meta.backend or None
        files = sorted(p for p in path.iterdir() if p.is_file())
    candidates = [(name, f) for f in files for name, spec in BACKENDS.items()
                  if f.suffix in spec.suffixes and (backend is None or name == backend)
                  and (f.suffix != ".bin" or f.with_suffix(".param").exists())]  # an IR's .bin is no ncnn model
    if backend is not None and backend not in BACKENDS:
        raise ModelError(f"{path}: unknown backend {backend!r}; allowed: {', '.join(BACKENDS)}")
    if not candidates:
        wanted = f"a {backend} model" if backend else "a .onnx, .tflite, .param/.bin or .xml/.bin model"
        raise ModelError(f"{path}: no {wanted} here")
    name, file = candidates[0]
    if name == "ncnn":
        file = file.with_suffix(".param")
    weights = file.with_suffix(".bin") if name in WEIGHTS_BESIDE and file.suffix != ".onnx" else file
    unlisted = [f.name for f in (file, weights) if meta is not None and f.name not in meta.files]
    if unlisted:
        raise ModelError(f"{path / META_NAME}: files: does not list {unlisted[0]}, so it cannot be verified")
    return ModelFile(name, file, meta)


def open_model(found: ModelFile, threads: Optional[int] = None, *, input_size: Optional[Sequence[int]] = None,
               legacy: bool = False, class_names: Optional[Sequence[str]] = None,
               options: Optional[Mapping[str, Mapping]] = None) -> Backend:
    """Load a model `find_model` found.

    threads: CPU threads. input_size: (h, w) for bare models whose input is dynamic. legacy: RGB/255/mean-std
    preprocessing of pre-0.1.1 YOLOX weights. class_names: override the model's. options: backend name -> that
    backend's options (its OPTIONS keys); those of other backends are ignored.
    """
    settings = backend_options(found.backend, (options or {}).get(found.backend) or {})
    size = tuple(input_size) if input_size else None
    loaded: Backend = _module(found.backend).load(found.file, found.meta, threads, size, **settings)
    if legacy:
        loaded.meta.preprocess = Preprocess.legacy()
    if class_names:
        names = list(class_names)
        if len(names) != loaded.meta.num_classes:
            raise ModelError(f"{found.file}: {len(names)} class names given for a {loaded.meta.num_classes}-class "
                             f"model")
        loaded.meta.class_names = names
    check_outputs(loaded.infer(np.full((*loaded.meta.input_size, 3), 114, np.uint8)), found.file)  # and warms up
    log.info("loaded %s with %s on %s (%s, %d classes, input %s)", found.file, found.backend, loaded.device,
             loaded.meta.precision, loaded.meta.num_classes, list(loaded.meta.input_size))
    return loaded


def load_backend(model_path, backend: Optional[str] = None, threads: Optional[int] = None, **opts) -> Backend:
    """Find and load a model: backend forces one ("onnxruntime", "ncnn", "tflite", "openvino"), by default the
    model's file type decides; `opts` as for `open_model`."""
    return open_model(find_model(Path(model_path), backend), threads, **opts)


def backend_options(name: str, given: Mapping) -> dict:
    """`given` checked against backend `name`'s OPTIONS and completed with their defaults."""
    return schema.options(dict(given), f"model.options.{name}", _module(name).OPTIONS)


def check_options(options: dict[str, dict], origin: Callable[[str], str]) -> None:
    """Every `model.options` section against its backend's OPTIONS; `origin(key)` names the file that set a key."""
    schema.check_sections(options, "model.options", {name: _module(name).OPTIONS for name in BACKENDS}, origin,
                          "backend")


def _module(name: str):
    return importlib.import_module(f"edge_yolox.backends.{name}")


def available() -> dict[str, Optional[str]]:
    """Backend name -> None when usable here, else why not (for `edge-yolox doctor`)."""
    result: dict[str, Optional[str]] = {}
    for name, spec in BACKENDS.items():
        found = any(importlib.util.find_spec(p) is not None for p in spec.packages)
        result[name] = None if found else f"python package {' or '.join(spec.packages)} not installed"
    return result


__all__ = ["BACKENDS", "Backend", "ModelFile", "available", "check_options", "find_model", "load_backend",
           "normalize", "open_model"]
