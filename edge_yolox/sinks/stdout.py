"""JSON lines on stdout, one per frame (the default output); stats go to the log on stderr."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any, Optional

import numpy as np

from edge_yolox.schema import options
from edge_yolox.sinks.base import Sink, SinkContext

NAME = "stdout"
DEFAULTS: dict = {}
log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--no-stdout", action="store_true", help="no JSON lines on stdout")


def section_from_args(args) -> Optional[dict]:
    return {"enabled": False} if getattr(args, "no_stdout", False) else None


def from_config(section: dict, ctx: SinkContext) -> StdoutSink:
    options(section, f"outputs.{NAME}", DEFAULTS)
    return StdoutSink()


class StdoutSink(Sink):
    name = NAME

    def __init__(self, stream=None):
        self.stream = stream or sys.stdout
        self.broken = False

    def write(self, record: dict[str, Any], frame: Optional[np.ndarray] = None) -> None:
        if self.broken:
            return
        try:
            self.stream.write(json.dumps(record, separators=(",", ":")) + "\n")
            self.stream.flush()  # a reader (pipe, journal) sees each frame as it happens
        except BrokenPipeError:
            # The reader went away (e.g. `| head`): keep running for the other sinks, write nothing more,
            # and point fd 1 at /dev/null so the interpreter's final flush does not fail either.
            self.broken = True
            log.warning("stdout closed by its reader; no more JSON lines")
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.stream.fileno())
            os.close(devnull)

    def stats(self, stats: dict[str, Any]) -> None:
        log.info("stats %s", json.dumps(stats, separators=(",", ":")))
