"""Sinks: where each frame's result goes (stdout, files, MQTT, serial, HTTP preview, video).

The contract every sink module follows, so the CLI, the config file and the service unit stay in step:
- `NAME`: the key of its section under `outputs:` in the config (e.g. "mqtt");
- `DEFAULTS`: every key of that section with its default, which also gives its type (`options`);
- `add_arguments(parser)`: its CLI flags;
- `section_from_args(args) -> dict | None`: those flags as a config section (None when not asked for);
- `from_config(section: dict, ctx: SinkContext) -> Sink`: validates the section (ConfigError naming
  the key on a bad value) and builds the sink.
A sink's `write` is called on the inference thread for every frame: it must return quickly and never
block on a network or a device (queue and hand off to its own thread instead).
A section `{"enabled": false}` turns a sink off (the pipeline drops the key before `from_config`), so a
flag like `--no-stdout` can disable what a board or config file enables.
"""

from __future__ import annotations

import importlib
import importlib.util
from dataclasses import dataclass
from typing import Any, Callable, Optional

import numpy as np

# Modules under edge_yolox.sinks, in the order sinks are built and closed.
SINK_MODULES = ("stdout", "jsonl", "video", "mqtt", "serial", "http")


@dataclass(frozen=True)
class SinkContext:
    device: str  # stable id of this device (MQTT topic level, client id)
    board: str
    model: str
    source: str
    class_names: tuple[str, ...] = ()
    fps: Optional[float] = None  # the source's frame rate when known (video writers need one)


class Sink:
    """Base class: override what the sink needs."""

    def write(self, record: dict[str, Any], frame: Optional[np.ndarray] = None) -> None:
        """One frame's result in the DESIGN.md schema; `frame` is the source frame (BGR) when wanted."""

    def stats(self, stats: dict[str, Any]) -> None:
        """Periodic runtime statistics (fps, latencies, drops, temperature)."""

    def close(self) -> None:
        """Flush and release; called once on shutdown, also after errors."""

    wants_frames = False  # True when write() needs the image (video, preview)


def modules():
    """The sink modules present in this installation, in SINK_MODULES order."""
    return [importlib.import_module(f"edge_yolox.sinks.{name}") for name in SINK_MODULES
            if importlib.util.find_spec(f"edge_yolox.sinks.{name}") is not None]


def check_sections(outputs: dict[str, dict], origin: Callable[[str], str]) -> None:
    """Every `outputs:` section against its sink's DEFAULTS, when the config is loaded: `service install` refuses
    what would otherwise fail at boot. `origin(key)` names the file that set a key."""
    from edge_yolox.errors import ConfigError

    present = {module.NAME: module for module in modules()}
    for name, section in outputs.items():
        where = origin(f"outputs.{name}")
        if name not in present:
            raise ConfigError(f"{where}: outputs.{name}: unknown output; allowed here: {', '.join(present)}")
        try:
            options(section, name, {"enabled": True, **present[name].DEFAULTS})
        except ConfigError as exc:
            raise ConfigError(f"{where}: {exc}") from None


def options(section: dict[str, Any], name: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """`section` checked against `defaults` (unknown keys, types, finite numbers, no control characters in
    text) and completed with them. Errors name the key; the pipeline adds the file that set it."""
    from edge_yolox.errors import ConfigError
    from edge_yolox.schema import check

    for key, value in section.items():
        if key not in defaults:
            raise ConfigError(f"outputs.{name}.{key}: unknown key; allowed: {', '.join(defaults)}")
        default = defaults[key]
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if numeric \
            else default is None or isinstance(value, type(default))
        if not ok:
            raise ConfigError(f"outputs.{name}.{key}: invalid value {value!r}; allowed: a {type(default).__name__}")
        hint = float if numeric else list[str] if isinstance(value, list) else str if isinstance(value, str) else None
        if hint is not None:
            check(value, hint, {}, f"outputs.{name}.{key}", lambda _: "")
    return {**defaults, **section}
