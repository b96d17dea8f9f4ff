"""What every source is built from.

A *reader* grabs frames in the caller's thread. A *source* is what the pipeline reads:
- `SequentialSource`: every frame in order (files, images, synthetic) — nothing is skipped;
- `LiveSource`: a capture thread keeps only the newest frame (stale ones are dropped and counted) and
  reconnects with exponential backoff when a camera or stream fails, without ever ending the run.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Optional, Protocol

import numpy as np

log = logging.getLogger(__name__)


@dataclass
class Frame:
    image: np.ndarray  # H×W×3 BGR uint8
    index: int  # position in the source, counting dropped frames too
    ts: float  # wall-clock time of capture
    name: str = ""  # file name for image folders
    prepared: Any = None  # the model input, when the source prepared it ahead (SequentialSource)


class Reader(Protocol):
    name: str
    fps: Optional[float]

    def grab(self) -> Optional[np.ndarray]:
        """The next BGR frame, or None when the source ended or failed."""

    def close(self) -> None: ...


class Source:
    """What the pipeline reads. `read` returns None when no frame came within `timeout`; `finished`
    tells an ended file from a live source that is waiting."""

    name = ""
    live = False
    fps: Optional[float] = None
    dropped = 0
    reconnects = 0
    finished = False

    def read(self, timeout: float = 1.0) -> Optional[Frame]:
        raise NotImplementedError

    def close(self) -> None:
        pass


class SequentialSource(Source):
    """Every frame of a finite (or synthetic) source, in order; nothing is skipped.

    A reader thread decodes (and with `prepare`, converts to the model's input) up to `prefetch` frames
    ahead, so this work overlaps inference instead of adding to each frame's time.
    """

    def __init__(self, reader: Reader, prefetch: int = 2, prepare: Optional[Callable[[np.ndarray], Any]] = None):
        self.reader = reader
        self.prepare = prepare
        self.name = reader.name
        self.fps = reader.fps
        self._queue: queue.Queue[Optional[Frame]] = queue.Queue(maxsize=prefetch)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._decode, name=f"decode:{self.name}", daemon=True)
        self._thread.start()

    def _decode(self) -> None:
        index = 0
        while not self._stop.is_set():
            try:
                image = self.reader.grab()
            except Exception as exc:  # a decoder error ends the file like its end would, and is logged
                log.warning("%s: cannot decode frame %d: %s", self.name, index, exc)
                image = None
            frame = None if image is None else Frame(image, index, time.time(),
                                                     getattr(self.reader, "current_name", ""), self._prepare(image))
            self._queue.put(frame)
            if frame is None:
                return
            index += 1

    def _prepare(self, image: np.ndarray) -> Any:
        if self.prepare is None:
            return None
        try:
            return self.prepare(image)
        except Exception:  # left to the pipeline, which prepares it again and reports the error its way
            return None

    def read(self, timeout: float = 1.0) -> Optional[Frame]:
        if self.finished:
            return None
        try:
            frame = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        self.finished = frame is None
        return frame

    def close(self) -> None:
        self._stop.set()
        while self._thread.is_alive():  # unblock a reader waiting for room in the queue
            try:
                self._queue.get(timeout=0.1)
            except queue.Empty:
                pass
        self.reader.close()


class LiveSource(Source):
    """A capture thread that keeps only the newest frame and reopens the reader when it fails.

    `open_reader` is called once here (so a missing camera is an error at start-up) and again after each
    failure, waiting backoff[0] seconds and doubling up to backoff[1]. With `reconnect=False` (a file
    played in real time) the end of the reader ends the source instead.
    """

    live = True

    def __init__(self, open_reader: Callable[[], Reader], backoff: tuple[float, float] = (0.5, 10.0),
                 reconnect: bool = True):
        self._open = open_reader
        self._backoff = backoff
        self._reconnect = reconnect
        self._reader: Optional[Reader] = open_reader()
        self.name = self._reader.name
        self.fps = self._reader.fps
        self._cond = threading.Condition()
        self._latest: Optional[Frame] = None
        self._count = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._capture, name=f"capture:{self.name}", daemon=True)
        self._thread.start()

    def _capture(self) -> None:
        delay = self._backoff[0]
        while not self._stop.is_set():
            if self._reader is None:
                try:
                    self._reader = self._open()
                    log.info("%s: reconnected", self.name)
                    self.reconnects += 1
                    delay = self._backoff[0]
                except Exception as exc:  # any failure to reopen is retried: a live source never ends the run
                    log.warning("%s: reopening failed (%s); retrying in %.1f s", self.name, exc, delay)
                    self._stop.wait(delay)
                    delay = min(delay * 2, self._backoff[1])
                    continue
            image = self._grab()
            if image is None:
                self._close_reader()
                if not self._reconnect:
                    break
                log.warning("%s: no frame (stream lost or camera failed); reconnecting", self.name)
                continue
            with self._cond:
                if self._latest is not None:
                    self.dropped += 1  # the consumer was slower than the camera: keep only the newest
                self._latest = Frame(image, self._count, time.time())
                self._count += 1
                self._cond.notify()
        with self._cond:
            self.finished = True
            self._cond.notify()

    def _grab(self) -> Optional[np.ndarray]:
        try:
            return self._reader.grab()
        except Exception as exc:  # a driver error is a lost frame, handled like a lost stream
            log.warning("%s: capture error: %s", self.name, exc)
            return None

    def _close_reader(self) -> None:
        reader, self._reader = self._reader, None
        try:
            reader.close()
        except Exception as exc:  # a driver failing to close must not end the capture thread
            log.warning("%s: closing the reader failed: %s", self.name, exc)

    def read(self, timeout: float = 1.0) -> Optional[Frame]:
        with self._cond:
            if self._latest is None and not self.finished:
                self._cond.wait(timeout)
            frame, self._latest = self._latest, None
            return frame

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)
        if self._thread.is_alive():
            log.warning("%s: capture thread still blocked in the driver; leaving it", self.name)
        elif self._reader is not None:
            self._close_reader()


class Paced:
    """Wraps a file reader to deliver frames at the file's own rate (`--realtime`)."""

    def __init__(self, reader: Reader, fps: Optional[float]):
        self.reader = reader
        self.name = reader.name
        self.fps = fps
        self._period = 1.0 / fps if fps else 0.0
        self._next = time.monotonic()

    def grab(self) -> Optional[np.ndarray]:
        image = self.reader.grab()
        self._next += self._period
        delay = self._next - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            self._next = time.monotonic()  # fell behind: do not try to catch up in a burst
        return image

    def close(self) -> None:
        self.reader.close()
