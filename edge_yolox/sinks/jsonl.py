"""One JSON object per line in a file (appended; each line is written whole, so a crash loses nothing)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from edge_yolox.errors import ConfigError
from edge_yolox.schema import options
from edge_yolox.sinks.base import Sink, SinkContext

NAME = "jsonl"
DEFAULTS = {"path": "", "stats": False}


def add_arguments(parser) -> None:
    parser.add_argument("--jsonl", metavar="PATH", help="append one JSON line per frame to this file")


def section_from_args(args) -> Optional[dict]:
    return {"path": args.jsonl} if getattr(args, "jsonl", None) else None


def from_config(section: dict, ctx: SinkContext) -> JsonlSink:
    opts = options(section, f"outputs.{NAME}", DEFAULTS)
    if not opts["path"]:
        raise ConfigError(f"outputs.{NAME}.path: required (the file to append to)")
    return JsonlSink(Path(opts["path"]).expanduser(), opts["stats"])


class JsonlSink(Sink):
    name = NAME

    def __init__(self, path: Path, with_stats: bool = False):
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self.file = open(path, "a", buffering=1, encoding="utf-8")  # line-buffered: whole lines on disk
        except OSError as exc:
            raise ConfigError(f"outputs.{NAME}.path: cannot open {path} ({exc.strerror})") from None
        self.with_stats = with_stats

    def write(self, record: dict[str, Any], frame: Optional[np.ndarray] = None) -> None:
        self.file.write(json.dumps(record, separators=(",", ":")) + "\n")

    def stats(self, stats: dict[str, Any]) -> None:
        if self.with_stats:
            self.file.write(json.dumps({"stats": stats}, separators=(",", ":")) + "\n")

    def close(self) -> None:
        if not self.file.closed:
            self.file.flush()
            os.fsync(self.file.fileno())
            self.file.close()
