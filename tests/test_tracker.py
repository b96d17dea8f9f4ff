"""ByteTrack in the C++ core (csrc/tracker.h) and its wrapper (edge_yolox/tracker.py): hand-made sequences whose
right answer is known, the assignment solver against brute force, the Kalman filter against its textbook
equations. Agreement with the reference implementation, frame by frame, is measured in bench/track.py."""

from __future__ import annotations

import itertools
import threading
from types import SimpleNamespace

import numpy as np
import pytest

from edge_yolox import _core
from edge_yolox.tracker import Tracker, TrackResult


def det(x, y, w=40.0, h=80.0, score=0.9, cls=0):
    return [x, y, x + w, y + h, score, cls]


def frame(*rows) -> np.ndarray:
    return np.array(rows, np.float32).reshape(-1, 6)


def run(tracker, frames):
    return [tracker.update(f) for f in frames]


def ids_of(result) -> list[int]:
    return result[1][:, 0].astype(int).tolist()


# --- behaviour ---------------------------------------------------------------------------------------------------


def test_ids_stay_constant_for_moving_boxes_in_any_detection_order():
    rng = np.random.default_rng(0)
    tracker = _core.ByteTracker()
    starts = [(100, 100, 4, 0), (600, 300, -3, 2), (300, 700, 2, -3)]  # x, y, vx, vy
    seen = {}  # object -> the ids its detections got
    for f in range(40):
        rows = [det(x + vx * f + rng.normal(0, 1), y + vy * f + rng.normal(0, 1)) for x, y, vx, vy in starts]
        order = rng.permutation(3)
        ids, tracks, ended = tracker.update(frame(*[rows[i] for i in order]))
        for k, obj in enumerate(order):
            seen.setdefault(obj, set()).add(int(ids[k]))
        assert len(tracks) == 3 and len(ended) == 0
        for k, obj in enumerate(order):  # the filtered box stays on its detection
            box = tracks[tracks[:, 0] == ids[k], 1:5][0]
            assert np.abs(box - np.array(rows[obj][:4])).max() < 5
    assert sorted(seen.values()) == [{1}, {2}, {3}]


def low_score_sequence(with_low: bool):
    """One box moving right; frames 10..14 it is occluded: a low score, or no detection at all."""
    frames = []
    for f in range(25):
        occluded = 10 <= f < 15
        if occluded and not with_low:
            frames.append(frame())
        else:
            frames.append(frame(det(100 + 3 * f, 200, score=0.3 if occluded else 0.9)))
    return frames


def test_low_score_detections_keep_a_track_alive():
    results = run(_core.ByteTracker(), low_score_sequence(with_low=True))
    for f, (ids, tracks, ended) in enumerate(results):
        assert ids.tolist() == [1] and ids_of((ids, tracks, ended)) == [1], f
        assert len(ended) == 0
    assert results[12][1][0, 5] == pytest.approx(0.3)  # the track carries the low score it was matched with


def test_without_low_score_detections_the_track_is_lost_meanwhile():
    results = run(_core.ByteTracker(), low_score_sequence(with_low=False))
    assert [ids_of(r) for r in results[10:15]] == [[]] * 5
    assert ids_of(results[15]) == [1]  # re-found within the buffer: the same id
    # Detections at or below low_thresh are discarded: the same as no detection.
    results = run(_core.ByteTracker(low_thresh=0.35), low_score_sequence(with_low=True))
    assert [ids_of(r) for r in results[10:15]] == [[]] * 5


def test_low_score_detections_never_start_a_track():
    results = run(_core.ByteTracker(), [frame(det(100, 100, score=0.45))] * 10)
    assert all(r[0].tolist() == [0] and len(r[1]) == 0 for r in results)


def absent(frames_total: int, gone: range, x=100.0):
    """A still box, absent during `gone` (frame numbers from 1)."""
    return [frame() if f in gone else frame(det(x, 100)) for f in range(1, frames_total + 1)]


def test_a_lost_track_refound_within_the_buffer_keeps_its_id():
    results = run(_core.ByteTracker(buffer=30), absent(45, range(11, 41)))
    assert ids_of(results[40]) == [1] and results[40][0].tolist() == [1]
    assert all(len(r[2]) == 0 for r in results)


def test_a_track_lost_longer_than_the_buffer_ends_and_a_new_id_follows():
    # Last seen at frame 10, buffer 5: marked removed at frame 16 (16 - 10 > 5) and, as in the reference, still
    # matchable during frame 17; it leaves (`ended`) at the end of frame 17.
    results = run(_core.ByteTracker(buffer=5), absent(25, range(11, 20)))
    ended = [(f, r[2].tolist()) for f, r in enumerate(results, 1) if len(r[2])]
    assert ended == [(17, [1])]
    assert results[19][0].tolist() == [0]  # frame 20: a new, unconfirmed track (id 2)
    assert results[20][0].tolist() == [2] and ids_of(results[20]) == [2]


@pytest.mark.parametrize("back, same_id", [(17, True), (18, False)])
def test_the_last_frame_a_lost_track_can_come_back(back, same_id):
    results = run(_core.ByteTracker(buffer=5), absent(back + 1, range(11, back)))
    assert results[back][0].tolist() == ([1] if same_id else [2])


def test_new_tracks_need_thresh_plus_a_tenth():
    tracker = _core.ByteTracker(track_thresh=0.5)
    ids, tracks, _ = tracker.update(frame(det(100, 100, score=0.55), det(400, 100, score=0.65)))
    assert ids.tolist() == [0, 1]  # first frame: created and confirmed at once
    for _ in range(5):  # 0.55 matches nothing and never starts a track
        ids, tracks, _ = tracker.update(frame(det(100, 100, score=0.55), det(400, 100, score=0.65)))
        assert ids.tolist() == [0, 1]
    ids, tracks, _ = tracker.update(frame(det(400, 100), det(800, 100, score=0.62)))
    assert ids.tolist() == [1, 0]  # later frames: a new track waits one frame to be confirmed
    ids, tracks, _ = tracker.update(frame(det(400, 100), det(800, 100, score=0.62)))
    assert ids.tolist() == [1, 2] and ids_of((ids, tracks)) == [1, 2]


@pytest.mark.parametrize("per_class, expected", [(False, [1, 1, 1, 1, 1, 1]), (True, [1, 1, 1, 0, 2, 2])])
def test_per_class_tracks_only_take_their_class(per_class, expected):
    tracker = _core.ByteTracker(per_class=per_class)
    results = run(tracker, [frame(det(100, 100, cls=0 if f < 3 else 1)) for f in range(6)])
    assert [int(r[0][0]) for r in results] == expected
    assert results[-1][1][0, 6] == 1  # the track's class is its latest detection's


def test_max_tracks_caps_live_tracks_and_evicts_the_longest_lost_first():
    tracker = _core.ByteTracker(max_tracks=2)
    a, b, c = det(100, 100), det(400, 100), det(700, 100)
    for _ in range(3):
        ids, _, ended = tracker.update(frame(a, b, c))
        assert ids.tolist() == [1, 2, 0] and len(tracker) == 2  # no room for c
    ids, _, ended = tracker.update(frame(b, c))  # a is lost; c needs room: a (the only lost track) is evicted
    assert ended.tolist() == [1] and ids.tolist() == [2, 0] and len(tracker) == 2
    ids, _, ended = tracker.update(frame(b, c))
    assert ids.tolist() == [2, 3] and len(ended) == 0 and len(tracker) == 2


def test_output_order_is_the_references_old_tracks_then_new_then_refound():
    a, b, c = det(100, 100), det(400, 100), det(700, 100)
    results = run(_core.ByteTracker(), [frame(a, b), frame(a, c), frame(a, c), frame(a, b, c)])
    assert [ids_of(r) for r in results] == [[1, 2], [1], [1, 3], [1, 3, 2]]


def test_ids_start_at_one_per_tracker_and_after_reset():
    first, second = _core.ByteTracker(), _core.ByteTracker()
    for t in (first, second):
        assert t.update(frame(det(100, 100), det(300, 100)))[0].tolist() == [1, 2]
    first.reset()
    assert len(first) == 0
    assert first.update(frame(det(500, 100)))[0].tolist() == [1]  # frame 1 again: confirmed at once


def test_result_types_and_an_empty_frame():
    ids, tracks, ended = _core.ByteTracker().update(np.zeros((0, 6), np.float32))
    assert (ids.dtype, ids.shape, tracks.dtype, tracks.shape, ended.dtype) == (
        np.int32, (0,), np.float64, (0, 7), np.int32)
    ids, tracks, ended = _core.ByteTracker().update(frame(det(10, 20, score=0.75, cls=3)))
    assert tracks.tolist() == [[1, 10, 20, 50, 100, pytest.approx(0.75), 3]]


def test_boxes_without_area_are_ignored():
    ids, tracks, _ = _core.ByteTracker().update(frame([5, 5, 5, 50, 0.9, 0], [9, 9, 30, 9, 0.9, 0], det(100, 100)))
    assert ids.tolist() == [0, 0, 1] and len(tracks) == 1


@pytest.mark.parametrize("dets, message", [
    (np.zeros((2, 5), np.float32), r"\[K, 6\] array .* got shape \(2, 5\)"),
    (np.zeros(6, np.float32), r"got shape \(6\)"),
    (np.zeros((1, 2, 6), np.float32), r"got shape \(1, 2, 6\)"),
    (frame(det(1, 1), [0, 0, np.nan, 1, 0.9, 0]), "row 1 has a non-finite value"),
    (frame([0, 0, 1, 1, np.inf, 0]), "row 0 has a non-finite value"),
    (frame([0, 0, 1, 1, 0.9, 3e9]), "row 0 has a class_id out of range"),
])
def test_bad_detections_are_a_value_error(dets, message):
    with pytest.raises(ValueError, match=message):
        _core.ByteTracker().update(dets)


@pytest.mark.parametrize("option, value, message", [
    ("track_thresh", 1.5, r"track_thresh must be in \[0, 1\]"),
    ("low_thresh", 0.6, r"low_thresh must be in \[0, track_thresh\]"),
    ("match_thresh", 0.0, r"match_thresh must be in \(0, 1\]"),
    ("match_thresh", float("nan"), "match_thresh"),
    ("buffer", -1, "buffer must be >= 0"),
    ("max_tracks", 0, "max_tracks must be >= 1"),
])
def test_bad_options_are_a_value_error(option, value, message):
    with pytest.raises(ValueError, match=message):
        _core.ByteTracker(**{option: value})


def test_trackers_in_threads_match_a_serial_run():
    rng = np.random.default_rng(1)
    frames = [frame(*[det(100 * k + f * 2 + rng.normal(), 50 * k + rng.normal()) for k in range(8)])
              for f in range(60)]
    expected = [r[1] for r in run(_core.ByteTracker(), frames)]
    got = {}

    def work(k):
        got[k] = [r[1] for r in run(_core.ByteTracker(), frames)]

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for k in range(4):
        assert all(np.array_equal(a, b) for a, b in zip(got[k], expected))


# --- the assignment solver ---------------------------------------------------------------------------------------


def brute_force(cost: np.ndarray, limit: float) -> tuple[float, set]:
    """Every partial matching; unassigned rows and columns cost limit / 2 each (lap.lapjv's extend_cost)."""
    rows, cols = cost.shape
    best = (np.inf, set())
    for k in range(min(rows, cols) + 1):
        for rs in itertools.combinations(range(rows), k):
            for cs in itertools.permutations(range(cols), k):
                total = sum(cost[r, c] for r, c in zip(rs, cs)) + (rows + cols - 2 * k) * limit / 2
                if total < best[0]:
                    best = (total, set(zip(rs, cs)))
    return best


def test_assignment_is_the_optimum_of_the_extended_problem():
    rng = np.random.default_rng(0)
    for case in range(300):
        rows, cols = rng.integers(0, 6, 2)
        cost = rng.uniform(0, 1, (rows, cols))
        cost[rng.uniform(size=cost.shape) < 0.15] = np.inf  # pairs that may never match (other class)
        limit = float(rng.uniform(0.2, 1.0))
        best, pairs = brute_force(cost, limit)
        row_to_col, col_to_row = _core.linear_assignment(cost, limit)
        got = {(r, int(c)) for r, c in enumerate(row_to_col) if c >= 0}
        assert got == pairs, case
        assert all(col_to_row[c] == r for r, c in got)
        assert (col_to_row >= 0).sum() == len(got)
        assert sum(cost[r, c] for r, c in got) + (rows + cols - 2 * len(got)) * limit / 2 == pytest.approx(best)


def test_assignment_is_not_hungarian_then_filter():
    # A complete assignment takes (0, 1) + (1, 0) = 1.2 (over 2.1); filtering at 0.5 then keeps (0, 1): 0.3 plus
    # 0.25 for each of row 1 and column 0 left = 0.8. The extended problem's optimum is (0, 0) alone: 0.6.
    cost = np.array([[0.1, 0.3], [0.9, 2.0]])
    row_to_col, col_to_row = _core.linear_assignment(cost, 0.5)
    assert row_to_col.tolist() == [0, -1] and col_to_row.tolist() == [0, -1]


def test_assignment_rejects_bad_costs():
    with pytest.raises(ValueError, match="costs must be numbers or \\+inf"):
        _core.linear_assignment(np.array([[np.nan]]), 0.5)
    with pytest.raises(ValueError, match="cost_limit must be finite"):
        _core.linear_assignment(np.zeros((2, 2)), np.inf)


# --- the Kalman filter -------------------------------------------------------------------------------------------


class TextbookKalman:
    """The constant-velocity filter on (cx, cy, aspect, h) with full 8x8 matrices, straight from the equations."""

    F = np.eye(8) + np.eye(8, k=4)
    H = np.eye(4, 8)

    def __init__(self, z):
        h = z[3]
        self.x = np.r_[z, np.zeros(4)]
        self.P = np.diag(np.square([h / 10, h / 10, 1e-2, h / 10, h / 16, h / 16, 1e-5, h / 16]))

    def predict(self, lost=False):
        if lost:
            self.x[7] = 0  # a lost box stops changing height
        h = self.x[3]
        Q = np.diag(np.square([h / 20, h / 20, 1e-2, h / 20, h / 160, h / 160, 1e-5, h / 160]))
        self.x = self.F @ self.x
        self.P = self.F @ self.P @ self.F.T + Q

    def update(self, z):
        h = self.x[3]
        R = np.diag(np.square([h / 20, h / 20, 1e-1, h / 20]))
        S = self.H @ self.P @ self.H.T + R
        K = self.P @ self.H.T @ np.linalg.inv(S)
        self.x = self.x + K @ (z - self.H @ self.x)
        self.P = self.P - K @ S @ K.T

    def box(self):
        cx, cy, a, h = self.x[:4]
        return np.array([cx - a * h / 2, cy - h / 2, cx + a * h / 2, cy + h / 2])


def test_kalman_matches_the_textbook_equations_through_tracking_and_loss():
    rng = np.random.default_rng(3)
    # Eighths of a pixel: exact in float32, so the tracker's float32 input and this float64 model see one box.
    moving = [np.array([100 + 5 * f, 200 + 2 * f, 160 + 5.3 * f, 320 + 2.8 * f]) for f in range(20)]
    boxes = [np.round(8 * (b + rng.normal(0, 1, 4))) / 8 for b in moving]
    missing = {12, 13, 14}  # lost for three frames, then re-found
    tracker = _core.ByteTracker()
    kf = None
    lost_for = 0
    for f, b in enumerate(boxes):
        rows = frame() if f in missing else frame([*b, 0.9, 0])
        _, tracks, _ = tracker.update(rows)
        x1, y1, x2, y2 = b
        z = np.array([(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / (y2 - y1), y2 - y1])
        if kf is None:
            kf = TextbookKalman(z)
        else:
            kf.predict(lost=lost_for > 0)
            if f in missing:
                lost_for += 1
                assert len(tracks) == 0
                continue
            lost_for = 0
            kf.update(z)
        np.testing.assert_allclose(tracks[0, 1:5], kf.box(), rtol=0, atol=1e-9)


# --- the wrapper -------------------------------------------------------------------------------------------------


def track_config(**changes):
    """The `track:` defaults (edge_yolox.config.TrackConfig's fields), with changes."""
    values = dict(enabled=True, thresh=0.5, low=0.1, match=0.8, buffer=30, frame_rate=0, per_class=False,
                  max_tracks=1000, update_interval_s=5.0, anchor="bottom")
    return SimpleNamespace(**{**values, **changes})


@pytest.mark.parametrize("frame_rate, fps, buffer", [
    (0, 15, 15), (0, None, 30), (0, float("nan"), 30), (0, 0.0, 30), (0, 60, 60), (10, 60, 10),
])
def test_buffer_is_scaled_by_the_frame_rate(frame_rate, fps, buffer):
    assert Tracker(track_config(frame_rate=frame_rate), fps).buffer == buffer


def test_wrapper_tracks_with_its_scaled_buffer():
    tracker = Tracker(track_config(buffer=15), fps=10)  # 5 frames at 10 fps
    results = run(tracker, absent(25, range(11, 20)))
    assert all(isinstance(r, TrackResult) for r in results)
    assert results[0].ids.tolist() == [1] and results[0].tracks[0, 0] == 1
    assert [f for f, r in enumerate(results, 1) if r.ended.tolist() == [1]] == [17]
    tracker.reset()
    assert len(tracker) == 0 and tracker.update(frame(det(5, 5))).ids.tolist() == [1]
