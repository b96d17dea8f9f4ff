"""Tracking evaluation on the scripted sequences (edge_yolox.sequences), shared by tests/test_tracking_eval.py and
bench/track_eval.py: the real demo model's detections of a sequence, a tracker run over them, and its score with
motmetrics (MOTA, IDF1, ID switches; HOTA through TrackEval when it is installed)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import motmetrics as mm
import numpy as np
from scipy.optimize import linear_sum_assignment

from edge_yolox.config import TrackConfig
from edge_yolox.detector import Detector
from edge_yolox.events import Events
from edge_yolox.runflags import demo_model
from edge_yolox.scene import CLASSES
from edge_yolox.sequences import GATE_LAYOUT, Truth
from edge_yolox.sources.synthetic import open_sequence
from edge_yolox.tracker import Tracker, TrackResult
from edge_yolox.zones import Line, Zone

SIZE = (320, 416)  # h, w: the demo model's 320 input letterboxes it at 0.77
FPS = 30.0
# Ground truth less visible than this (entering, leaving, hidden under another shape) is "don't care", as
# MOTChallenge treats its distractors: neither a miss nor, when a track covers it, a false positive. Measured
# with the demo model on these sequences (1284 frames), recall at IoU 0.5 and score >= 0.5 is 0/155 below 10 %
# visible, 14/109 at 10-25 %, 47/86 at 25-40 % and 96 % when fully visible: below a quarter a shape is not
# there for a detector.
MIN_VISIBLE = 0.25
MATCH_IOU = 0.5  # a track matches a ground-truth box at IoU >= 0.5 (MOTChallenge's CLEAR/Identity threshold)


@dataclass
class Played:
    """One sequence through the detector: the ground truth and the detections (float32 [K, 6]) of each frame."""

    name: str
    seed: int
    truths: list[Truth]
    dets: list[np.ndarray]


@dataclass
class Hypothesis:
    """What a tracker reports for one frame: track ids and boxes (xyxy)."""

    ids: np.ndarray
    boxes: np.ndarray


def sequence(name: str, seed: int, frames: int, size: tuple[int, int] = SIZE) -> Iterator[tuple[np.ndarray, Truth]]:
    """(frame, ground truth) of the first `frames` frames (fewer when the script ends) of sequence `name`."""
    reader = open_sequence(name, size[1], size[0], FPS, seed)
    for _ in range(frames):
        frame = reader.grab()
        if frame is None:
            return
        yield frame, reader.truth


def play(name: str, seed: int, frames: int, detector: Detector | None = None) -> Played:
    """The sequence through the demo model at conf 0.1 (the tracker's low-score floor: ByteTrack's second
    association needs the low-score detections)."""
    own = detector is None
    detector = detector or Detector(demo_model(), conf=0.1, threads=1)
    truths, dets = [], []
    for frame, truth in sequence(name, seed, frames):
        truths.append(truth)
        dets.append(detector.detect(frame)[0])
    if own:
        detector.close()
    return Played(name, seed, truths, dets)


def as_tracks(truth: Truth) -> np.ndarray:
    """The ground truth as a tracker's `tracks` array [M, 7]: id, x1, y1, x2, y2, score 1, class id."""
    return np.column_stack([truth.ids, truth.boxes, np.ones(len(truth.ids)), truth.classes]).astype(np.float64)


def tracker() -> Tracker:
    """ByteTrack with the default `track:` settings, at the sequences' frame rate."""
    return Tracker(TrackConfig(), FPS)


def track(played: Played, tracker: Tracker) -> list[TrackResult]:
    """The tracker's result for each frame's detections."""
    return [tracker.update(dets) for dets in played.dets]


def hypotheses(results: list[TrackResult]) -> list[Hypothesis]:
    """The tracks a tracker reports (ids and Kalman-filtered boxes, as the reference's online targets)."""
    return [Hypothesis(r.tracks[:, 0].astype(np.int64), r.tracks[:, 1:5]) for r in results]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix [len(a), len(b)] of xyxy boxes, by motmetrics' own box IoU (it takes x, y, w, h)."""
    xywh = [np.column_stack([x[:, :2], x[:, 2:] - x[:, :2]]).astype(np.float64).reshape(-1, 4) for x in (a, b)]
    return mm.distances.boxiou(xywh[0][:, None], xywh[1][None, :]).reshape(len(a), len(b))


def _frames(truths: list[Truth], hyps: list[Hypothesis]):
    """Per frame: (gt ids, hyp ids, IoU matrix) after removing the don't-care ground truth and the hypotheses
    that match it (one-to-one, IoU >= MATCH_IOU, as TrackEval's MOTChallenge preprocessing does)."""
    for truth, hyp in zip(truths, hyps):
        overlap = iou(truth.boxes, hyp.boxes)
        care = truth.visible >= MIN_VISIBLE
        rows, cols = linear_sum_assignment(-np.where(overlap >= MATCH_IOU, overlap, 0))
        drop = {c for r, c in zip(rows, cols) if not care[r] and overlap[r, c] >= MATCH_IOU}
        keep = np.array([c not in drop for c in range(len(hyp.ids))], bool)
        yield truth.ids[care], hyp.ids[keep], overlap[care][:, keep]


def score(truths: list[Truth], hyps: list[Hypothesis]) -> dict:
    """MOTA, IDF1, ID switches, counts (motmetrics) and HOTA (TrackEval, None when it is not installed)."""
    acc = mm.MOTAccumulator(auto_id=True)
    frames = list(_frames(truths, hyps))
    for gt, hyp, overlap in frames:
        acc.update(gt, hyp, np.where(overlap >= MATCH_IOU, 1 - overlap, np.nan))
    names = ["mota", "idf1", "num_switches", "num_misses", "num_false_positives", "num_unique_objects",
             "num_objects", "mostly_tracked"]
    summary = mm.metrics.create().compute(acc, metrics=names, name="seq")
    result = {k: summary[k].iloc[0].item() for k in names}
    result["frames"] = len(truths)
    result["hota"] = hota(frames)
    return result


def hota(frames: list) -> float | None:
    """HOTA (averaged over the localisation thresholds 0.05-0.95) by TrackEval's own implementation, or None
    when it is not installed: TrackEval on PyPI (`trackeval`) requires the GUI opencv-python, which must not
    replace the headless OpenCV beside it, so it is installed alone: `pip install --no-deps trackeval==1.3.0`."""
    try:
        from trackeval.metrics import HOTA
    except ImportError:
        return None
    gt_index = {i: k for k, i in enumerate(sorted({int(i) for gt, _, _ in frames for i in gt}))}
    hyp_index = {i: k for k, i in enumerate(sorted({int(i) for _, hyp, _ in frames for i in hyp}))}
    data = {
        "num_timesteps": len(frames), "num_gt_ids": len(gt_index), "num_tracker_ids": len(hyp_index),
        "num_gt_dets": sum(len(gt) for gt, _, _ in frames), "num_tracker_dets": sum(len(h) for _, h, _ in frames),
        "gt_ids": [np.array([gt_index[int(i)] for i in gt], int) for gt, _, _ in frames],
        "tracker_ids": [np.array([hyp_index[int(i)] for i in hyp], int) for _, hyp, _ in frames],
        "similarity_scores": [overlap for _, _, overlap in frames],
    }
    return float(np.mean(HOTA().eval_sequence(data)["HOTA"]))


def regions(layout: dict = GATE_LAYOUT) -> tuple[tuple[Zone, ...], tuple[Line, ...]]:
    """The zones and lines of a `--zones` file's content, with the default classes (all) and min_frames."""
    zones = tuple(Zone(name, tuple(map(tuple, z["polygon"]))) for name, z in layout.get("zones", {}).items())
    lines = tuple(Line(name, *map(tuple, ln["points"])) for name, ln in layout.get("lines", {}).items())
    return zones, lines


def tally(size: tuple[int, int], frames: Iterable[tuple[np.ndarray, np.ndarray]]) -> tuple[Counter, dict]:
    """What edge_yolox.events counts on the gate layout from a tracker's (tracks, ended) per frame: the zone
    entries and leaves and line crossings {(type, zone or line, direction or ""): n}, and the last counts (the
    record's `zones` and `lines`)."""
    events = Events(*regions(), TrackConfig(), CLASSES)
    out: Counter = Counter()
    counts: dict = {}
    for t, (tracks, ended) in enumerate(frames):
        happened, counts = events.update(t / FPS, t, size, tracks, ended)
        out.update(event_key(e) for e in happened if e["type"] in ("enter", "leave", "cross"))
    return out, counts


def event_key(event: dict) -> tuple[str, str, str]:
    """(type, zone or line, direction or "") of an event."""
    return event["type"], event.get("zone") or event.get("line") or "", event.get("direction", "")


def truth_tracks(truths: Iterable[Truth]) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """The ground truth as a tracker's output per frame: (tracks [M, 7], ended ids); an id ends on the frame
    after its last (a shape never comes back)."""
    before = np.zeros(0, np.int64)
    for truth in truths:
        yield as_tracks(truth), np.setdiff1d(before, truth.ids)
        before = truth.ids


def count_events(played: Played, results: list[TrackResult]) -> tuple[Counter, Counter]:
    """(events counted from the tracker's results, from the ground truth) on the gate layout: the same Events
    engine fed the tracker's tracks, and the ground-truth identities."""
    return tally(SIZE, [(r.tracks, r.ended) for r in results])[0], tally(SIZE, truth_tracks(played.truths))[0]
