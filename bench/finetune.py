"""Training quality on this machine: AP over wall-clock time, through the real `edge-yolox train`.

    python bench/finetune.py coco128 [--epochs 10]    # fine-tune the official Nano on ../shared/data/coco128
    python bench/finetune.py scratch [--minutes 30]   # a Nano from scratch on synthetic scenes

coco128: AP50:95 and validation loss of yolox_nano_coco.pth before, then after each epoch of the full Nano recipe
(mosaic, flip, HSV, affine, EMA; the last 2 epochs without augmentation, L1 on): the fine-tune must not collapse
the pretrained model (AP stays >= 0.30) and the loss must fall. The validation loss (the trainer's: the same
images every epoch, no augmentation, no L1) is the comparable one; the training loss moves with each epoch's
mosaics and jumps when the tail adds L1.
scratch: AP50:95 / AP50 and validation loss on held-out scenes after every epoch, with the minutes elapsed.
Prints a Markdown table. CPU threads: --threads (default 2).
"""

from __future__ import annotations

import argparse
import csv
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SHARED = Path(os.environ.get("EDGE_YOLOX_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
TABLE_HEAD = ("| epoch | minutes | AP50:95 | AP50 | validation loss (no aug) | mean training loss of the epoch |\n"
              "|---|---|---|---|---|---|")
EVAL_LINE = re.compile(r"epoch (\d+): AP50:95 ([\d.]+) AP50 ([\d.]+) validation loss ([\d.]+)")


def train(args: list[str], threads: int) -> list[tuple[int, float, float, float, float]]:
    """Run `edge-yolox train`, echoing its log; returns (epoch, minutes, AP, AP50, validation loss) for every
    evaluation."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    start, evals = time.perf_counter(), []
    with subprocess.Popen([sys.executable, "-m", "edge_yolox.cli", "train", *args], env=env,
                          stderr=subprocess.PIPE, text=True) as proc:
        for line in proc.stderr:
            sys.stderr.write(line)
            if match := EVAL_LINE.search(line):
                evals.append((int(match[1]), (time.perf_counter() - start) / 60, float(match[2]), float(match[3]),
                              float(match[4])))
    if proc.returncode != 0:
        sys.exit(f"training failed (exit {proc.returncode})")
    return evals


def epoch_losses(log_csv: Path) -> dict[int, float]:
    """Mean total loss per epoch from the trainer's log.csv."""
    with open(log_csv) as f:
        rows = [r for r in csv.DictReader(f) if r["total_loss"]]
    epochs = sorted({int(r["epoch"]) for r in rows})
    return {e: statistics.mean(float(r["total_loss"]) for r in rows if int(r["epoch"]) == e) for e in epochs}


def evaluate_pth(weights: Path, data: Path) -> tuple[float, float, float]:
    """(AP, AP50, validation loss) of a checkpoint, measured as the trainer measures them after each epoch."""
    from edge_yolox.train.checkpoint import model_from_checkpoint
    from edge_yolox.train.data.datasets import open_dataset
    from edge_yolox.train.trainer import evaluate_ap, validation_loss

    model, dataset = model_from_checkpoint(weights).model, open_dataset(data)
    return (*evaluate_ap(model, dataset, 416), validation_loss(model, dataset, 416))


def coco128(args: argparse.Namespace, out: Path) -> None:
    weights, data = SHARED / "weights" / "yolox_nano_coco.pth", SHARED / "coco128"
    before = evaluate_pth(weights, data)
    evals = train(["--variant", "nano", "--data", str(data), "--weights", str(weights), "--out", str(out),
                   "--epochs", str(args.epochs), "--batch", "8", "--img-size", "416", "--workers", "2",
                   "--warmup-epochs", "1", "--no-aug-epochs", "2", "--eval-interval", "1"], args.threads)
    losses = epoch_losses(out / "log.csv")
    print(f"\nFine-tuning YOLOX-Nano (official COCO weights) on coco128, {args.epochs} epochs, batch 8, 416:\n")
    print(TABLE_HEAD)
    print(f"| 0 (official weights) | 0 | {before[0]:.3f} | {before[1]:.3f} | {before[2]:.3f} | |")
    for epoch, minutes, ap, ap50, val_loss in evals:
        print(f"| {epoch} | {minutes:.1f} | {ap:.3f} | {ap50:.3f} | {val_loss:.3f} | {losses[epoch - 1]:.2f} |")
    print(f"\nvalidation loss {before[2]:.3f} -> {evals[-1][4]:.3f} ({evals[-1][4] / before[2]:.2f}x); "
          f"lowest AP after an epoch {min(e[2] for e in evals):.3f} (floor 0.30)")


def scratch(args: argparse.Namespace, out: Path) -> None:
    from edge_yolox.train.data.synthetic import generate_scenes

    generate_scenes(out / "train", args.images, size=(320, 320), seed=1)
    generate_scenes(out / "val", 64, size=(320, 320), seed=2)
    # Epochs sized so the run lasts about --minutes at the measured ~8 img/s of a 320 px Nano step on 2 cores.
    epochs = max(3, int(args.minutes * 60 * 8 / args.images))
    evals = train(["--variant", "nano", "--data", str(out / "train"), "--val-data", str(out / "val"),
                   "--out", str(out / "run"), "--epochs", str(epochs), "--batch", "16", "--img-size", "320",
                   "--multiscale", "256-384", "--workers", "2", "--warmup-epochs", "1",
                   "--no-aug-epochs", "1", "--eval-interval", "1"], args.threads)
    print(f"\nYOLOX-Nano from scratch on {args.images} synthetic scenes (320 px, batch 16), held-out AP:\n")
    losses = epoch_losses(out / "run" / "log.csv")
    print(TABLE_HEAD)
    for epoch, minutes, ap, ap50, val_loss in evals:
        print(f"| {epoch} | {minutes:.1f} | {ap:.3f} | {ap50:.3f} | {val_loss:.3f} | {losses[epoch - 1]:.2f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=("coco128", "scratch"))
    p.add_argument("--epochs", type=int, default=10, help="coco128: fine-tuning epochs (default 10)")
    p.add_argument("--minutes", type=float, default=30, help="scratch: about how long to train (default 30)")
    p.add_argument("--images", type=int, default=800, help="scratch: synthetic training scenes (default 800)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--out", type=Path, help="keep the run here (default: a temporary folder)")
    args = p.parse_args()
    if args.mode == "coco128" and not (SHARED / "coco128").is_dir():
        sys.exit(f"missing {SHARED}/coco128 (set EDGE_YOLOX_SHARED_DATA)")
    with tempfile.TemporaryDirectory(prefix="edge-yolox-bench-") as tmp:
        out = args.out or Path(tmp)
        (coco128 if args.mode == "coco128" else scratch)(args, out)


if __name__ == "__main__":
    main()
