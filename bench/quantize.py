"""FP32 vs INT8 inference time of exported bundles, interleaved so that load from other processes hits every model
alike (a busy shared machine skews back-to-back timings). Prints min and median ms per bundle and thread count.

    python bench/quantize.py quantize-report/ncnn-fp32 quantize-report/ncnn-int8 --threads 1 2 --runs 40
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from edge_yolox.backends import load_backend


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("bundles", nargs="+", help="model bundles (or bare models)")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    for threads in args.threads:
        backends = [load_backend(path, threads=threads) for path in args.bundles]
        h, w = backends[0].meta.input_size
        image = np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)
        times: list[list[float]] = [[] for _ in backends]
        for backend in backends:  # warm-up
            backend.infer(image)
        for _ in range(args.runs):
            for backend, spent in zip(backends, times):
                start = time.perf_counter()
                backend.infer(image)
                spent.append((time.perf_counter() - start) * 1000)
        for path, spent in zip(args.bundles, times):
            print(f"{threads} thread(s)  {path}: min {min(spent):.1f} ms, median {statistics.median(spent):.1f} ms")
        for backend in backends:
            backend.close()


if __name__ == "__main__":
    main()
