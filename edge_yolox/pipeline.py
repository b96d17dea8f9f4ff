"""The run loop: source -> detector (letterbox, infer, postprocess) -> sinks, with stats and clean shutdown.

One inference thread; live sources capture on their own thread (newest frame only). SIGINT/SIGTERM stop
after the current frame, every sink is flushed and closed, and the run exits 0. systemd is told READY
after the first frame, pinged only while frames arrive (a hung loop or a camera that stopped delivering for
longer than the watchdog period gets the process restarted), and STOPPING at the end.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import statistics
import threading
import time
from collections import Counter, deque
from pathlib import Path
from typing import Any, Optional

from edge_yolox import sinks as sink_registry
from edge_yolox import telemetry
from edge_yolox.backends import ModelFile, available, find_model, open_model
from edge_yolox.config import COMMAND_LINE, DEFAULTS, Config
from edge_yolox.detector import Detector
from edge_yolox.errors import ConfigError, EdgeYoloxError, ModelError
from edge_yolox.events import Tracking
from edge_yolox.notify import Notifier
from edge_yolox.sinks import Sink, SinkContext
from edge_yolox.sources import Source, open_source

log = logging.getLogger(__name__)
BUNDLE_SUFFIX = {"ncnn": "ncnn", "tflite": "tflite", "onnxruntime": "onnx", "openvino": "openvino"}


def resolve_model(config: Config) -> ModelFile:
    """The model of model.path, or the one found in the board's search folders.

    Without a path, looks for <variant>-<precision>.<ncnn|tflite|onnx|openvino> bundles in model.search, trying
    backends in the board's order and skipping those not installed.
    """
    m = config.model
    forced = None if m.backend == "auto" else m.backend
    usable = [b for b in ([forced] if forced else m.backends) if available().get(b) is None]
    if m.path:
        path = Path(m.path).expanduser()
        for backend in usable if (path.is_dir() and not forced) else []:
            try:
                return find_model(path, backend)
            except ModelError:
                continue
        return find_model(path, forced)
    tried = []
    for backend in usable:
        for folder in m.search:
            candidate = Path(folder).expanduser() / f"{m.variant}-{m.precision}.{BUNDLE_SUFFIX[backend]}"
            tried.append(str(candidate))
            if candidate.exists():
                return find_model(candidate, backend)
    looked = f"looked for {', '.join(tried)}" if usable else "no backend of model.backends is installed"
    raise ConfigError(f"model.path: no model given and none found ({looked}); pass --model PATH")


def open_detector(config: Config) -> Detector:
    """The model with the `detect:` settings; with tracking, scores down to track.low (ByteTrack's second
    association uses them; the record lists those below detect.conf only when they belong to a track)."""
    m, d = config.model, config.detect
    backend = open_model(resolve_model(config), m.threads, input_size=m.input_size, legacy=m.legacy,
                         class_names=m.class_names or None, options=m.options)
    conf = min(d.conf, config.track.low) if config.track.enabled else d.conf
    detector = Detector(backend, conf=conf, iou=d.iou, class_agnostic=d.agnostic, max_det=d.max_det,
                        classes=d.classes or None)
    if not detector.nms:
        ignored = []
        for key, flag in (("iou", "--nms"), ("agnostic", "--agnostic")):
            origin = config.origin(f"detect.{key}")
            if origin != DEFAULTS:
                ignored.append(flag if origin == COMMAND_LINE else f"detect.{key} ({origin})")
        log.log(logging.WARNING if ignored else logging.INFO,
                "%s is end to end (meta.json nms: false): no NMS, the top %d detections scoring >= %g%s",
                backend.meta.name, d.max_det, conf, f"; ignored: {', '.join(ignored)}" if ignored else "")
    return detector


def build_sinks(config: Config, ctx: SinkContext) -> list[Sink]:
    """One sink per enabled `outputs:` section, built by the sink module of that name."""
    present = {module.NAME: module for module in sink_registry.modules()}  # load_config checked the names
    built: list[Sink] = []
    try:
        for name, module in present.items():
            section = dict(config.outputs.get(name) or {}) if name in config.outputs else None
            if section is None or section.pop("enabled", True) is False:
                continue
            try:
                built.append(module.from_config(section, ctx))
            except ConfigError as exc:  # sinks name the key (outputs.<name>...); the file that set it is known here
                raise ConfigError(f"{config.origin(f'outputs.{name}')}: {exc}") from None
    except BaseException:
        close_all(built)
        raise
    return built


def close_all(sinks: list[Sink]) -> None:
    for sink in sinks:
        try:
            sink.close()
        except Exception:  # one failing sink must not keep the others from flushing
            log.exception("closing %s failed", type(sink).__name__)


class Meter:
    """Running fps over the last frames and stage-latency medians over the last stats period."""

    def __init__(self, window: int = 30):
        self.times: deque[float] = deque(maxlen=window)
        self.latency: dict[str, list[float]] = {"pre": [], "infer": [], "post": []}
        self.labels: Counter[str] = Counter()

    def add(self, now: float, latency: dict[str, float], labels: list[str]) -> float:
        self.times.append(now)
        for stage, ms in latency.items():
            self.latency[stage].append(ms)
        self.labels.update(labels)
        return self.fps

    @property
    def fps(self) -> float:
        if len(self.times) < 2 or self.times[-1] <= self.times[0]:
            return 0.0
        return (len(self.times) - 1) / (self.times[-1] - self.times[0])

    def take(self) -> dict[str, Any]:
        """Medians and counts since the last call, then reset them."""
        out = {"latency_ms": {k: round(statistics.median(v), 2) for k, v in self.latency.items() if v},
               "detections": dict(self.labels)}
        self.latency = {k: [] for k in self.latency}
        self.labels = Counter()
        return out


class Pipeline:
    def __init__(self, config: Config, detector: Detector, source: Source, sinks: list[Sink],
                 notifier: Optional[Notifier] = None, tracking: Optional[Tracking] = None):
        self.config = config
        self.detector = detector
        self.source = source
        self.sinks = sinks
        self.tracking = tracking  # detections -> tracks -> events, when track.enabled
        self.notifier = notifier or Notifier()  # silent: only the `run` command passes systemd's
        self.stop_event = threading.Event()
        self.frames = 0
        self.meter = Meter()
        self.started = time.monotonic()
        self.wants_frames = any(s.wants_frames for s in sinks)
        self._stalled = False  # no frame for source.timeout_s: the watchdog is not fed

    def stop(self, *_: Any) -> None:
        """Finish the current frame, then shut down (also the signal handler)."""
        if self.stop_event.is_set():  # a second Ctrl-C: the user really wants out
            raise KeyboardInterrupt
        log.info("stopping after the current frame")
        self.stop_event.set()

    def run(self) -> int:
        previous = {sig: signal.signal(sig, self.stop) for sig in (signal.SIGINT, signal.SIGTERM)} \
            if threading.current_thread() is threading.main_thread() else {}
        limit = self.config.source.limit
        next_stats = time.monotonic() + self.config.runtime.stats_interval_s
        try:
            waiting_since = time.monotonic()
            while not self.stop_event.is_set():
                self._feed_watchdog(time.monotonic() - waiting_since)
                frame = self.source.read(timeout=0.5)
                if frame is None:
                    if self.source.finished:
                        log.info("%s: end of source", self.source.name)
                        break
                    continue
                self.process(frame)
                waiting_since = time.monotonic()  # a slow inference is not a stalled source
                if self.frames == 1:
                    self.notifier.ready()
                if self.config.runtime.stats_interval_s and time.monotonic() >= next_stats:
                    next_stats = time.monotonic() + self.config.runtime.stats_interval_s
                    self.send_stats()
                if limit and self.frames >= limit:
                    break
        finally:
            self.notifier.stopping()
            self.send_stats()
            if self.tracking is not None:
                self.tracking.close()
            close_all(self.sinks)
            self.source.close()
            self.detector.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            log.info("processed %d frames in %.1f s", self.frames, time.monotonic() - self.started)
        return 0

    def _feed_watchdog(self, waited: float) -> None:
        """The watchdog means "frames are arriving": waiting source.timeout_s for a frame stops the pings, so systemd
        restarts the process if the source has not recovered by itself within WatchdogSec."""
        stalled = waited >= self.config.source.timeout_s
        if not stalled:
            self.notifier.watchdog()
        elif not self._stalled and self.notifier.watchdog_interval:
            log.warning("%s: no frame for %.0f s: the systemd watchdog is no longer fed", self.source.name, waited)
        self._stalled = stalled

    def process(self, frame) -> None:
        dets, latency = self.detector.detect(frame.image, frame.prepared)
        track_ids, tracked = None, {}
        if self.tracking is not None:
            dets, track_ids, tracked = self.tracking.update(dets, frame.ts, frame.index, frame.image.shape[:2])
        detections = self.detector.to_json(dets, track_ids)
        self.frames += 1
        fps = self.meter.add(time.monotonic(), latency, [d["label"] for d in detections])
        record: dict[str, Any] = {
            "ts": round(frame.ts, 3), "frame": frame.index, "source": self.source.name,
            "board": self.config.board, "model": self.detector.meta.name, "size": list(frame.image.shape[:2]),
            "latency_ms": {k: round(v, 2) for k, v in latency.items()}, "fps": round(fps, 2),
            "detections": detections, **tracked,
        }
        if frame.name:
            record["image"] = frame.name
        image = frame.image if self.wants_frames else None
        for sink in self.sinks:
            try:
                sink.write(record, image if sink.wants_frames else None)
            except EdgeYoloxError:
                raise
            except Exception:  # a broken sink is logged, the others still get the frame
                log.exception("%s failed on frame %d", type(sink).__name__, frame.index)

    def send_stats(self) -> None:
        period = self.meter.take()
        stats = {"ts": round(time.time(), 3), "device": self.config.device, "board": self.config.board,
                 "frames": self.frames, "fps": round(self.meter.fps, 2), **period,
                 "dropped": self.source.dropped, "reconnects": self.source.reconnects,
                 "uptime_s": round(time.monotonic() - self.started, 1), **telemetry.read()}
        outputs = self.sink_health()
        if outputs:
            stats["outputs"] = outputs
        self.notifier.status(f"{stats['fps']:.1f} fps, {self.frames} frames, {self.source.dropped} dropped")
        for sink in self.sinks:
            try:
                sink.stats(stats)
            except Exception:
                log.exception("%s failed to take stats", type(sink).__name__)

    def sink_health(self) -> dict[str, dict[str, Any]]:
        """Each sink's own counters by its `outputs:` name; every sink sees all of them in the stats."""
        outputs = {}
        for sink in self.sinks:
            try:
                health = sink.health()
            except Exception:
                log.exception("%s failed to report its health", type(sink).__name__)
                continue
            if health:
                outputs[sink.name] = health
        return outputs


def run(config: Config, notifier: Optional[Notifier] = None) -> int:
    """Open everything the config asks for and run until the source ends, the limit, or a signal. A setup step
    that fails releases what the earlier ones opened (a capture thread left running aborts the interpreter)."""
    with contextlib.ExitStack() as opened:
        detector = open_detector(config)
        opened.callback(detector.close)
        source = open_source(config.source, config.camera, detector.prepare)
        opened.callback(source.close)
        tracking = Tracking(config, detector.class_names, source.fps) if config.track.enabled else None
        if tracking is not None:
            opened.callback(tracking.close)
        ctx = SinkContext(device=config.device, board=config.board, model=detector.meta.name,
                          source=source.name, class_names=tuple(detector.class_names), fps=source.fps,
                          tracking=tracking is not None, zones=tracking.zones if tracking else (),
                          lines=tracking.lines if tracking else (), anchor=config.track.anchor)
        sinks = build_sinks(config, ctx)
        opened.callback(close_all, sinks)
        pipeline = Pipeline(config, detector, source, sinks, notifier, tracking)
        opened.pop_all()  # from here Pipeline.run closes them
    log.info("running %s on %s (%s, %d threads), board %s", detector.meta.name, source.name,
             detector.backend.name, config.model.threads, config.board)
    return pipeline.run()


__all__ = ["Pipeline", "build_sinks", "open_detector", "resolve_model", "run"]
