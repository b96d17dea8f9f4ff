"""Detections to a serial port (pyserial): JSON lines, or compact COBS/CRC-16 binary frames (see frames.py).

Binary frames come in two layouts: version 1 (no track ids) and version 2 (a track id per detection).
`version: 0` (the default) picks 2 when the run tracks (`--track`), else 1, so a receiver built for version 1
keeps working until tracking is turned on; set it to pin one. JSON lines carry the record as it is (track ids,
events, counts included).

A writer thread owns the port: it alone opens, writes and closes it. `write` only queues (bounded, oldest
dropped and counted). A message, once started, is written whole: a stalled reader holds it (each
`write_timeout_s` without room counts a timeout) while newer messages wait in the queue, so the reader gets
the newest ones when it resumes. A vanished port (USB unplugged) is reopened with exponential backoff.
"""

from __future__ import annotations

import json
import logging
import os
import select
import threading
from collections import deque
from typing import Any, Callable, Optional

import numpy as np

from edge_yolox.errors import ConfigError
from edge_yolox.schema import options
from edge_yolox.sinks import frames
from edge_yolox.sinks.base import Sink, SinkContext

NAME = "serial"
FORMATS = ("json", "binary")
DELIMITER = {"json": b"\n", "binary": b"\x00"}
DEFAULTS = {"port": "", "baud": 115200, "format": "json", "version": 0, "write_timeout_s": 0.5, "queue_size": 64,
            "stats": False, "reconnect_min_s": 0.5, "reconnect_max_s": 10.0}  # version 0: 2 with --track, else 1
log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--serial", metavar="PORT[:BAUD]", help="detections to a serial port, e.g. /dev/ttyUSB0:115200")
    parser.add_argument("--serial-format", choices=FORMATS, help="json lines (default) or binary COBS/CRC-16 frames")
    parser.add_argument("--serial-version", type=int, choices=frames.VERSIONS,
                        help="binary frame layout: 1, or 2 with track ids (default: 2 with --track, else 1)")


def section_from_args(args) -> Optional[dict]:
    spec = getattr(args, "serial", None)
    if not spec:
        return None
    port, _, baud = spec.rpartition(":")
    section: dict[str, Any] = {"port": port, "baud": int(baud)} if baud.isdigit() and port else {"port": spec}
    if getattr(args, "serial_format", None):
        section["format"] = args.serial_format
    if getattr(args, "serial_version", None):
        section["version"] = args.serial_version
    return section


def from_config(section: dict, ctx: SinkContext) -> SerialSink:
    opts = options(section, f"outputs.{NAME}", DEFAULTS)
    if not opts["port"]:
        raise ConfigError(f"outputs.{NAME}.port: required (e.g. /dev/ttyUSB0)")
    if opts["format"] not in FORMATS:
        raise ConfigError(f"outputs.{NAME}.format: invalid value {opts['format']!r}; allowed: {', '.join(FORMATS)}")
    if opts["version"] not in (0, *frames.VERSIONS):
        raise ConfigError(f"outputs.{NAME}.version: invalid value {opts['version']!r}; allowed: 0 (2 when tracking, "
                          f"else 1), 1, 2")
    for key in ("baud", "queue_size"):
        if opts[key] < 1:
            raise ConfigError(f"outputs.{NAME}.{key}: invalid value {opts[key]!r}; allowed: >= 1")
    if not opts["write_timeout_s"] > 0:  # the writer waits for room in slices of it
        raise ConfigError(f"outputs.{NAME}.write_timeout_s: invalid value {opts['write_timeout_s']!r}; allowed: > 0")
    if not 0 < opts["reconnect_min_s"] <= opts["reconnect_max_s"]:
        raise ConfigError(f"outputs.{NAME}.reconnect_min_s: must be > 0 and <= reconnect_max_s")
    version = int(opts["version"]) or (2 if ctx.tracking else 1)
    return SerialSink(opts["port"], int(opts["baud"]), opts["format"], float(opts["write_timeout_s"]),
                      int(opts["queue_size"]), opts["stats"], (opts["reconnect_min_s"], opts["reconnect_max_s"]),
                      version=version)


def _open_port(port: str, baud: int):
    import serial  # pyserial: imported here so the runtime starts without it unless --serial is used

    return serial.Serial(port, baud, timeout=0, exclusive=True)  # its fd is non-blocking: _write waits


class SerialSink(Sink):
    name = NAME

    def __init__(self, port: str, baud: int = 115200, fmt: str = "json", write_timeout: float = 0.5,
                 queue_size: int = 64, with_stats: bool = False, backoff: tuple[float, float] = (0.5, 10.0),
                 opener: Callable = _open_port, version: int = 1):
        self.port_name, self.baud, self.format, self.version = port, baud, fmt, version
        self.write_timeout, self.with_stats, self.backoff, self.opener = write_timeout, with_stats, backoff, opener
        self.queue: deque[bytes] = deque()
        self.queue_size = queue_size
        self.cond = threading.Condition()
        self.closing = False  # close() called: drain the queue, no reopening
        self.stopped = False  # drain over (budget spent or the reader stalled): exit now
        self.counters = {"sent": 0, "dropped": 0, "timeouts": 0, "reopens": 0}
        self.port = None
        self.failing = False  # the port is gone: log the outage once, not every retry
        self.thread = threading.Thread(target=self._run, name="serial-sink", daemon=True)
        self.thread.start()

    # ---- inference thread: encode and queue, nothing else

    def write(self, record: dict[str, Any], frame: Optional[np.ndarray] = None) -> None:
        if self.format == "binary":
            self._put(frames.encode(record, self.version))
        else:
            self._put(json.dumps(record, separators=(",", ":")).encode() + b"\n")

    def stats(self, stats: dict[str, Any]) -> None:
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

    # ---- writer thread: the only one that touches the port

    def _run(self) -> None:
        delay = self.backoff[0]
        resync = False  # a message may have been cut: start the next one on a fresh line/frame
        try:
            while not self._finished():
                if self.port is None:
                    if not self._reopen():
                        self._pause(delay)
                        delay = min(delay * 2, self.backoff[1])
                        continue
                    delay = self.backoff[0]
                data = self._take()
                if data is not None:
                    resync = self._send(data, resync)
        finally:
            with self.cond:
                self._close_port()

    def _finished(self) -> bool:
        with self.cond:
            return self.stopped or (self.closing and (self.port is None or not self.queue))

    def _pause(self, seconds: float) -> None:
        with self.cond:
            if not self.closing:
                self.cond.wait(seconds)

    def _take(self) -> Optional[bytes]:
        with self.cond:
            while not self.queue and not self.closing:
                self.cond.wait()
            return self.queue.popleft() if self.queue and not self.stopped else None

    def _requeue(self, data: bytes) -> None:
        """Put an unsent message back at the head: it is the oldest, so a full queue drops it."""
        if len(self.queue) < self.queue_size:
            self.queue.appendleft(data)
        else:
            self.counters["dropped"] += 1

    def _reopen(self) -> bool:
        try:
            port = self.opener(self.port_name, self.baud)
        except Exception as exc:  # missing device, permission, busy: all retried with backoff
            if not self.failing:
                log.warning("serial %s: cannot open (%s); retrying with backoff", self.port_name, exc)
            self.failing = True
            return False
        with self.cond:
            if self.closing:  # close() began while opening: nothing more will be written
                port.close()
                return False
            self.port = port
            self.counters["reopens"] += self.failing
        self.failing = False
        log.info("serial %s open at %d baud (%s)", self.port_name, self.baud,
                 f"binary v{self.version}" if self.format == "binary" else self.format)
        return True

    def _send(self, data: bytes, resync: bool) -> bool:
        """Write one message; True when it was cut off (the reader must resynchronise)."""
        payload = DELIMITER[self.format] + data if resync else data
        try:
            written = self._write(payload)
        except OSError as exc:
            log.warning("serial %s: write failed (%s)%s", self.port_name, exc, "" if self.closing else "; reopening")
            self.failing = True
            with self.cond:
                self._requeue(data)  # not lost: sent again once the port is back
                self._close_port()
            return True
        with self.cond:
            if written == len(payload):
                self.counters["sent"] += 1
                return False
            self.stopped = True  # the reader stalled during shutdown: give up the drain
            if written:
                self.counters["dropped"] += 1
            else:
                self._requeue(data)  # untouched: counted with the messages left at shutdown
        return True

    def _write(self, data: bytes) -> int:
        """Bytes of `data` written: all of them, waiting for a slow or stalled reader, unless shutting down.

        pyserial's write() is not used: on a timeout it does not say how much went out, and it raises one
        even after writing everything when the buffer is left full.
        """
        fd, view = self.port.fileno(), memoryview(data)
        poller = select.poll()
        poller.register(fd, select.POLLOUT)
        done = 0
        while done < len(data) and not self.stopped:
            if not poller.poll(self.write_timeout * 1000):
                with self.cond:
                    self.counters["timeouts"] += 1
                if self.closing:
                    break
                continue
            try:
                done += os.write(fd, view[done:])
            except BlockingIOError:  # room for less than the kernel's minimum write: wait again
                pass
        return done

    def _close_port(self) -> None:
        port, self.port = self.port, None
        if port is None:
            return
        # At a stop, drop the output a stalled reader never took: a tty's close() would wait up to 30 s for it.
        for step in (port.reset_output_buffer, port.close) if self.stopped else (port.close,):
            try:
                step()
            except Exception as exc:  # an unplugged device can fail even to close
                log.debug("serial close: %s", exc)

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        # Drain what is queued while the reader keeps up; never longer than a few write timeouts.
        self.thread.join(timeout=max(1.0, 4 * self.write_timeout))
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        self.thread.join(timeout=2 * self.write_timeout + 1)  # it stops within one write timeout
        with self.cond:
            if self.thread.is_alive():
                log.warning("serial %s: writer thread did not stop", self.port_name)
            if self.queue:
                log.warning("serial %s: %d messages not written at shutdown", self.port_name, len(self.queue))
