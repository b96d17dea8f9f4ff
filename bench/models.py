"""Parameters and GFLOPs of every YOLOX variant, and PyTorch CPU latency of one eval forward pass.

    python bench/models.py [--size 416] [--threads 2] [--repeat 10] [--variants nano tiny]

GFLOPs count 2 per multiply-add of convolutions and matmuls (torch.utils.flop_counter); the YOLOX paper's figures
(thop) also count BatchNorm and activations, a few per cent more. Latency: median of --repeat forward passes.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from edge_yolox.train.models import VARIANTS, build_model, count_flops, count_params


def latency_ms(model: torch.nn.Module, size: int, repeat: int) -> float:
    x = torch.rand(1, 3, size, size) * 255
    times = []
    with torch.no_grad():
        model(x)
        for _ in range(repeat):
            start = time.perf_counter()
            model(x)
            times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--size", type=int, default=416, help="input size for GFLOPs and latency (default 416)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeat", type=int, default=10, help="timed forward passes (0: no latency)")
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    print(f"| variant | params (M) | GFLOPs @{args.size} | GFLOPs @test size | "
          f"CPU ms @{args.size} ({args.threads} threads) |")
    print("|---|---|---|---|---|")
    for name in args.variants:
        model = build_model(name).eval()
        test = VARIANTS[name].input_size
        ms = f"{latency_ms(model, args.size, args.repeat):.1f}" if args.repeat else "-"
        print(f"| {name} | {count_params(model) / 1e6:.2f} | {count_flops(model, args.size) / 1e9:.2f} | "
              f"{count_flops(model, test) / 1e9:.2f} @{test} | {ms} |")


if __name__ == "__main__":
    main()
