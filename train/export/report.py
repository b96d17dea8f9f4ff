"""`edge-yolox quantize-report`: what INT8 costs. Exports ONNX FP32, NCNN FP32/INT8 and TFLite FP32/INT8 from one
checkpoint, evaluates them and the PyTorch model with the same evaluator on the same images, and tabulates AP, AP50,
size and inference latency at 1 and 2 threads (Markdown and JSON)."""

from __future__ import annotations

import json
import statistics
import time
from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from edge_yolox.bundle import read_bundle
from edge_yolox.preprocess import to_nchw

from ..data.datasets import open_dataset
from ..evaluate import OFFICIAL_CONF, OFFICIAL_IOU, detector_detect_fn, evaluate, evaluate_dataset
from . import base_meta, class_names
from .calibration import DEFAULT_CALIB_N, load_calibration
from .registry import export_bundle

THREADS = (1, 2)
EVAL_THREADS = 1  # evaluation speed only; ncnn's OpenMP spin-waits make 2 threads slow on a busy 2-core machine
# (name, format, precision): the rows after PyTorch, in table order
ROWS = [("onnx-fp32", "onnx", "fp32"), ("ncnn-fp32", "ncnn", "fp32"), ("ncnn-int8", "ncnn", "int8"),
        ("tflite-fp32", "tflite", "fp32"), ("tflite-int8", "tflite", "int8")]


def median_ms(run: Callable[[], object], runs: int) -> float:
    """Median wall time of `run` in ms after two warm-up calls."""
    run(), run()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run()
        times.append((time.perf_counter() - start) * 1000)
    return round(statistics.median(times), 2)


def torch_latency(model, image: np.ndarray, runs: int) -> dict[str, float]:
    import torch

    x = torch.from_numpy(to_nchw(image))
    saved, result = torch.get_num_threads(), {}
    try:
        for n in THREADS:
            torch.set_num_threads(n)
            with torch.no_grad():
                result[str(n)] = median_ms(lambda: model(x), runs)
    finally:
        torch.set_num_threads(saved)
    return result


def bundle_latency(bundle: Path, image: np.ndarray, runs: int) -> dict[str, float]:
    """Backend inference only (no letterbox, no postprocess), per thread count."""
    from edge_yolox.backends import load_backend

    result = {}
    for n in THREADS:
        backend = load_backend(bundle, threads=n)
        try:
            result[str(n)] = median_ms(lambda b=backend: b.infer(image), runs)
        finally:
            backend.close()
    return result


def bundle_size(bundle: Path) -> int:
    return sum(f.stat().st_size for f in bundle.iterdir() if f.is_file() and f.name != "meta.json")


def quantize_report(weights: Union[str, Path], data: Union[str, Path], calib: Union[str, Path], out: Path, *,
                    variant: Optional[str] = None, split: str = "val", calib_n: int = DEFAULT_CALIB_N,
                    input_size: Optional[tuple[int, int]] = None, limit: int = 0, runs: int = 30,
                    progress: bool = True) -> dict:
    """Export, evaluate and time every row; write out/report.md and out/report.json; return the JSON record."""
    from edge_yolox.detector import Detector

    from ..checkpoint import model_from_checkpoint
    from ..models import default_size

    loaded = model_from_checkpoint(weights, variant)
    model = loaded.model.eval()
    num_classes = model.head.num_classes
    size = tuple(input_size or default_size(loaded.variant))
    names = class_names(None, loaded.class_names, num_classes)
    dataset = open_dataset(data, split)
    timing_image = load_calibration(calib, 1, size, progress=False)[0]  # a real image: int8 speed is data-blind
    out.mkdir(parents=True, exist_ok=True)

    metrics = evaluate_dataset(model, dataset, size, limit=limit, progress=progress)
    state_bytes = sum(t.numel() * t.element_size() for t in model.state_dict().values())
    rows = [{"model": "pytorch-fp32", "format": "pytorch", "precision": "fp32", "AP": metrics["AP"],
             "AP50": metrics["AP50"], "size_bytes": state_bytes,
             "latency_ms": torch_latency(model, timing_image, runs)}]
    for name, fmt, precision in ROWS:
        meta = base_meta(loaded.variant, num_classes, size, names, source=Path(weights).name)
        options = {} if fmt == "onnx" else {"precision": precision, "calib": calib if precision == "int8" else None,
                                            "calib_n": calib_n, "progress": progress}
        bundle = export_bundle(fmt, model, out / name, meta, **options)
        detector = Detector(bundle, conf=OFFICIAL_CONF, iou=OFFICIAL_IOU, threads=EVAL_THREADS)
        try:
            metrics = evaluate(detector_detect_fn(detector), dataset, limit=limit, progress=progress)
        finally:
            detector.close()
        extra = read_bundle(bundle).extra
        rows.append({"model": name, "format": fmt, "precision": precision, "AP": metrics["AP"],
                     "AP50": metrics["AP50"], "size_bytes": bundle_size(bundle),
                     "latency_ms": bundle_latency(bundle, timing_image, runs),
                     **({"calibration": extra["calibration"]} if "calibration" in extra else {}),
                     **({"fp32_layers": extra["fp32_layers"]} if "fp32_layers" in extra else {})})
        print(f"{name}: AP {metrics['AP']:.4f} AP50 {metrics['AP50']:.4f}", flush=True)
    record = {"weights": str(weights), "variant": loaded.variant, "input_size": list(size), "data": str(data),
              "images": metrics["images"], "calib": str(calib), "calib_n": calib_n,
              "latency": f"backend inference only, median of {runs} runs, one real image", "rows": rows}
    (out / "report.json").write_text(json.dumps(record, indent=2) + "\n")
    table = markdown(record)
    (out / "report.md").write_text(table + "\n")
    print(table)
    return record


def markdown(record: dict) -> str:
    """The table, with the AP change against each backend's own FP32 and INT8 speed-up."""
    fp32 = {row["format"]: row for row in record["rows"] if row["precision"] == "fp32"}
    lines = [f"YOLOX-{record['variant']} {record['input_size'][0]}x{record['input_size'][1]}, "
             f"{record['images']} images of {record['data']}; latency: {record['latency']}", "",
             "| model | AP | AP50 | ΔAP vs FP32 (points) | size (MB) | 1 thread (ms) | 2 threads (ms) | speed-up |",
             "|---|---|---|---|---|---|---|---|"]
    for row in record["rows"]:
        ref = fp32[row["format"]]
        delta = "" if row is ref else f"{100 * (row['AP'] - ref['AP']):+.1f}"
        speed = "" if row is ref else f"{ref['latency_ms']['1'] / row['latency_ms']['1']:.2f}×"
        lines.append(f"| {row['model']} | {row['AP']:.3f} | {row['AP50']:.3f} | {delta} | "
                     f"{row['size_bytes'] / 1e6:.2f} | {row['latency_ms']['1']:.1f} | {row['latency_ms']['2']:.1f} | "
                     f"{speed} |")
    return "\n".join(lines)
