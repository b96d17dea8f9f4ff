"""Sinks: where each frame's result goes (stdout, files, MQTT, serial, HTTP preview, video).

The contract every sink module follows, so the CLI, the config file and the service unit stay in step:
- `NAME`: the key of its section under `outputs:` in the config (e.g. "mqtt");
- `DEFAULTS`: every key of that section with its default, which also gives its type (`schema.options`);
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
from typing import Callable

from edge_yolox import schema
from edge_yolox.sinks.base import Sink, SinkContext

# Modules under edge_yolox.sinks, in the order sinks are built and closed.
SINK_MODULES = ("stdout", "jsonl", "video", "mqtt", "serial", "http")


def modules():
    """The sink modules present in this installation, in SINK_MODULES order."""
    return [importlib.import_module(f"edge_yolox.sinks.{name}") for name in SINK_MODULES
            if importlib.util.find_spec(f"edge_yolox.sinks.{name}") is not None]


def check_sections(outputs: dict[str, dict], origin: Callable[[str], str]) -> None:
    """Every `outputs:` section against its sink's DEFAULTS; `origin(key)` names the file that set a key."""
    defaults = {module.NAME: {"enabled": True, **module.DEFAULTS} for module in modules()}
    schema.check_sections(outputs, "outputs", defaults, origin, "output")


__all__ = ["SINK_MODULES", "Sink", "SinkContext", "check_sections", "modules"]
