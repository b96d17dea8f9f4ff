"""The built-in demo: the shipped INT8 NCNN bundle (scripts/make-demo.sh) finds the shapes the synthetic source
draws, checked against the source's own ground truth, and `edge-yolox run --demo` reports them."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from runtime_helpers import cli, iou, records

from edge_yolox.bundle import read_bundle
from edge_yolox.detector import Detector
from edge_yolox.runflags import demo_model
from edge_yolox.scene import CLASSES
from edge_yolox.sources.synthetic import SyntheticReader

MAX_BYTES = 2 * 1024 * 1024


def match(dets: np.ndarray, boxes: np.ndarray, classes: np.ndarray, min_iou: float = 0.5) -> tuple[int, int]:
    """(ground truths found, detections that are right): greedy by score, same class, IoU >= min_iou."""
    taken = set()
    right = 0
    for *box, _score, cls in dets[np.argsort(-dets[:, 4])]:
        ious = [iou(box, gt) if k not in taken and classes[k] == int(cls) else 0.0 for k, gt in enumerate(boxes)]
        if ious and max(ious) >= min_iou:
            taken.add(int(np.argmax(ious)))
            right += 1
    return len(taken), right


def test_demo_bundle_is_a_small_int8_ncnn_model_of_the_shapes():
    bundle = demo_model()
    meta = read_bundle(bundle)  # also checks every file against its sha256
    assert (meta.backend, meta.precision, meta.layout) == ("ncnn", "int8", "split")
    assert meta.class_names == list(CLASSES) and meta.variant == "nano"
    size = sum(p.stat().st_size for p in bundle.iterdir())
    print(f"demo bundle {bundle.name}: {size / 1024:.0f} KiB")
    assert size <= MAX_BYTES
    assert meta.extra["calibration"]["images"] > 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_demo_model_finds_the_shapes_the_source_draws(seed):
    """Every 10th of 150 frames of three different scenes: recall and precision >= 0.9 at IoU 0.5 with the
    right class, against the boxes the source drew."""
    reader = SyntheticReader(640, 480, seed=seed)
    detector = Detector(demo_model(), conf=0.3, threads=1)
    found = right = total = detected = 0
    for index in range(150):
        frame = reader.grab()
        if index % 10:
            continue
        dets, _ = detector.detect(frame)
        f, r = match(dets, reader.boxes, reader.classes)
        found, right, total, detected = found + f, right + r, total + len(reader.boxes), detected + len(dets)
    detector.close()
    print(f"seed {seed}: recall {found}/{total}, precision {right}/{detected}")
    assert found >= 0.9 * total and right >= 0.9 * detected


def test_run_demo_reports_the_drawn_shapes():
    """`edge-yolox run --demo` as in the README: JSON lines whose detections are the shapes of the same scene
    replayed here (the x86 board's 640x480 camera size, seed 0)."""
    frames = 40
    result = cli("-q", "run", "--demo", "--board", "x86", "--limit", frames, "--threads", "1")
    assert result.returncode == 0, result.stderr
    out = records(result.stdout)
    assert [r["frame"] for r in out] == list(range(frames)) and all(r["size"] == [480, 640] for r in out)
    replay = SyntheticReader(640, 480)
    found = total = 0
    for record in out:
        replay.grab()
        assert {d["label"] for d in record["detections"]} <= set(CLASSES)
        dets = np.array([[*d["box"], d["score"], d["class_id"]] for d in record["detections"]], np.float32)
        found += match(dets.reshape(-1, 6), replay.boxes, replay.classes)[0]
        total += len(replay.boxes)
    print(f"run --demo: {found}/{total} drawn shapes reported")
    assert found >= 0.9 * total


def test_run_demo_with_tracking_plays_scripted_traffic_with_stable_ids():
    """`--demo --track` switches to the scripted traffic (objects enter, cross and leave): every detection carries a
    track_id, each id is announced by one `new` event, and ids hold (measured: the first shape keeps id 1 in 110 of
    the 120 frames)."""
    result = cli("-q", "run", "--demo", "--track", "--board", "x86", "--limit", 120, "--threads", "1")
    assert result.returncode == 0, result.stderr
    out = records(result.stdout)
    assert {r["source"] for r in out} == {"synthetic:tracks"}
    assert all("track_id" in d for r in out for d in r["detections"])
    seen = Counter(d["track_id"] for r in out for d in r["detections"] if d["track_id"] is not None)
    new = [e["track_id"] for r in out for e in r["events"] if e["type"] == "new"]
    assert sorted(new) == sorted(seen) and len(new) >= 2
    assert seen.most_common(1)[0][1] >= 90
