"""Runtime figures for the README: per backend, YOLOX-Nano 416 on the real video with N threads.

For each backend: `edge-yolox bench` (pure inference vs the whole pipeline: pre/infer/post medians,
end-to-end fps, overhead) and the peak RSS of a real `edge-yolox run` process over the same frames.

    python bench/runtime.py [--frames 200] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("EDGE_YOLOX_SHARED_DATA", ROOT.parent / "shared" / "data"))
MODELS = {"onnxruntime": DATA / "models" / "yolox_nano.onnx",
          "ncnn": DATA / "models" / "ncnn_yolox_nano" / "yoloxN.param"}
VIDEO = DATA / "video" / "one-by-one-person-detection.mp4"

BENCH = """
import json, sys
from edge_yolox.benchmark import bench
from edge_yolox.config import load_config
model, source, threads, frames = sys.argv[1:5]
config = load_config("x86", None, {"model": {"path": model, "threads": int(threads)}, "source": {"uri": source}})
print(json.dumps(bench(config, frames=int(frames), warmup=10)))
"""


def bench(model: Path, threads: int, frames: int) -> dict:
    out = subprocess.run([sys.executable, "-c", BENCH, str(model), str(VIDEO), str(threads), str(frames)],
                         check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def run_peak_rss_mb(model: Path, threads: int, frames: int) -> float:
    """Peak RSS of `edge-yolox run` itself (its own rusage, not this script's)."""
    proc = subprocess.Popen([sys.executable, "-m", "edge_yolox.cli", "-q", "run", "--board", "x86", "--model",
                             str(model), "--source", str(VIDEO), "--threads", str(threads), "--limit", str(frames),
                             "--no-stdout"])
    _, status, usage = os.wait4(proc.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"edge-yolox run failed for {model}")
    return usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=PATH",
                        help="also this model or bundle, e.g. tflite-int8=nano-tflite-int8/ (repeatable)")
    args = parser.parse_args()
    models = {**MODELS, **dict(spec.split("=", 1) for spec in args.model)}
    print(f"YOLOX-Nano 416, {VIDEO.name} (768x432), {args.threads} threads, {args.frames} frames, medians in ms\n")
    print("| backend | pure infer | pre | infer | post | end-to-end fps | overhead over pure infer "
          "| over infer in the pipeline | peak RSS of `run` |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, model in models.items():
        r = bench(model, args.threads, args.frames)
        rss = run_peak_rss_mb(model, args.threads, args.frames)
        p = r["pipeline_ms"]
        print(f"| {name} | {r['pure_infer_ms']['median']:.1f} | {p['pre']:.2f} | {p['infer']:.1f} | {p['post']:.2f} "
              f"| {r['fps']:.1f} | {r['overhead_pct']:+.1f} % | {r['overhead_same_run_pct']:+.1f} % | {rss:.0f} MB |",
              flush=True)


if __name__ == "__main__":
    main()
