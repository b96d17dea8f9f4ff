"""What every sink is: the `Sink` interface and the `SinkContext` it is built with. Sink modules import this,
never the registry (edge_yolox.sinks)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional

import numpy as np


@dataclass(frozen=True)
class SinkContext:
    device: str  # stable id of this device (MQTT topic level, client id)
    board: str
    model: str
    source: str
    class_names: tuple[str, ...] = ()
    fps: Optional[float] = None  # the source's frame rate when known (video writers need one)
    tracking: bool = False  # records carry track ids, `events` (and `zones`/`lines` counts when configured)
    zones: tuple = ()  # edge_yolox.zones.Zone, classes in the model's spelling
    lines: tuple = ()  # edge_yolox.zones.Line
    anchor: str = "bottom"  # track.anchor: the box point zones and lines test (trails follow it)


class Sink:
    """Base class: override what the sink needs."""

    name = ""  # its `outputs:` key, under which the pipeline puts its health in the stats

    def write(self, record: dict[str, Any], frame: Optional[np.ndarray] = None) -> None:
        """One frame's record (ARCHITECTURE.md, "Records"); `frame` is the source frame (BGR) when wanted."""

    def stats(self, stats: dict[str, Any]) -> None:
        """Periodic runtime statistics (fps, latencies, drops, temperature)."""

    def health(self) -> dict[str, Any]:
        """Its own counters and state (queued, dropped, connected, ...), merged into the stats under
        `outputs.<name>` by the pipeline; empty when it has none."""
        return {}

    def close(self) -> None:
        """Flush and release; called once on shutdown, also after errors."""

    wants_frames = False  # True when write() needs the image (video, preview)
