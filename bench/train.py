"""Training throughput and SimOTA speed against the official YOLOX implementation, side by side.

    git clone https://github.com/Megvii-BaseDetection/YOLOX /tmp/yolox   # outside this repository
    python bench/train.py --official /tmp/yolox [--repeat 10] [--threads 2]

Prints medians of:
- one Nano training step (forward + loss + backward + SGD step), batch 8 at 416, on synthetic scenes:
  ours (edge_yolox.train.models + our loss) and the official YOLOX model with its own loss;
- one SimOTA assignment of a whole batch (8 images at 416, 80 classes, 10 and 50 objects per image): our
  batched `simota_assign` against the official per-image `get_assignments` loop, on identical inputs.
The official code is imported from --official (its loguru/torchvision imports are stubbed; nothing it needs
them for runs here). Without --official only our figures are printed.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import statistics
import sys
import tempfile
import time
import types
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_yolox.train.anchors import decode_boxes  # noqa: E402
from edge_yolox.train.assign import simota_assign  # noqa: E402
from edge_yolox.train.data.augment import AugmentConfig  # noqa: E402
from edge_yolox.train.data.datasets import open_dataset  # noqa: E402
from edge_yolox.train.data.loader import TrainDataset  # noqa: E402
from edge_yolox.train.data.synthetic import generate_scenes  # noqa: E402
from edge_yolox.train.losses import flatten_outputs  # noqa: E402
from edge_yolox.train.optimizer import build_optimizer  # noqa: E402

from edge_yolox.postprocess import STRIDES  # noqa: E402


def load_official(repo: Path):
    """The official YOLOX model classes from a checkout, without installing it or its extra dependencies."""
    sys.modules.setdefault("loguru", types.SimpleNamespace(logger=logging.getLogger("yolox")))
    sys.modules.setdefault("torchvision", types.ModuleType("torchvision"))

    def package(name, path):
        module = types.ModuleType(name)
        module.__path__ = [str(path)]
        sys.modules[name] = module
        return module

    def load(name, path):
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
        return module

    package("yolox", repo / "yolox")
    utils = package("yolox.utils", repo / "yolox" / "utils")
    boxes = load("yolox.utils.boxes", repo / "yolox" / "utils" / "boxes.py")
    utils.bboxes_iou, utils.cxcywh2xyxy = boxes.bboxes_iou, boxes.cxcywh2xyxy
    utils.meshgrid = load("yolox.utils.compat", repo / "yolox" / "utils" / "compat.py").meshgrid
    utils.visualize_assign = None
    package("yolox.models", repo / "yolox" / "models")
    for name in ("network_blocks", "losses", "darknet", "yolo_pafpn", "yolo_head", "yolox"):
        load(f"yolox.models.{name}", repo / "yolox" / "models" / f"{name}.py")
    return tuple(sys.modules[f"yolox.models.{name}"] for name in ("yolo_pafpn", "yolo_head", "yolox"))


def official_nano(modules, num_classes: int):
    pafpn, head, yolox = modules
    model = yolox.YOLOX(pafpn.YOLOPAFPN(0.33, 0.25, depthwise=True),
                        head.YOLOXHead(num_classes, 0.25, depthwise=True))
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.eps, m.momentum = 1e-3, 0.03
    model.head.initialize_biases(1e-2)
    return model


def median_time(fn, repeat: int, warmup: int = 2) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def training_batch(batch: int, size: int):
    with tempfile.TemporaryDirectory() as tmp:
        generate_scenes(tmp, batch, size=(size, size), seed=0)
        data = TrainDataset(open_dataset(tmp), (size, size), AugmentConfig(mosaic_prob=0.5, mixup_prob=0.0))
        samples = [data[i] for i in range(batch)]
    return torch.stack([s[0] for s in samples]), torch.stack([s[1] for s in samples])


def step_time(model, images, targets, repeat: int) -> float:
    model.train()
    opt = build_optimizer(model, argparse.Namespace(base_lr=0.01, momentum=0.9, weight_decay=5e-4))

    def step():
        out = model(images, targets)
        loss = out["total_loss"] if isinstance(out, dict) else out[0]
        opt.zero_grad()
        loss.backward()
        opt.step()

    return median_time(step, repeat)


def assignment_inputs(batch: int, size: int, num_gt: int, num_classes: int = 80):
    g = torch.Generator().manual_seed(num_gt)
    outs = [torch.randn(batch, 5 + num_classes, size // s, size // s, generator=g) for s in STRIDES]
    raw, grid, stride = flatten_outputs(outs, STRIDES)
    boxes = decode_boxes(raw[..., :4], grid, stride)
    gt = torch.cat([torch.rand(batch, num_gt, 2, generator=g) * size,
                    torch.rand(batch, num_gt, 2, generator=g) * size / 4 + 8], -1)
    classes = torch.randint(0, num_classes, (batch, num_gt), generator=g)
    return raw, grid, stride, boxes, gt, classes


def ours_assign(raw, grid, stride, boxes, gt, classes):
    valid = torch.ones(gt.shape[:2], dtype=torch.bool)
    return simota_assign(boxes, raw[..., 4], raw[..., 5:], (grid + 0.5) * stride[:, None], stride, gt, classes, valid)


def official_assign(head, raw, grid, stride, boxes, gt, classes):
    x_shifts, y_shifts, strides = grid[None, :, 0], grid[None, :, 1], stride[None]
    obj, cls = raw[..., 4:5], raw[..., 5:]
    for b in range(raw.shape[0]):  # the official loss calls this once per image
        head.get_assignments(b, gt.shape[1], gt[b], classes[b].float(), boxes[b], strides, x_shifts, y_shifts,
                             cls, obj)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--official", type=Path, help="a checkout of github.com/Megvii-BaseDetection/YOLOX")
    p.add_argument("--repeat", type=int, default=10)
    p.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    official = load_official(args.official) if args.official else None
    print(f"torch {torch.__version__}, {args.threads} threads, medians of {args.repeat}")

    images, targets = training_batch(8, 416)
    from edge_yolox.train.models import build_model

    ours = step_time(build_model("nano", 4), images, targets, args.repeat)
    print(f"train step, Nano batch 8 @416: ours {ours * 1000:.0f} ms ({8 / ours:.1f} img/s)", end="")
    if official:
        theirs = step_time(official_nano(official, 4), images, targets, args.repeat)
        print(f"; official {theirs * 1000:.0f} ms ({8 / theirs:.1f} img/s); ours is {theirs / ours:.2f}x", end="")
    print()

    for num_gt in (10, 50):
        inputs = assignment_inputs(8, 416, num_gt)
        ours = median_time(lambda inputs=inputs: ours_assign(*inputs), args.repeat)
        print(f"SimOTA, batch 8 @416, 80 classes, {num_gt} objects/image: ours {ours * 1000:.1f} ms", end="")
        if official:
            head = official[1].YOLOXHead(80, 0.25, depthwise=True)
            theirs = median_time(lambda inputs=inputs, head=head: official_assign(head, *inputs), args.repeat)
            print(f"; official {theirs * 1000:.1f} ms; ours is {theirs / ours:.1f}x faster", end="")
        print()


if __name__ == "__main__":
    main()
