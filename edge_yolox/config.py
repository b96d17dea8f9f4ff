"""Configuration: board YAML + user YAML (--config) + command-line flags -> one validated dataclass tree.

Later layers override earlier ones key by key. Every value remembers which layer set it, so an error
names the file (or "command line"), the dotted key and what is allowed.
"""

from __future__ import annotations

import dataclasses
import platform
import socket
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Optional

import yaml

from edge_yolox.errors import ConfigError

BACKEND_NAMES = ("ncnn", "tflite", "onnxruntime")
CAMERA_KINDS = ("opencv", "picamera2", "nvargus")
COMMAND_LINE = "command line"
DEFAULTS = "built-in defaults"


def _choice(*allowed: str, **kw) -> Any:
    return field(metadata={"choices": allowed}, **kw)


def _range(lo: float, hi: Optional[float] = None, **kw) -> Any:
    return field(metadata={"range": (lo, hi)}, **kw)


@dataclass
class ModelConfig:
    path: str = ""  # bundle dir or bare model; empty: look for <variant>-<precision> in `search`
    backend: str = _choice("auto", *BACKEND_NAMES, default="auto")
    backends: list[str] = field(default_factory=lambda: list(BACKEND_NAMES), metadata={"items": BACKEND_NAMES})
    threads: int = _range(1, 64, default=4)
    input_size: list[int] = field(default_factory=lambda: [416, 416], metadata={"length": 2, "range": (32, 4096)})
    variant: str = "yolox-nano"
    precision: str = _choice("fp32", "fp16", "int8", default="fp32")
    search: list[str] = field(default_factory=lambda: ["~/.local/share/edge-yolox/models",
                                                       "/var/lib/edge-yolox/models"])
    fp16: bool = False  # ncnn fp16 storage/arithmetic
    int8: bool = True  # ncnn int8 inference for int8 models
    xnnpack: bool = True  # TFLite XNNPACK delegate
    legacy: bool = False  # pre-0.1.1 YOLOX weights: RGB/255/mean-std input
    class_names: list[str] = field(default_factory=list)


@dataclass
class DetectConfig:
    conf: float = _range(0.0, 1.0, default=0.25)
    iou: float = _range(0.0, 1.0, default=0.45)
    agnostic: bool = False
    classes: list[str] = field(default_factory=list)  # names or ids; empty: all
    max_det: int = _range(1, 10000, default=100)


@dataclass
class CameraConfig:
    kind: str = _choice(*CAMERA_KINDS, default="opencv")
    index: int = _range(0, 63, default=0)
    width: int = _range(16, 8192, default=640)
    height: int = _range(16, 8192, default=480)
    fps: float = _range(1, 240, default=30.0)
    fourcc: str = ""
    pipeline: str = ""  # nvargus: GStreamer template with {sensor_id} {width} {height} {fps} {flip}
    flip: int = _range(0, 7, default=0)


@dataclass
class SourceConfig:
    uri: str = "camera"  # camera | synthetic | picamera2 | nvargus | URL | GStreamer pipeline | file | folder
    realtime: bool = False  # play files at their own rate, dropping frames like a camera
    limit: int = _range(0, default=0)  # stop after N frames (0: never)
    reconnect_min_s: float = _range(0.05, 600, default=0.5)
    reconnect_max_s: float = _range(0.05, 3600, default=10.0)
    timeout_s: float = _range(0.1, 600, default=5.0)  # stream open/read timeout


@dataclass
class RuntimeConfig:
    device: str = ""  # stable device id (MQTT topic/client id); empty: the host name
    stats_interval_s: float = _range(0.0, 86400, default=10.0)
    log_level: str = _choice("debug", "info", "warning", "error", default="info")


@dataclass
class Config:
    board: str = "x86"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    outputs: dict[str, dict] = field(default_factory=dict)  # sink sections, validated by each sink

    @property
    def device(self) -> str:
        return self.runtime.device or socket.gethostname()


# ---- boards


def board_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("edge_yolox.boards").iterdir() if p.name.endswith(".yaml"))


def board_file(name: str) -> tuple[str, str]:
    """(text, origin) of a board given by name or as a path to a YAML file."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        try:
            return Path(name).read_text(), name
        except OSError as exc:
            raise ConfigError(f"{name}: cannot read board file ({exc.strerror})") from None
    if name not in board_names():
        raise ConfigError(f"{COMMAND_LINE}: board: unknown board {name!r}; allowed: {', '.join(board_names())}")
    resource = resources.files("edge_yolox.boards").joinpath(f"{name}.yaml")
    return resource.read_text(), f"boards/{name}.yaml"


def detect_board() -> str:
    """The board this runs on, from the device-tree model string; x86 (the development board) otherwise."""
    try:
        model = Path("/proc/device-tree/model").read_text().lower()
    except OSError:
        return "x86" if platform.machine() in ("x86_64", "AMD64", "i686") else "rpi4"
    for tag, board in (("raspberry pi 5", "rpi5"), ("raspberry pi 4", "rpi4"), ("zero 2", "rpi-zero2w"),
                       ("orin nano", "jetson-orin-nano"), ("jetson nano", "jetson-nano")):
        if tag in model:
            return board
    return "rpi4" if "raspberry" in model else "x86"


# ---- loading and merging


def read_yaml(text: str, origin: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{origin}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{origin}: must be a mapping of sections (model:, detect:, camera:, ...), "
                          f"got {type(data).__name__}")
    return data


def merge(base: dict, layer: dict, origin: str, origins: dict[str, str], prefix: str = "") -> dict:
    """Deep-merge `layer` over `base`, recording in `origins` the layer that set each dotted key."""
    out = dict(base)
    for key, value in layer.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(out.get(key), dict) and value:
            out[key] = merge(out[key], value, origin, origins, path + ".")
        else:
            out[key] = value
            origins[path] = origin
            for sub in [k for k in origins if k.startswith(path + ".")]:
                origins[sub] = origin
            if isinstance(value, dict):
                _mark(value, origin, origins, path + ".")
    return out


def _mark(data: dict, origin: str, origins: dict[str, str], prefix: str) -> None:
    for key, value in data.items():
        origins[f"{prefix}{key}"] = origin
        if isinstance(value, dict):
            _mark(value, origin, origins, f"{prefix}{key}.")


def load_config(board: Optional[str] = None, config_file: Optional[str] = None,
                overrides: Optional[dict] = None) -> Config:
    """Board YAML, then the user's YAML, then command-line overrides (nested dict), validated."""
    origins: dict[str, str] = {}
    user: dict = {}
    user_origin = ""
    if config_file:
        try:
            text = Path(config_file).read_text()
        except OSError as exc:
            raise ConfigError(f"{config_file}: cannot read config ({exc.strerror})") from None
        user = read_yaml(text, config_file)
        user_origin = config_file
    name = board or user.get("board") or detect_board()
    if not isinstance(name, str):
        raise ConfigError(f"{user_origin or COMMAND_LINE}: board: must be a board name; allowed: "
                          f"{', '.join(board_names())}")
    text, board_origin = board_file(name)
    data = merge({}, read_yaml(text, board_origin), board_origin, origins)
    if user:
        data = merge(data, user, user_origin, origins)
    if overrides:
        data = merge(data, overrides, COMMAND_LINE, origins)
    data["board"] = Path(name).stem if name.endswith((".yaml", ".yml")) else name
    config = build(Config, data, origins, "")
    if config.source.reconnect_max_s < config.source.reconnect_min_s:
        raise ConfigError(f"{origins.get('source.reconnect_max_s', DEFAULTS)}: source.reconnect_max_s: must be "
                          f">= source.reconnect_min_s ({config.source.reconnect_min_s})")
    return config


# ---- validation


def build(cls, data: Any, origins: dict[str, str], prefix: str):
    """Instantiate dataclass `cls` from `data`, checking every key and value against the field types."""
    where = origins.get(prefix.rstrip("."), DEFAULTS) if prefix else DEFAULTS
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: {prefix.rstrip('.')}: must be a mapping, got {data!r}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        key = f"{prefix}{unknown[0]}"
        raise ConfigError(f"{origins.get(key, DEFAULTS)}: {key}: unknown key; allowed: {', '.join(fields)}")
    values = {}
    for name, value in data.items():
        key = f"{prefix}{name}"
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = build(hint, value, origins, key + ".")
        else:
            values[name] = check_value(value, hint, fields[name].metadata, key, origins.get(key, DEFAULTS))
    return cls(**values)


def check_value(value: Any, hint: Any, meta: typing.Mapping, key: str, origin: str) -> Any:
    def fail(allowed: str) -> ConfigError:
        return ConfigError(f"{origin}: {key}: invalid value {value!r}; allowed: {allowed}")

    origin_type = typing.get_origin(hint)
    if origin_type is dict:
        if not isinstance(value, dict) or not all(isinstance(v, (dict, type(None))) for v in value.values()):
            raise fail("a mapping of name: {options}")
        return {k: dict(v or {}) for k, v in value.items()}
    if origin_type is list:
        (item_type,) = typing.get_args(hint)
        if isinstance(value, (str, int, float)) and not isinstance(value, bool) and "length" not in meta:
            value = [value]  # a single value where a list is expected: `classes: person`
        if not isinstance(value, list):
            raise fail(f"a list of {item_type.__name__}")
        if "length" in meta and len(value) != meta["length"]:
            raise fail(f"a list of {meta['length']} {item_type.__name__} values")
        items = [check_value(v, item_type, {k: m for k, m in meta.items() if k != "length"}, key, origin)
                 for v in value]
        if "items" in meta and any(v not in meta["items"] for v in items):
            raise fail(f"a list of {', '.join(meta['items'])}")
        return items
    if hint is bool:
        if not isinstance(value, bool):
            raise fail("true or false")
        return value
    if hint in (int, float):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (hint is int and value != int(value)):
            raise fail("an integer" if hint is int else "a number")
        value = hint(value)
        lo, hi = meta.get("range", (None, None))
        if (lo is not None and value < lo) or (hi is not None and value > hi):
            raise fail(f"{lo} to {hi}" if hi is not None else f">= {lo}")
        return value
    if hint is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise fail("a string")
        if "choices" in meta and value not in meta["choices"]:
            raise fail(", ".join(meta["choices"]))
        return value
    raise TypeError(f"config field {key}: unsupported type {hint}")  # a bug in this file, not user input


def to_dict(config: Config) -> dict:
    """The config as plain data (for writing a config file, e.g. by `edge-yolox service install`)."""
    return dataclasses.asdict(config)


__all__ = ["BACKEND_NAMES", "Config", "ConfigError", "board_names", "detect_board", "load_config", "to_dict"]
