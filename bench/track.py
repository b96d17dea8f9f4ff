"""Benchmark the C++ ByteTrack (edge_yolox.tracker) against the reference ByteTrack, and check they agree.

    .venv/bin/pip install lap          # the reference's assignment solver (bench only, not a package dependency)
    python bench/track.py --reference /work/ref [--frames 2000] [--rss-frames 100000]

--reference: a directory holding the reference's byte_tracker.py, kalman_filter.py, matching.py and
basetrack.py (github:ifzhang/ByteTrack, yolox/tracker/); without it only our tracker's speed and memory are
measured. The reference runs unmodified with minimal shims: `cython_bbox.bbox_overlaps` in numpy (plain
continuous IoU like our core, or its own +1 pixel convention for the second comparison), empty `torch` modules
(imported, unused on this path), `np.float` (removed from numpy 1.24).

Both trackers see the same seeded sequence: 60 objects moving across a 1920x1080 frame (about 50 of them
detected in a frame) with box noise, runs of low scores (occlusion), dropouts (some longer than the 30-frame
buffer), objects leaving and new ones entering, and false positives. Our tracker is timed alone, then both
interleaved frame by frame (the reference's work between our calls evicts our caches: the fair comparison);
equality compares every frame's output tracks (ids, order, boxes, scores).
"""

from __future__ import annotations

import argparse
import importlib
import statistics
import sys
import time
import types
from pathlib import Path
from types import SimpleNamespace

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from edge_yolox.tracker import Tracker  # noqa: E402

WIDTH, HEIGHT = 1920, 1080
CONFIG = SimpleNamespace(thresh=0.5, low=0.1, match=0.8, buffer=30, frame_rate=30, per_class=False,
                         max_tracks=1000)  # the `track:` defaults


def scene(seed: int, objects: int = 60):
    """Endless frames of float32 [K, 6] detections sorted by score, as NMS leaves them."""
    rng = np.random.default_rng(seed)

    def spawn(n):
        w, h = rng.uniform(30, 120, n), rng.uniform(60, 240, n)
        return dict(cx=rng.uniform(0, WIDTH, n), cy=rng.uniform(0, HEIGHT, n), vx=rng.uniform(-6, 6, n),
                    vy=rng.uniform(-4, 4, n), w=w, h=h, cls=rng.choice([0.0, 2.0], n),
                    hidden=np.zeros(n, int), weak=np.zeros(n, int))

    s = spawn(objects)
    while True:
        s["cx"] += s["vx"]
        s["cy"] += s["vy"]
        s["vx"] += rng.normal(0, 0.2, objects)
        out = (s["cx"] < -50) | (s["cx"] > WIDTH + 50) | (s["cy"] < -50) | (s["cy"] > HEIGHT + 50)
        if out.any():
            fresh = spawn(int(out.sum()))
            for k in s:
                s[k][out] = fresh[k]
        s["hidden"] = np.maximum(s["hidden"] - 1, 0)
        s["weak"] = np.maximum(s["weak"] - 1, 0)
        start_hidden = rng.random(objects) < 0.01
        s["hidden"][start_hidden] = rng.integers(1, 45, int(start_hidden.sum()))
        start_weak = rng.random(objects) < 0.02
        s["weak"][start_weak] = rng.integers(1, 9, int(start_weak.sum()))

        seen = s["hidden"] == 0
        score = np.where(s["weak"] > 0, rng.uniform(0.12, 0.48, objects), rng.uniform(0.55, 0.95, objects))
        boxes = np.stack([s["cx"] - s["w"] / 2, s["cy"] - s["h"] / 2, s["cx"] + s["w"] / 2, s["cy"] + s["h"] / 2], 1)
        boxes += rng.normal(0, 1.5, boxes.shape)
        dets = np.concatenate([boxes, score[:, None], s["cls"][:, None]], 1)[seen]
        n_false = rng.poisson(2)
        xy = rng.uniform(0, [WIDTH, HEIGHT], (n_false, 2))
        wh = rng.uniform(20, 100, (n_false, 2))
        noise = np.concatenate([xy, xy + wh, rng.uniform(0.1, 0.7, (n_false, 1)), np.zeros((n_false, 1))], 1)
        dets = np.concatenate([dets, noise])
        yield dets[np.argsort(-dets[:, 4], kind="stable")].astype(np.float32)


def load_reference(path: Path, iou_convention: dict):
    """The reference's BYTETracker class and its BaseTrack (whose id counter is global), imported unmodified."""
    if not hasattr(np, "float"):
        np.float = float  # removed in numpy 1.24; the reference's np.asarray(dtype=np.float) means float64

    def bbox_overlaps(boxes, query):
        e = 1.0 if iou_convention["plus_one"] else 0.0
        iw = np.minimum(boxes[:, None, 2], query[None, :, 2]) - np.maximum(boxes[:, None, 0], query[None, :, 0]) + e
        ih = np.minimum(boxes[:, None, 3], query[None, :, 3]) - np.maximum(boxes[:, None, 1], query[None, :, 1]) + e
        area_b = (boxes[:, 2] - boxes[:, 0] + e) * (boxes[:, 3] - boxes[:, 1] + e)
        area_q = (query[:, 2] - query[:, 0] + e) * (query[:, 3] - query[:, 1] + e)
        inter = iw * ih
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((iw > 0) & (ih > 0), inter / (area_b[:, None] + area_q[None, :] - inter), 0.0)

    shims = {"cython_bbox": types.ModuleType("cython_bbox"), "torch": types.ModuleType("torch"),
             "torch.nn": types.ModuleType("torch.nn"), "torch.nn.functional": types.ModuleType("torch.nn.functional"),
             "yolox": types.ModuleType("yolox"), "yolox.tracker": types.ModuleType("yolox.tracker")}
    shims["cython_bbox"].bbox_overlaps = bbox_overlaps
    shims["yolox"].__path__ = []
    shims["yolox.tracker"].__path__ = [str(path)]
    sys.modules.update(shims)
    byte_tracker = importlib.import_module("yolox.tracker.byte_tracker")
    basetrack = importlib.import_module("yolox.tracker.basetrack")
    return byte_tracker.BYTETracker, basetrack.BaseTrack


def reference_tracks(tracker, dets: np.ndarray) -> np.ndarray:
    out = tracker.update(dets[:, :5].copy(), (HEIGHT, WIDTH), (HEIGHT, WIDTH))  # scale 1: boxes stay in pixels
    return np.array([[t.track_id, *t.tlbr, t.score] for t in out]).reshape(-1, 6)


def compare(frames, reference, base_track, time_it: bool):
    """Runs both trackers frame by frame; returns (our µs, reference µs, frames differing, first differing
    frame, max box difference, tracks compared)."""
    base_track._count = 0
    ref = reference(SimpleNamespace(track_thresh=CONFIG.thresh, track_buffer=CONFIG.buffer,
                                    match_thresh=CONFIG.match, mot20=False), frame_rate=30)
    ours = Tracker(CONFIG, fps=30)
    ours_us, ref_us = [], []
    differ, first, max_diff, compared = 0, None, 0.0, 0
    for i, dets in enumerate(frames, 1):
        t0 = time.perf_counter()
        expected = reference_tracks(ref, dets)
        t1 = time.perf_counter()
        got = ours.update(dets).tracks
        t2 = time.perf_counter()
        if time_it:
            ref_us.append((t1 - t0) * 1e6)
            ours_us.append((t2 - t1) * 1e6)
        same_ids = got.shape[0] == expected.shape[0] and np.array_equal(got[:, 0], expected[:, 0])
        if same_ids and np.array_equal(got[:, 5].astype(np.float32), expected[:, 5].astype(np.float32)):
            compared += len(got)
            max_diff = max(max_diff, float(np.abs(got[:, 1:5] - expected[:, 1:5]).max(initial=0.0)))
        else:
            differ += 1
            first = first or i
    return ours_us, ref_us, differ, first, max_diff, compared


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def memory(frames: int):
    """RSS after a warm-up tenth of the frames and at the end, with live tracks and ids issued."""
    tracker = Tracker(CONFIG, fps=30)
    warm = frames // 10
    start, top_id = 0.0, 0
    for i, dets in enumerate(scene(seed=2), 1):
        result = tracker.update(dets)
        if len(result.tracks):
            top_id = max(top_id, int(result.tracks[:, 0].max()))
        if i == warm:
            start = rss_mib()
        if i == frames:
            return start, rss_mib(), len(tracker), top_id


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, help="directory of the reference's yolox/tracker/*.py")
    parser.add_argument("--frames", type=int, default=2000)
    parser.add_argument("--rss-frames", type=int, default=100_000)
    args = parser.parse_args()

    frames = [d for d, _ in zip(scene(seed=1), range(args.frames))]
    tracker = Tracker(CONFIG, fps=30)
    alone, tracked = [], []
    for dets in frames:
        t0 = time.perf_counter()
        result = tracker.update(dets)
        alone.append((time.perf_counter() - t0) * 1e6)
        tracked.append(len(result.tracks))
    print(f"sequence: {len(frames)} frames (seed 1), per frame {np.mean([len(d) for d in frames]):.1f} detections, "
          f"{np.mean(tracked):.1f} tracks output\n")
    print(f"edge-yolox C++ (Tracker.update) alone: median {statistics.median(alone):.1f} µs/frame\n")
    if args.reference:
        convention = {"plus_one": False}
        reference, base_track = load_reference(args.reference, convention)
        ours_us, ref_us, differ, first, max_diff, compared = compare(frames, reference, base_track, time_it=True)
        ours_med, ref_med = statistics.median(ours_us), statistics.median(ref_us)
        print("| interleaved | median µs/frame | mean µs/frame |")
        print("|---|---|---|")
        print(f"| edge-yolox C++ (Tracker.update) | {ours_med:.1f} | {statistics.mean(ours_us):.1f} |")
        print(f"| reference (numpy + lap.lapjv) | {ref_med:.1f} | {statistics.mean(ref_us):.1f} |")
        print(f"\nspeed-up (median): {ref_med / ours_med:.0f}x\n")
        print("| comparison | frames differing | first | tracks compared | max box diff (px) |")
        print("|---|---|---|---|---|")
        print(f"| reference with continuous IoU (ours) | {differ} / {len(frames)} | {first or '-'} | {compared} "
              f"| {max_diff:.2e} |")
        convention["plus_one"] = True
        _, _, differ, first, max_diff, compared = compare(frames, reference, base_track, time_it=False)
        print(f"| reference with its own +1 pixel IoU | {differ} / {len(frames)} | {first or '-'} | {compared} "
              f"| {max_diff:.2e} |\n")
    start, end, live, top_id = memory(args.rss_frames)
    print(f"RSS over {args.rss_frames} frames: {start:.1f} MiB after {args.rss_frames // 10}, {end:.1f} MiB at the "
          f"end (growth {end - start:+.2f} MiB); {live} live tracks at the end, {top_id} ids issued")


if __name__ == "__main__":
    main()
