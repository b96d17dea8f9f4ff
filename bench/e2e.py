"""End-to-end (NMS-free) YOLOX-Nano on coco128: train the positive-sample selector on the frozen official Nano,
then measure it against the NMS model.

    python bench/e2e.py finetune --out runs/e2e [--epochs 40] [--folds 2]
    python bench/e2e.py measure --out runs/e2e [--repeat 20]
    python bench/e2e.py compare --checkpoint CKPT --data VAL [--size 320] [--bundles BUNDLE...]
    python bench/e2e.py oracle --weights DETECTOR --data VAL [--size 320]

finetune: the official weights (../shared/data/weights/yolox_nano_coco.pth) in build_model("nano", e2e=True),
frozen but for the selector (model.freeze_all_but_pss: what `edge-yolox train --e2e --selector-only` trains). Because
nothing but the selector changes, every image's features, head outputs and SimOTA assignment are fixed: they are
computed once (each image and its mirror, letterboxed to 416) and the selector trains on them with the trainer's
loss (yolox_loss's pss_loss) — seconds per epoch instead of minutes. coco128's 96 images are split into --folds
parts; each fold's selector trains on the other parts, so every image is scored by a selector that never saw it
(fold k: OUT/fold{k}.pth; --folds 1 trains on all of them, the in-sample figure).

measure: on the 96 images, at 416, conf 0.01 (COCO evaluation, official per-class NMS 0.65): AP50:95 / AP50 of the
NMS model (the official Nano), the end-to-end model without NMS and with NMS; duplicate detections per object
without NMS at conf 0.3 and 0.1 (detections of an object's class with IoU >= 0.5 to it beyond the first, per
object; the NMS model without its NMS shows what the selector removed); postprocess time per frame with and
without NMS at conf 0.01 and 0.3 (the C++ core on the same end-to-end outputs, medians over images x repeats,
the four settings interleaved). Prints Markdown tables.

compare: a whole model trained end to end (`edge-yolox train --e2e`) on a dataset, the same table: its plain head
with NMS is the NMS model of the same training (the stop-gradient kept the selector's loss out of it), then the
end-to-end scores without and with NMS, then each exported bundle of it (`edge-yolox export [--nms-head]`) as it
runs (no NMS for `nms: false` bundles) and with NMS.

oracle: the ceiling of the selection itself on a detector: each labelled object's one-to-one positive (the
training target, by SimOTA cost alone) gets pss 1 and its other SimOTA positives 0, anchors that are no object's
candidate keep their score (a selector cannot know which of those are false), then NMS 0.65; beside the detector
with NMS. Above the NMS model means the choice is worth learning and any gap is the selector's.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
SHARED = Path(os.environ.get("EDGE_YOLOX_SHARED_DATA", ROOT.parent / "shared" / "data"))
SIZE = (416, 416)  # the input size; --size sets it


def load_e2e(weights: Path):
    """A checkpoint in an end-to-end model of its variant and class count, eval mode: the official weights get a
    fresh selector, one trained end to end keeps its own."""
    from edge_yolox.train.checkpoint import infer_variant, load_state, read_checkpoint, state_dict_of
    from edge_yolox.train.models import build_model

    state = state_dict_of(read_checkpoint(weights), str(weights))
    model = build_model(*infer_variant(state, str(weights)), e2e=True)
    load_state(model, state, str(weights), say=lambda _: None)
    return model.eval()


def variant(dataset, index: int, number: int):
    """(input image, targets [M, 5] = class, cx, cy, w, h in input pixels) of one training view of an image: 0 the
    letterbox, 1 its mirror, from 2 on a seeded random scale (0.6-1.3 of the letterbox), shift and flip — new
    anchors for every object, the variety a selector of peaks needs."""
    from edge_yolox.train.data.augment import hflip, warp

    frame, labels = dataset.load(index)
    rng = np.random.default_rng([index, number])
    if number == 1 or (number > 1 and rng.uniform() < 0.5):
        frame, labels = hflip(frame, labels)
    h, w = frame.shape[:2]
    ratio = min(SIZE[0] / h, SIZE[1] / w) * (1.0 if number < 2 else rng.uniform(0.6, 1.3))
    dx = dy = 0.0
    if number >= 2:
        slack_x, slack_y = SIZE[1] - w * ratio, SIZE[0] - h * ratio
        dx = rng.uniform(min(slack_x, 0) - 0.1 * SIZE[1], max(slack_x, 0) + 0.1 * SIZE[1])
        dy = rng.uniform(min(slack_y, 0) - 0.1 * SIZE[0], max(slack_y, 0) + 0.1 * SIZE[0])
    image, labels = warp(frame, labels, np.array([[ratio, 0, dx], [0, ratio, dy]]), SIZE, ratio)
    boxes = labels[:, :4]
    targets = np.concatenate([labels[:, 4:5], (boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], 1)
    return image, targets.astype(np.float32)


def cache(model, dataset, indices, views: int):
    """Per (image, view): the selector's inputs (regression-branch features per stride, float16), the raw head
    maps per stride and the targets; all fixed while only the selector trains."""
    import torch

    from edge_yolox.preprocess import to_nchw

    captured = {}
    hooks = [conv.register_forward_hook(lambda _m, _i, out, k=k: captured.__setitem__(k, out))
             for k, conv in enumerate(model.head.reg_convs)]
    items = []
    try:
        with torch.no_grad():
            for i in indices:
                for number in range(views):
                    image, targets = variant(dataset, i, number)
                    raw = model.head.raw_outputs(model.backbone(torch.from_numpy(to_nchw(image))))
                    items.append(([captured[k][0].half() for k in range(len(raw))], [r[0].half() for r in raw],
                                  torch.from_numpy(targets)))
    finally:
        for h in hooks:
            h.remove()
    return items


def batches(items, batch: int, rng):
    import torch

    order = rng.permutation(len(items))
    for start in range(0, len(order), batch):
        chunk = [items[j] for j in order[start:start + batch]]
        levels = len(chunk[0][0])
        features = [torch.stack([c[0][k] for c in chunk]).float() for k in range(levels)]
        raw = [torch.stack([c[1][k] for c in chunk]).float() for k in range(levels)]
        most = max(max(len(c[2]) for c in chunk), 1)
        targets = torch.zeros(len(chunk), most, 5)
        for j, c in enumerate(chunk):
            targets[j, :len(c[2])] = c[2]
        yield features, raw, targets


def train_selector(model, items, epochs: int, batch: int, lr: float, seed: int) -> list[float]:
    """Train the selector on cached items (AdamW, cosine lr); returns the mean pss_loss of each epoch."""
    import torch
    from edge_yolox.train.losses import yolox_loss

    torch.manual_seed(seed)
    model.head.initialize_pss()
    model.freeze_all_but_pss()
    model.train()
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=5e-4)
    steps = epochs * -(-len(items) // batch)
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimizer, lr, total_steps=steps, pct_start=0.1)
    rng = np.random.default_rng(seed)
    history = []
    for epoch in range(epochs):
        losses = []
        for features, raw, targets in batches(items, batch, rng):
            pss = [model.head.selector_logit(k, f) for k, f in enumerate(features)]
            loss = yolox_loss(raw, model.head.strides, targets, pss=pss)["pss_loss"]
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        history.append(statistics.mean(losses))
        print(f"epoch {epoch + 1}/{epochs}: pss_loss {history[-1]:.4f}", file=sys.stderr, flush=True)
    model.eval()
    return history


def folds(n: int, k: int) -> list[list[int]]:
    """k interleaved parts of range(n) (k = 1: everything in one)."""
    return [list(range(f, n, k)) for f in range(k)]


def save(model, path: Path, held_out: list[int]) -> None:
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"model": model.state_dict(), "held_out": held_out}, path)


def run_finetune(args) -> None:
    import torch
    from edge_yolox.train.data.datasets import open_dataset

    torch.set_num_threads(args.threads)
    dataset = open_dataset(args.data, "val")
    if args.limit:
        dataset.records = dataset.records[:args.limit]
    parts = folds(len(dataset), args.folds)
    model = load_e2e(args.weights)
    cache_path = Path(args.out) / f"cache-{args.views}.pt"  # the frozen model's features: reused by later runs
    if cache_path.exists():
        items = torch.load(cache_path, weights_only=True)
    else:
        start = time.perf_counter()
        items = cache(model, dataset, range(len(dataset)), args.views)
        print(f"cached {len(items)} letterboxed images in {time.perf_counter() - start:.0f} s", file=sys.stderr)
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        torch.save(items, cache_path)
    per_image = len(items) // len(dataset)
    for f, held_out in enumerate(parts):
        train_on = [i for i in range(len(dataset)) if args.folds == 1 or i not in held_out]
        chosen = [item for i in train_on for item in items[i * per_image:(i + 1) * per_image]]
        start = time.perf_counter()
        history = train_selector(model, chosen, args.epochs, args.batch, args.lr, args.seed + f)
        path = Path(args.out) / f"fold{f}.pth"
        save(model, path, held_out if args.folds > 1 else [])
        print(f"fold {f}: {len(train_on)} images, pss_loss {history[0]:.4f} -> {history[-1]:.4f} in "
              f"{time.perf_counter() - start:.0f} s: {path}")


# ----------------------------------------------------------------------------- measure


def outputs_per_image(out: Path, dataset):
    """[N, 85] undecoded rows per image from the held-out fold's model: (plain scores, end-to-end scores), and
    the letterbox ratio."""
    import torch

    from edge_yolox.preprocess import letterbox, to_nchw

    result = {}
    for path in sorted(out.glob("fold*.pth")):
        model = load_e2e(path)
        model.head.decode_in_inference = False
        held_out = torch.load(path, map_location="cpu", weights_only=True)["held_out"] or range(len(dataset))
        with torch.no_grad():
            for i in held_out:
                frame, _ = dataset.load(i)
                image, ratio = letterbox(frame, SIZE)
                x = torch.from_numpy(to_nchw(image))
                model.head.use_pss = False
                plain = model(x)[0].numpy()
                model.head.use_pss = True
                result[i] = (plain, model(x)[0].numpy(), ratio, frame.shape[:2])
    if len(result) != len(dataset):
        sys.exit(f"{out}: the folds cover {len(result)} of {len(dataset)} images; run finetune first")
    return result


def detections(rows, ratio, frame_size, conf: float, nms: bool, iou: float = 0.65):
    import edge_yolox

    return edge_yolox.postprocess(rows, SIZE, conf=conf, iou=iou, nms=nms, ratio=ratio, frame_size=frame_size)


def score(dataset, detect) -> tuple[float, ...]:
    """(AP50:95, AP50, duplicates per object @0.3, share of objects with a duplicate @0.3, duplicates per object
    @0.1, share of objects found @0.3) of `detect` (frames -> detections at the official conf 0.01). The duplicates
    come from the same detections: after greedy NMS at 0.01, those scoring at or above a higher threshold are what
    NMS at that threshold keeps (edge_yolox.train.evaluate.duplicates_per_object counts them)."""
    from edge_yolox.train.evaluate import duplicates_per_object, evaluate

    kept = []

    def recording(frames):
        out = detect(frames)
        kept.extend(out)
        return out

    metrics = evaluate(recording, dataset, progress=False)  # asks for the images in dataset order
    labels = [dataset.labels(i) for i in range(len(dataset))]
    d3, share3, found3 = duplicates_per_object([d[d[:, 4] >= 0.3] for d in kept], labels)
    d1 = duplicates_per_object([d[d[:, 4] >= 0.1] for d in kept], labels)[0]
    return metrics["AP"], metrics["AP50"], d3, share3, d1, found3


def print_table(title: str, dataset, rows) -> None:
    """rows: (name, detect) pairs, or a generator of them; one Markdown row each, printed as it is measured."""
    print(f"{title}\n\n| model | AP50:95 | AP50 | duplicates per object @0.3 | objects with a duplicate @0.3 | "
          "duplicates per object @0.1 | objects found @0.3 |\n|---|---|---|---|---|---|---|")
    for name, detect in rows:
        ap, ap50, d3, share3, d1, found3 = score(dataset, detect)
        print(f"| {name} | {ap:.3f} | {ap50:.3f} | {d3:.3f} | {share3:.1%} | {d1:.3f} | {found3:.1%} |", flush=True)


def cached_detect(cached, which: int, nms: bool):
    """Detections from the cached outputs (`which`: 0 plain scores, 1 end to end), image by image in order."""
    from edge_yolox.train.evaluate import OFFICIAL_CONF

    order = iter(range(len(cached)))

    def detect(frames):
        rows = [cached[next(order)] for _ in frames]
        return [detections(row[which], row[2], row[3], OFFICIAL_CONF, nms) for row in rows]
    return detect


def postprocess_times(cached, repeat: int, seed: int = 0) -> dict[tuple[float, bool], float]:
    """Median ms per frame of the C++ postprocess on the end-to-end outputs, settings interleaved in a shuffled
    order every round."""
    settings = [(conf, nms) for conf in (0.01, 0.3) for nms in (True, False)]
    times = {s: [] for s in settings}
    rng = np.random.default_rng(seed)
    for _ in range(repeat):
        for i in cached:
            rows, ratio, size = cached[i][1], cached[i][2], cached[i][3]
            for k in rng.permutation(len(settings)):
                conf, nms = settings[k]
                t0 = time.perf_counter()
                detections(rows, ratio, size, conf, nms, iou=0.65 if conf < 0.1 else 0.45)
                times[settings[k]].append((time.perf_counter() - t0) * 1e3)
    return {s: statistics.median(v) for s, v in times.items()}


def run_measure(args) -> None:
    import torch
    from edge_yolox.train.data.datasets import open_dataset

    torch.set_num_threads(args.threads)
    dataset = open_dataset(args.data, "val")
    cached = outputs_per_image(Path(args.out), dataset)
    rows = [("NMS model (official Nano), NMS 0.65", 0, True), ("end-to-end, no NMS", 1, False),
            ("end-to-end, NMS 0.65", 1, True), ("NMS model without its NMS", 0, False)]
    print_table(f"coco128 ({len(dataset)} images), 416, conf 0.01", dataset,
                [(name, cached_detect(cached, which, nms)) for name, which, nms in rows])
    times = postprocess_times(cached, args.repeat)
    print("\nC++ postprocess per frame on the end-to-end outputs (median ms)\n")
    print("| conf | NMS | no NMS (top-k) |\n|---|---|---|")
    for conf in (0.01, 0.3):
        print(f"| {conf} | {times[(conf, True)]:.4f} | {times[(conf, False)]:.4f} |")


# ----------------------------------------------------------------------------- compare


def run_compare(args) -> None:
    """A whole end-to-end checkpoint (its plain head is the NMS model of the same training: the stop-gradient kept
    the selector out of it) and its exported bundles, on a dataset."""
    import torch
    from edge_yolox.train.checkpoint import model_from_checkpoint
    from edge_yolox.train.data.datasets import open_dataset
    from edge_yolox.train.evaluate import OFFICIAL_CONF, OFFICIAL_IOU, detector_detect_fn, torch_detect_fn

    from edge_yolox.bundle import read_bundle
    from edge_yolox.detector import Detector

    torch.set_num_threads(args.threads)
    dataset = open_dataset(args.data, "val")
    model = model_from_checkpoint(args.checkpoint, say=lambda _: None).model
    if not model.head.e2e:
        sys.exit(f"{args.checkpoint}: not an end-to-end checkpoint (no selector)")
    def head(pss: bool, nms: bool):
        detect = torch_detect_fn(model, SIZE, OFFICIAL_CONF, OFFICIAL_IOU, nms)

        def with_head(frames):
            model.head.use_pss = pss
            return detect(frames)
        return with_head

    def bundles():
        for path in args.bundles:
            end_to_end = read_bundle(path).nms is False
            for nms in (False, True) if end_to_end else (True,):
                detector = Detector(path, conf=OFFICIAL_CONF, iou=OFFICIAL_IOU, nms=nms, threads=args.threads)
                yield (f"{path} ({'end-to-end' if end_to_end else 'NMS model'}), {'NMS 0.65' if nms else 'no NMS'}",
                       detector_detect_fn(detector))
                detector.close()

    rows = [("NMS model (the plain head), NMS 0.65", head(False, True)), ("end-to-end, no NMS", head(True, False)),
            ("end-to-end, NMS 0.65", head(True, True)), ("NMS model without its NMS", head(False, False))]
    print_table(f"{args.checkpoint} on {args.data} ({len(dataset)} images), PyTorch FP32 at {args.size} and the "
                "bundles at theirs, conf 0.01", dataset, itertools.chain(rows, bundles()))


def run_oracle(args) -> None:
    import torch
    from edge_yolox.train.assign import simota_assign
    from edge_yolox.train.data.datasets import open_dataset
    from edge_yolox.train.losses import decode_boxes, flatten_outputs

    from edge_yolox.preprocess import letterbox

    torch.set_num_threads(args.threads)
    dataset = open_dataset(args.data, "val")
    model = load_e2e(args.weights)
    cached = {}
    for i, (_features, raw, targets) in enumerate(cache(model, dataset, range(len(dataset)), 1)):
        r, grid, stride = flatten_outputs([x.float().unsqueeze(0) for x in raw], model.head.strides)
        rows = torch.cat([r[0, :, :4], r[0, :, 4:].sigmoid()], 1).numpy()
        selected = rows.copy()
        if len(targets):
            t = targets.float().unsqueeze(0)
            a = simota_assign(decode_boxes(r[..., :4], grid, stride), r[..., 4], r[..., 5:],
                              (grid + 0.5) * stride.unsqueeze(-1), stride, t[..., 1:5], t[..., 0].long(),
                              torch.ones(t.shape[:2], dtype=torch.bool))
            selected[a.fg[0].numpy() & ~a.one_to_one(len(targets))[0].numpy(), 4] = 0
        frame, _ = dataset.load(i)
        cached[i] = (rows, selected, letterbox(frame, SIZE)[1], frame.shape[:2])
    print_table(f"{args.weights} on {args.data} ({len(dataset)} images), {args.size}, conf 0.01", dataset,
                [("NMS model, NMS 0.65", cached_detect(cached, 0, True)),
                 ("oracle selection (least-cost positive of each object), NMS 0.65", cached_detect(cached, 1, True))])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("command", choices=("finetune", "measure", "compare", "oracle"))
    p.add_argument("--weights", type=Path, default=SHARED / "weights" / "yolox_nano_coco.pth")
    p.add_argument("--data", type=Path, default=SHARED / "coco128")
    p.add_argument("--out", default="runs/e2e")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--folds", type=int, default=2)
    p.add_argument("--views", type=int, default=8, help="training views per image (letterbox, mirror, random)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--repeat", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--checkpoint", type=Path, help="compare: an end-to-end checkpoint (edge-yolox train --e2e)")
    p.add_argument("--size", type=int, default=416, help="input size")
    p.add_argument("--limit", type=int, default=0, help="finetune: only the first N images of --data")
    p.add_argument("--bundles", type=Path, nargs="*", default=[], help="compare: exported bundles of it")
    args = p.parse_args()
    global SIZE
    SIZE = (args.size, args.size)
    if args.command == "compare" and not args.checkpoint:
        p.error("compare needs --checkpoint")
    {"finetune": run_finetune, "measure": run_measure, "compare": run_compare, "oracle": run_oracle}[args.command](args)


if __name__ == "__main__":
    main()
