"""`edge-yolox bench`: pure inference vs the whole pipeline on the same frames, per-stage medians."""

from __future__ import annotations

import dataclasses
import resource
import statistics
import time
from typing import Any, Optional

import numpy as np

from edge_yolox.config import Config
from edge_yolox.errors import SourceError
from edge_yolox.pipeline import Pipeline, open_detector
from edge_yolox.preprocess import letterbox
from edge_yolox.service import Notifier
from edge_yolox.sinks import Sink
from edge_yolox.sources import open_source


class Recorder(Sink):
    """Keeps each frame's stage latencies."""

    def __init__(self):
        self.latency: list[dict[str, float]] = []

    def write(self, record: dict[str, Any], frame: Optional[np.ndarray] = None) -> None:
        self.latency.append(record["latency_ms"])


def bench(config: Config, frames: int = 100, warmup: int = 5) -> dict[str, Any]:
    """Time `frames` inferences of the bare backend on one frame, then `frames` frames of the pipeline
    (decode, letterbox, infer, postprocess, JSON record; no outputs) on the configured file source."""
    detector = open_detector(config)
    source = open_source(config.source, config.camera)
    first = source.read()
    source.close()
    if first is None:
        raise SourceError(f"{config.source.uri}: no frame to benchmark on")
    image, _ = letterbox(first.image, detector.meta.input_size)
    for _ in range(warmup):
        detector.backend.infer(image)
    pure = []
    for _ in range(frames):
        t0 = time.perf_counter()
        detector.backend.infer(image)
        pure.append((time.perf_counter() - t0) * 1e3)

    run_config = dataclasses.replace(
        config, source=dataclasses.replace(config.source, limit=frames, realtime=False),
        runtime=dataclasses.replace(config.runtime, stats_interval_s=0.0))
    recorder = Recorder()
    source = open_source(run_config.source, run_config.camera)
    pipeline = Pipeline(run_config, detector, source, [recorder], Notifier(None))
    t0 = time.perf_counter()
    pipeline.run()
    wall = time.perf_counter() - t0
    n = len(recorder.latency)
    stages = {k: statistics.median(r[k] for r in recorder.latency) for k in ("pre", "infer", "post")}
    infer_mean = statistics.fmean(r["infer"] for r in recorder.latency)
    return {
        "model": str(config.model.path), "backend": detector.backend.name, "threads": config.model.threads,
        "input": list(detector.meta.input_size), "source": source.name, "frames": n,
        "pure_infer_ms": {"median": statistics.median(pure), "mean": statistics.fmean(pure)},
        "pipeline_ms": stages,
        "fps": n / wall if wall > 0 else 0.0,
        # Everything the pipeline adds per frame (decode, letterbox, postprocess, records) over the backend's
        # own time in the same run: mean against mean, as fps is a mean; measured in the same period, so a
        # machine shared with other load skews both alike.
        "overhead_pct": (wall * 1e3 / n / infer_mean - 1) * 100 if n else float("nan"),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def format_table(r: dict[str, Any]) -> str:
    rows = [
        ("model", f"{r['model']} ({r['backend']}, {r['threads']} threads, input {r['input'][0]}x{r['input'][1]})"),
        ("source", f"{r['source']} ({r['frames']} frames)"),
        ("pure inference", f"median {r['pure_infer_ms']['median']:.2f} ms, mean {r['pure_infer_ms']['mean']:.2f} ms"),
        ("pipeline pre", f"{r['pipeline_ms']['pre']:.2f} ms (median)"),
        ("pipeline infer", f"{r['pipeline_ms']['infer']:.2f} ms (median)"),
        ("pipeline post", f"{r['pipeline_ms']['post']:.2f} ms (median)"),
        ("end-to-end", f"{r['fps']:.2f} fps"),
        ("overhead", f"{r['overhead_pct']:+.1f} % over the inference time in the same run"),
        ("peak RSS", f"{r['peak_rss_mb']:.0f} MB (this process)"),
    ]
    return "\n".join(f"{k:16} {v}" for k, v in rows)
