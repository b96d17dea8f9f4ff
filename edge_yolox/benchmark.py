"""`edge-yolox bench`: pure inference vs the whole pipeline on the same frames, per-stage medians."""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from collections.abc import Iterator
from typing import Any, Optional

import numpy as np

from edge_yolox.config import CameraConfig, Config, SourceConfig
from edge_yolox.errors import SourceError
from edge_yolox.pipeline import Pipeline, open_detector
from edge_yolox.sinks import Sink
from edge_yolox.sources import Frame, Source, open_source


class Recorder(Sink):
    """Keeps each frame's stage latencies."""

    def __init__(self):
        self.latency: list[dict[str, float]] = []

    def write(self, record: dict[str, Any], frame: Optional[np.ndarray] = None) -> None:
        self.latency.append(record["latency_ms"])


def bench(config: Config, frames: int = 100, warmup: int = 5, block: int = 20) -> dict[str, Any]:
    """Time the bare backend and the whole pipeline (decode, letterbox, infer, postprocess, JSON record; no
    outputs) on the configured source, alternating blocks of `block` frames of each, so that the two are
    compared over the same stretch of time even on a machine whose speed drifts."""
    detector = open_detector(config)
    recorder = Recorder()
    feed = looped(dataclasses.replace(config.source, realtime=False), config.camera, detector.prepare)
    try:
        first = next(feed)
        pipeline = Pipeline(config, detector, first.source, [recorder])
        x = detector.prepare(first.frame.image).input
        for _ in range(warmup):
            detector.backend.run(x)
            pipeline.process(next(feed).frame)
        pure, wall = [], []
        while len(wall) < frames:
            n = min(block, frames - len(wall))
            for _ in range(n):
                t0 = time.perf_counter()
                detector.backend.run(x)
                pure.append((time.perf_counter() - t0) * 1e3)
            t0 = time.perf_counter()
            for _ in range(n):
                pipeline.process(next(feed).frame)
            wall += [(time.perf_counter() - t0) * 1e3 / n] * n
    finally:
        feed.close()
        detector.close()
    latency = recorder.latency[warmup:]
    stages = {k: statistics.median(r[k] for r in latency) for k in ("pre", "infer", "post")}
    pure_ms, wall_ms = statistics.fmean(pure), statistics.fmean(wall)
    return {
        "model": str(config.model.path), "backend": detector.backend.name,
        "device": detector.backend.device, "threads": config.model.threads,
        "input": list(detector.meta.input_size), "source": first.source.name, "frames": len(wall),
        "pure_infer_ms": {"median": statistics.median(pure), "mean": pure_ms},
        "pipeline_ms": stages,
        "fps": 1e3 / wall_ms,
        # What the pipeline adds per frame over the bare backend alternating with it: decoding and
        # preparing the next frame (in the source's thread, which on a machine with no spare core slows
        # inference), postprocess and the record. Means, as fps is a mean.
        "overhead_pct": (wall_ms / pure_ms - 1) * 100,
        # The same against the backend's time inside the pipeline: the work around inference alone.
        "overhead_same_run_pct": (wall_ms / statistics.fmean(r["infer"] for r in latency) - 1) * 100,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


@dataclasses.dataclass
class Fed:
    frame: Frame
    source: Source


def looped(source_config: SourceConfig, camera: CameraConfig, prepare) -> Iterator[Fed]:
    """Frames of a source without end: a file or folder starts again when it ends."""
    while True:
        source = open_source(source_config, camera, prepare)
        try:
            count = 0
            while (frame := source.read(timeout=10.0)) is not None:
                count += 1
                yield Fed(frame, source)
            if not count or not source.finished:
                raise SourceError(f"{source.name}: no frame to benchmark on")
        finally:
            source.close()


def format_table(r: dict[str, Any]) -> str:
    rows = [
        ("model", f"{r['model']} ({r['backend']} on {r['device']}, {r['threads']} threads, "
                  f"input {r['input'][0]}x{r['input'][1]})"),
        ("source", f"{r['source']} ({r['frames']} frames)"),
        ("pure inference", f"median {r['pure_infer_ms']['median']:.2f} ms, mean {r['pure_infer_ms']['mean']:.2f} ms"),
        ("pipeline pre", f"{r['pipeline_ms']['pre']:.2f} ms (median)"),
        ("pipeline infer", f"{r['pipeline_ms']['infer']:.2f} ms (median)"),
        ("pipeline post", f"{r['pipeline_ms']['post']:.2f} ms (median)"),
        ("end-to-end", f"{r['fps']:.2f} fps"),
        ("overhead", f"{r['overhead_pct']:+.1f} % over pure inference, {r['overhead_same_run_pct']:+.1f} % over "
                     "the inference inside the pipeline"),
        ("peak RSS", f"{r['peak_rss_mb']:.0f} MB (this process)"),
    ]
    return "\n".join(f"{k:16} {v}" for k, v in rows)
