"""Detections to a serial port (pyserial): JSON lines, or compact COBS/CRC-16 binary frames (see frames.py).

A writer thread owns the port: `write` only queues (bounded, oldest dropped and counted), a stalled
reader costs at most `write_timeout_s` per frame on that thread, and a vanished port (USB unplugged)
is reopened with exponential backoff.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from typing import Any, Callable, Optional

import numpy as np

from edge_yolox.errors import ConfigError
from edge_yolox.sinks import Sink, SinkContext, frames, options

NAME = "serial"
FORMATS = ("json", "binary")
DELIMITER = {"json": b"\n", "binary": b"\x00"}
DEFAULTS = {"port": "", "baud": 115200, "format": "json", "write_timeout_s": 0.5, "queue_size": 64,
            "stats": False, "reconnect_min_s": 0.5, "reconnect_max_s": 10.0}
log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--serial", metavar="PORT[:BAUD]", help="detections to a serial port, e.g. /dev/ttyUSB0:115200")
    parser.add_argument("--serial-format", choices=FORMATS, help="json lines (default) or binary COBS/CRC-16 frames")


def section_from_args(args) -> Optional[dict]:
    spec = getattr(args, "serial", None)
    if not spec:
        return None
    port, _, baud = spec.rpartition(":")
    section: dict[str, Any] = {"port": port, "baud": int(baud)} if baud.isdigit() and port else {"port": spec}
    if getattr(args, "serial_format", None):
        section["format"] = args.serial_format
    return section


def from_config(section: dict, ctx: SinkContext) -> SerialSink:
    opts = options(section, NAME, DEFAULTS)
    if not opts["port"]:
        raise ConfigError(f"outputs.{NAME}.port: required (e.g. /dev/ttyUSB0)")
    if opts["format"] not in FORMATS:
        raise ConfigError(f"outputs.{NAME}.format: invalid value {opts['format']!r}; allowed: {', '.join(FORMATS)}")
    for key in ("baud", "queue_size"):
        if opts[key] < 1:
            raise ConfigError(f"outputs.{NAME}.{key}: invalid value {opts[key]!r}; allowed: >= 1")
    if not 0 < opts["reconnect_min_s"] <= opts["reconnect_max_s"]:
        raise ConfigError(f"outputs.{NAME}.reconnect_min_s: must be > 0 and <= reconnect_max_s")
    return SerialSink(opts["port"], int(opts["baud"]), opts["format"], float(opts["write_timeout_s"]),
                      int(opts["queue_size"]), opts["stats"], (opts["reconnect_min_s"], opts["reconnect_max_s"]))


def _open_port(port: str, baud: int, write_timeout: float):
    import serial  # pyserial: imported here so the runtime starts without it unless --serial is used

    return serial.Serial(port, baud, timeout=0, write_timeout=write_timeout, exclusive=True)


class SerialSink(Sink):
    def __init__(self, port: str, baud: int = 115200, fmt: str = "json", write_timeout: float = 0.5,
                 queue_size: int = 64, with_stats: bool = False, backoff: tuple[float, float] = (0.5, 10.0),
                 opener: Callable = _open_port):
        self.port_name, self.baud, self.format = port, baud, fmt
        self.write_timeout, self.with_stats, self.backoff, self.opener = write_timeout, with_stats, backoff, opener
        self.queue: deque[bytes] = deque()
        self.queue_size = queue_size
        self.cond = threading.Condition()
        self.closing = False
        self.counters = {"sent": 0, "dropped": 0, "timeouts": 0, "reopens": 0}
        self.port = None
        self.failing = False  # the port is gone: log the outage once, not every retry
        self.thread = threading.Thread(target=self._run, name="serial-sink", daemon=True)
        self.thread.start()

    # ---- inference thread: encode and queue, nothing else

    def write(self, record: dict[str, Any], frame: Optional[np.ndarray] = None) -> None:
        if self.format == "binary":
            self._put(frames.encode(record))
        else:
            self._put(json.dumps(record, separators=(",", ":")).encode() + b"\n")

    def stats(self, stats: dict[str, Any]) -> None:
        stats.setdefault("outputs", {})[NAME] = self.health()  # seen by the sinks after this one
        if self.with_stats and self.format == "json":
            self._put(json.dumps({"stats": stats}, separators=(",", ":")).encode() + b"\n")

    def health(self) -> dict[str, Any]:
        with self.cond:
            return {**self.counters, "queued": len(self.queue), "connected": self.port is not None}

    def _put(self, data: bytes) -> None:
        with self.cond:
            if len(self.queue) >= self.queue_size:
                self.queue.popleft()
                self.counters["dropped"] += 1
            self.queue.append(data)
            self.cond.notify()

    # ---- writer thread

    def _run(self) -> None:
        delay = self.backoff[0]
        resync = False  # the last write may have been cut: start the next one on a fresh line/frame
        while True:
            if self.port is None:
                if self.closing or not self._reopen():
                    with self.cond:
                        if self.closing:
                            return
                        self.cond.wait(delay)
                    delay = min(delay * 2, self.backoff[1])
                    continue
                delay = self.backoff[0]
            with self.cond:
                while not self.queue and not self.closing:
                    self.cond.wait()
                if not self.queue:
                    return
                data = self.queue.popleft()
            resync = self._send(data, resync)

    def _reopen(self) -> bool:
        try:
            port = self.opener(self.port_name, self.baud, self.write_timeout)
        except Exception as exc:  # missing device, permission, busy: all retried with backoff
            if not self.failing:
                log.warning("serial %s: cannot open (%s); retrying with backoff", self.port_name, exc)
            self.failing = True
            return False
        with self.cond:
            self.port = port
            self.counters["reopens"] += self.failing
        self.failing = False
        log.info("serial %s open at %d baud (%s)", self.port_name, self.baud, self.format)
        return True

    def _send(self, data: bytes, resync: bool) -> bool:
        """Write one message; True when it may have been cut off (the reader must resynchronise)."""
        import serial

        try:
            self.port.write(DELIMITER[self.format] + data if resync else data)
        except serial.SerialTimeoutException:
            with self.cond:
                self.counters["timeouts"] += 1
                self.counters["dropped"] += 1
            return True
        except (serial.SerialException, OSError) as exc:
            log.warning("serial %s: write failed (%s); reopening", self.port_name, exc)
            self.failing = True
            with self.cond:
                self.queue.appendleft(data)  # not lost: sent again once the port is back
                self._close_port()
            return True
        with self.cond:
            self.counters["sent"] += 1
        return False

    def _close_port(self) -> None:
        port, self.port = self.port, None
        if port is not None:
            try:
                port.close()
            except Exception as exc:  # an unplugged device can fail even to close
                log.debug("serial close: %s", exc)

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        # Drain what is queued while the port works; never longer than a few write timeouts.
        self.thread.join(timeout=max(1.0, 4 * self.write_timeout))
        with self.cond:
            if self.queue:
                log.warning("serial %s: %d messages not written at shutdown", self.port_name, len(self.queue))
            self._close_port()
