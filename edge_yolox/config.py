"""Configuration: board YAML + user YAML (--config) + command-line flags -> one validated dataclass tree.

Later layers override earlier ones key by key. Every value remembers which layer set it, so an error
names the file (or "command line"), the dotted key and what is allowed.
"""

from __future__ import annotations

import logging
import os
import platform
import socket
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Optional

from edge_yolox.backends import BACKENDS, check_options
from edge_yolox.errors import ConfigError
from edge_yolox.files import parse_yaml, read_text
from edge_yolox.postprocess import CONF, IOU, MAX_DET
from edge_yolox.schema import bounded as _range
from edge_yolox.schema import build
from edge_yolox.schema import choice as _choice
from edge_yolox.sinks import check_sections
from edge_yolox.zones import COORD_MAX, DIRECTIONS, name_problem, polygon_problem, segment_problem

log = logging.getLogger(__name__)

BACKEND_NAMES = tuple(BACKENDS)
CAMERA_KINDS = ("opencv", "picamera2", "nvargus")
COMMAND_LINE = "command line"
DEFAULTS = "built-in defaults"


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
    options: dict[str, dict] = field(default_factory=dict)  # backend name -> its OPTIONS: backends.check_options
    legacy: bool = False  # pre-0.1.1 YOLOX weights: RGB/255/mean-std input
    class_names: list[str] = field(default_factory=list)


@dataclass
class DetectConfig:
    conf: float = _range(0.0, 1.0, default=CONF)
    iou: float = _range(0.0, 1.0, default=IOU)
    agnostic: bool = False
    classes: list[str] = field(default_factory=list)  # names or ids; empty: all
    max_det: int = _range(1, 10000, default=MAX_DET)


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
    state_dir: str = ""  # line totals (lines.json); empty: $STATE_DIRECTORY (systemd) or ~/.local/state/edge-yolox


@dataclass
class TrackConfig:
    enabled: bool = False  # --track; zones or lines turn it on unless it is set to false
    thresh: float = _range(0.0, 1.0, default=0.5)  # high-score detections; a new track needs thresh + 0.1
    low: float = _range(0.0, 1.0, default=0.1)  # low-score floor of the second association; <= thresh
    match: float = _range(0.01, 1.0, default=0.8)  # first association: largest cost 1 - IoU * score that matches
    buffer: int = _range(0, 108000, default=30)  # frames a lost track is kept, at 30 fps (scaled by frame rate)
    frame_rate: float = _range(0.0, 1000.0, default=0.0)  # 0: the source's (30 when it has none)
    per_class: bool = False  # true: a track only takes detections of its own class
    max_tracks: int = _range(1, 100000, default=1000)
    update_interval_s: float = _range(0.0, 86400.0, default=5.0)  # `update` events per track (0: none)
    anchor: str = _choice("bottom", "center", default="bottom")  # the box's point tested against zones and lines


POINTS = {"range": (0.0, COORD_MAX)}  # [x, y] values: normalised (all <= 1) or pixels (edge_yolox.zones)


@dataclass
class ZoneConfig:
    polygon: list[list[float]] = field(metadata=POINTS)  # >= 3 points [x, y]
    classes: list[str] = field(default_factory=list)  # names or ids; empty: all
    min_frames: int = _range(1, 10000, default=3)  # consecutive frames inside (outside) to enter (leave)


@dataclass
class LineConfig:
    points: list[list[float]] = field(metadata=POINTS)  # [[x1, y1], [x2, y2]]
    classes: list[str] = field(default_factory=list)
    direction: str = _choice(*DIRECTIONS, default="left")  # "in": crossing towards this side of a -> b


@dataclass
class Config:
    board: str = "x86"
    description: str = ""
    model: ModelConfig = field(default_factory=ModelConfig)
    detect: DetectConfig = field(default_factory=DetectConfig)
    camera: CameraConfig = field(default_factory=CameraConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    track: TrackConfig = field(default_factory=TrackConfig)
    zones: dict[str, ZoneConfig] = field(default_factory=dict)
    lines: dict[str, LineConfig] = field(default_factory=dict)
    outputs: dict[str, dict] = field(default_factory=dict)  # sink sections: edge_yolox.sinks.check_sections
    origins: dict[str, str] = field(default_factory=dict, init=False, repr=False)  # dotted key -> layer

    @property
    def device(self) -> str:
        return self.runtime.device or socket.gethostname()

    def origin(self, key: str) -> str:
        """The file (or "command line", "built-in defaults") that set `key` or the section above it."""
        return origin_of(self.origins, key)


# ---- boards


def board_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("edge_yolox.boards").iterdir() if p.name.endswith(".yaml"))


def board_file(name: str) -> tuple[str, str]:
    """(text, origin) of a board given by name or as a path to a YAML file."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        return read_text(name, "board file"), name
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
    """A config layer: bounded YAML (edge_yolox.files) holding a mapping of sections."""
    data = parse_yaml(text, origin)
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


def read_zones(path: str) -> dict:
    """A `--zones` file: a config layer holding only `zones:` and/or `lines:`."""
    layer = read_yaml(read_text(path, "zones file"), path)
    unknown = [key for key in layer if key not in ("zones", "lines")]
    if unknown:
        raise ConfigError(f"{path}: {unknown[0]}: unknown key; allowed in a zones file: zones, lines")
    return layer


def load_config(board: Optional[str] = None, config_file: Optional[str] = None,
                overrides: Optional[dict] = None, zones_file: Optional[str] = None) -> Config:
    """Board YAML, then the user's YAML, then the zones file, then command-line overrides (nested dict),
    validated."""
    origins: dict[str, str] = {}
    user: dict = {}
    user_origin = ""
    if config_file:
        user = read_yaml(read_text(config_file, "config"), config_file)
        user_origin = config_file
    name = board or user.get("board") or detect_board()
    if not isinstance(name, str):
        raise ConfigError(f"{user_origin or COMMAND_LINE}: board: must be a board name; allowed: "
                          f"{', '.join(board_names())}")
    text, board_origin = board_file(name)
    data = merge({}, read_yaml(text, board_origin), board_origin, origins)
    if user:
        data = merge(data, user, user_origin, origins)
    if zones_file:
        data = merge(data, read_zones(zones_file), zones_file, origins)
    if overrides:
        data = merge(data, overrides, COMMAND_LINE, origins)
    data["board"] = Path(name).stem if name.endswith((".yaml", ".yml")) else name
    config = build(Config, data, lambda key: origin_of(origins, key))
    config.origins = origins
    check_sections(config.outputs, config.origin)
    check_options(config.model.options, config.origin)
    if config.source.reconnect_max_s < config.source.reconnect_min_s:
        raise ConfigError(f"{origin_of(origins, 'source.reconnect_max_s')}: source.reconnect_max_s: must be "
                          f">= source.reconnect_min_s ({config.source.reconnect_min_s})")
    _check_tracking(config)
    return config


def _check_tracking(config: Config) -> None:
    """What the schema cannot say about `track:`, `zones:` and `lines:`; zones or lines turn tracking on."""
    def fail(key: str, allowed: str) -> None:
        raise ConfigError(f"{config.origin(key)}: {key}: {allowed}")

    if config.track.low > config.track.thresh:
        fail("track.low", f"invalid value {config.track.low}; allowed: <= track.thresh ({config.track.thresh})")
    for kind, items, field_name, problem in (("zones", config.zones, "polygon", polygon_problem),
                                             ("lines", config.lines, "points", segment_problem)):
        for name, item in items.items():
            if name_problem(name):
                fail(f"{kind}.{name}", f"invalid name {name!r}; allowed: {name_problem(name)}")
            value = getattr(item, field_name)
            if problem(value):
                shown = repr(value) if len(repr(value)) <= 80 else repr(value)[:77] + "..."
                fail(f"{kind}.{name}.{field_name}", f"invalid value {shown}; allowed: {problem(value)}")
    if (config.zones or config.lines) and not config.track.enabled:
        if "track.enabled" in config.origins:
            fail("track.enabled", "false, but zones and lines need tracking: set it to true (--track) or remove "
                                  "the zones and lines")
        config.track.enabled = True
        log.info("zones/lines given: tracking turned on (track.enabled)")


def state_dir(runtime: RuntimeConfig) -> Path:
    """Where state that outlives a run goes (line totals): runtime.state_dir, systemd's StateDirectory=, or the
    XDG state folder."""
    chosen = runtime.state_dir or os.environ.get("STATE_DIRECTORY", "").split(":")[0]
    if chosen:
        return Path(os.path.expandvars(chosen)).expanduser()
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "edge-yolox"


def origin_of(origins: dict[str, str], key: str) -> str:
    """The layer that set `key`, or that set the nearest section above it."""
    while key:
        if key in origins:
            return origins[key]
        key = key.rpartition(".")[0]
    return DEFAULTS


__all__ = ["BACKEND_NAMES", "Config", "ConfigError", "board_names", "detect_board", "load_config"]
