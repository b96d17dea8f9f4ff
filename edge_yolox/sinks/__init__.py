"""Sinks: where each frame's result goes (stdout, files, MQTT, serial, HTTP preview, video).

The contract every sink module follows, so the CLI, the config file and the service unit stay in step:
- `NAME`: the key of its section under `outputs:` in the config (e.g. "mqtt");
- `add_arguments(parser)`: its CLI flags;
- `section_from_args(args) -> dict | None`: those flags as a config section (None when not asked for);
- `from_config(section: dict, ctx: SinkContext) -> Sink`: validates the section (ConfigError naming
  the key on a bad value) and builds the sink.
A sink's `write` is called on the inference thread for every frame: it must return quickly and never
block on a network or a device (queue and hand off to its own thread instead).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Optional

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
    return [importlib.import_module(f"edge_yolox.sinks.{name}") for name in SINK_MODULES]
