"""Model bundles: a directory with meta.json (ModelMeta) and the backend's files, each listed with its sha256."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Optional

from edge_yolox import __version__
from edge_yolox.errors import ConfigError, ModelError
from edge_yolox.files import load_json
from edge_yolox.postprocess import STRIDES
from edge_yolox.schema import bounded, build, choice

MAX_INPUT = 4096  # pixels per side: a 4096x4096 float input is 200 MB, the most a board can be asked for

META_NAME = "meta.json"
FORMAT_VERSION = 1
# Mean/std of the pre-0.1.1 YOLOX weights (RGB, 0-1); the current convention uses none.
LEGACY_MEAN = (0.485, 0.456, 0.406)
LEGACY_STD = (0.229, 0.224, 0.225)


@dataclass
class Preprocess:
    color: str = choice("bgr", "rgb", default="bgr")  # channel order the model expects
    scale: float = bounded(1e-6, 1e6, default=1.0)  # multiply 0-255 pixels by this before mean/std
    mean: Optional[tuple[float, float, float]] = field(default=None, metadata={"length": 3})
    std: Optional[tuple[float, float, float]] = field(default=None, metadata={"length": 3, "range": (1e-6, 1e6)})

    @classmethod
    def legacy(cls) -> Preprocess:
        return cls("rgb", 1 / 255.0, LEGACY_MEAN, LEGACY_STD)

    @property
    def is_identity(self) -> bool:
        return self.color == "bgr" and self.scale == 1.0 and self.mean is None and self.std is None


@dataclass
class ModelMeta:
    """What the runtime must know to feed a model and read its outputs."""

    num_classes: int = field(metadata={"range": (1, 100_000)})
    input_size: tuple[int, int] = field(metadata={"length": 2, "range": (32, MAX_INPUT)})  # (h, w)
    layout: str = choice("single", "split", default="single")  # [N, 5+C] or (reg, obj, cls) per stride
    outputs: list[str] = field(default_factory=list)  # output names in the order postprocess takes
    strides: tuple[int, ...] = field(default=STRIDES, metadata={"range": (1, 1024), "min_length": 1})
    sigmoid_applied: bool = True  # obj/cls already in 0-1
    boxes_decoded: bool = False  # boxes already cx, cy, w, h in input pixels
    nms: bool = True  # false: an end-to-end model (one box per object), threshold + top-k without NMS
    class_names: list[str] = field(default_factory=list)
    variant: str = "unknown"
    precision: str = choice("fp32", "fp16", "int8", default="fp32")
    backend: str = choice("", "ncnn", "tflite", "onnxruntime", "openvino", default="")
    preprocess: Preprocess = field(default_factory=Preprocess)
    files: dict[str, str] = field(default_factory=dict, metadata={"filename": True})  # file name -> sha256
    extra: dict[str, Any] = field(default_factory=dict)  # producer details, calibration, ...
    format_version: int = bounded(1, default=FORMAT_VERSION)
    producer: str = f"edge-yolox {__version__}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Any, source: str = META_NAME) -> ModelMeta:
        """Validated against the field declarations (edge_yolox.schema); a ModelError names the file and key."""
        try:
            meta = build(cls, data, lambda key: source)
        except ConfigError as exc:
            raise ModelError(str(exc)) from None
        if meta.format_version > FORMAT_VERSION:
            raise ModelError(f"{source}: format_version {meta.format_version} is newer than this edge-yolox "
                             f"understands ({FORMAT_VERSION}); upgrade edge-yolox")
        if meta.class_names and len(meta.class_names) != meta.num_classes:
            raise ModelError(f"{source}: class_names: {len(meta.class_names)} names for num_classes "
                             f"{meta.num_classes}")
        bad = [name for name, digest in meta.files.items() if not re.fullmatch(r"[0-9a-f]{64}", digest)]
        if bad:
            raise ModelError(f"{source}: files.{bad[0]}: not a sha256 hex digest")
        return meta

    @property
    def name(self) -> str:
        """The model as logs and records name it: "yolox-nano-int8"."""
        return f"yolox-{re.sub(r'^yolox[-_]', '', self.variant)}-{self.precision}"

    @property
    def postprocess_options(self) -> dict[str, Any]:
        """Keyword arguments for edge_yolox.postprocess that match this model's outputs."""
        return {
            "strides": self.strides,
            "apply_sigmoid": not self.sigmoid_applied,
            "decode_boxes": not self.boxes_decoded,
            "nms": self.nms,
        }


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_bundle(directory: Path, meta: ModelMeta) -> Path:
    """Record the sha256 of every file already in `directory` and write meta.json beside them."""
    directory = Path(directory)
    meta.files = {p.name: sha256(p) for p in sorted(directory.iterdir()) if p.is_file() and p.name != META_NAME}
    (directory / META_NAME).write_text(json.dumps(meta.to_json(), indent=2) + "\n")
    return directory


def read_bundle(directory: Path, verify: bool = True) -> ModelMeta:
    """Load meta.json and check that every listed file is present and intact."""
    directory = Path(directory)
    meta_path = directory / META_NAME
    if not meta_path.exists():
        raise ModelError(f"{directory}: not a model bundle (no {META_NAME})")
    try:
        data = load_json(meta_path, META_NAME)
    except ConfigError as exc:
        raise ModelError(str(exc)) from None
    meta = ModelMeta.from_json(data, str(meta_path))
    for name, digest in meta.files.items():
        path = directory / name
        if not path.is_file():
            raise ModelError(f"{path}: missing from the bundle")
        if verify and sha256(path) != digest:
            raise ModelError(f"{path}: sha256 does not match meta.json (corrupt or truncated copy?)")
    return meta
