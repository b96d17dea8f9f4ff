"""Benchmark the C++ decode/NMS core on real YOLOX-Nano outputs against numpy and OpenCV paths.

    python bench/postprocess.py [--repeat 200]

Prints median latency per path for 416 and 640 inputs at conf 0.3 (deploy: per-class NMS 0.45) and
conf 0.01 (evaluation: per-class NMS 0.65, many candidates), and each path's ratio to the C++ core.
Reads the official ONNX and images from ../shared/data.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import edge_yolox  # noqa: E402
from edge_yolox.preprocess import letterbox, to_nchw  # noqa: E402
from tests import reference  # noqa: E402

DATA = ROOT.parent / "shared" / "data"


def nano_outputs(size: int) -> np.ndarray:
    """The official ONNX, made shape-dynamic so it also runs at 640, on busstop.jpg (8 people, bikes)."""
    import onnx
    import onnxruntime as ort

    model = onnx.load(str(DATA / "models" / "yolox_nano.onnx"))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    dims[2].dim_param, dims[3].dim_param = "h", "w"
    model.graph.output[0].type.tensor_type.shape.dim[1].dim_param = "n"
    options = ort.SessionOptions()
    options.log_severity_level = 3  # the graph still records 416-sized value shapes; harmless at 640
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    image, _ = letterbox(cv2.imread(str(DATA / "images" / "busstop.jpg")), (size, size))
    return session.run(None, {"images": to_nchw(image)})[0]


def numpy_vectorised(rows, size, conf, iou):
    """The usual numpy deploy path (as in the YOLOX ONNX demo): decode, best class, per-class NMS with
    vectorised IoU against all remaining boxes."""
    g = reference.grids(size, (8, 16, 32))
    r = rows[0]
    xy = (r[:, :2] + g[:, :2]) * g[:, 2:]
    wh = np.exp(r[:, 2:4]) * g[:, 2:]
    cls_id = r[:, 5:].argmax(1)
    scores = r[:, 4] * r[np.arange(len(r)), 5 + cls_id]
    keep = scores >= conf
    boxes = np.concatenate([xy - wh / 2, xy + wh / 2], 1)[keep]
    scores, cls_id = scores[keep], cls_id[keep]
    out = []
    for c in np.unique(cls_id):
        b, s = boxes[cls_id == c], scores[cls_id == c]
        order = s.argsort()[::-1]
        areas = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
        while order.size:
            i = order[0]
            out.append((*b[i], s[i], c))
            xx1 = np.maximum(b[i, 0], b[order[1:], 0])
            yy1 = np.maximum(b[i, 1], b[order[1:], 1])
            xx2 = np.minimum(b[i, 2], b[order[1:], 2])
            yy2 = np.minimum(b[i, 3], b[order[1:], 3])
            inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
            order = order[1:][inter / (areas[i] + areas[order[1:]] - inter) <= iou]
    return out


def opencv_batched(rows, size, conf, iou):
    """Decode in numpy, then OpenCV's cv2.dnn.NMSBoxesBatched (per-class NMS in C++)."""
    g = reference.grids(size, (8, 16, 32))
    r = rows[0]
    xy = (r[:, :2] + g[:, :2]) * g[:, 2:]
    wh = np.exp(r[:, 2:4]) * g[:, 2:]
    cls_id = r[:, 5:].argmax(1)
    scores = r[:, 4] * r[np.arange(len(r)), 5 + cls_id]
    keep = scores >= conf
    xywh = np.concatenate([xy - wh / 2, wh], 1)[keep]
    idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores[keep].tolist(), cls_id[keep].tolist(), conf, iou)
    return np.asarray(idx).reshape(-1)


def cpp_core(rows, shape, conf, iou):
    return edge_yolox.postprocess(rows, shape, conf=conf, iou=iou)


def numpy_reference(rows, shape, conf, iou):
    return reference.postprocess(rows, shape, conf=conf, iou=iou)


def median_ms(fn, setting: tuple, repeat: int) -> float:
    """Median ms of fn(*setting) over `repeat` calls, after one warm-up call."""
    fn(*setting)
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn(*setting)
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args()

    print("| input | conf / NMS | candidates | kept | C++ core | numpy vectorised | OpenCV batched | numpy reference |")
    print("|---|---|---|---|---|---|---|---|")
    for size in (416, 640):
        rows = nano_outputs(size)
        shape = (size, size)
        for conf, iou in ((0.3, 0.45), (0.01, 0.65)):
            kept = len(edge_yolox.postprocess(rows, shape, conf=conf, iou=iou))
            candidates = int((rows[0, :, 4] * rows[0, :, 5:].max(1) >= conf).sum())
            setting = (rows, shape, conf, iou)
            cpp = median_ms(cpp_core, setting, args.repeat)
            vec = median_ms(numpy_vectorised, setting, max(10, args.repeat // 4))
            ocv = median_ms(opencv_batched, setting, max(10, args.repeat // 4))
            ref = median_ms(numpy_reference, setting, max(3, args.repeat // 40))
            print(f"| {size} | {conf} / {iou} | {candidates} | {kept} | {cpp:.3f} ms "
                  f"| {vec:.2f} ms ({vec / cpp:.0f}×) | {ocv:.2f} ms ({ocv / cpp:.0f}×) "
                  f"| {ref:.1f} ms ({ref / cpp:.0f}×) |")


if __name__ == "__main__":
    main()
