"""What the preview and `--save` draw (edge_yolox.draw), read back from the pixels: track ids on the boxes, zones
(translucent fill in the zone's colour, outline, name and occupancy), lines (an arrow on the "in" side, totals),
bounded trails; and the video sink's file decoded with OpenCV."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from edge_yolox import draw, zones
from edge_yolox.sinks import SinkContext
from edge_yolox.sinks import video as video_sink
from edge_yolox.zones import Line, Zone

W, H = 640, 480
DOOR = Zone("door", ((0.1, 0.3), (0.45, 0.3), (0.45, 0.9), (0.1, 0.9)), ("person",), 3)
GATE = Line("gate", (0.7, 0.1), (0.7, 0.9), (), "left")


def det(track_id, box=(300.0, 200.0, 380.0, 400.0)) -> dict:
    return {"label": "person", "class_id": 0, "score": 0.83, "box": list(box), "track_id": track_id}


def black() -> np.ndarray:
    return np.zeros((H, W, 3), np.uint8)


def expected_fill(index: int) -> np.ndarray:
    return np.array(draw.region_color(index), np.float64) * draw.ZONE_ALPHA  # over black


def near(pixel: np.ndarray, colour: tuple[int, int, int], tolerance: int = 40) -> bool:
    """An antialiased line's pixel: its colour within `tolerance` per channel."""
    return bool(np.abs(pixel.astype(int) - colour).max() <= tolerance)


def inner(zone: Zone, margin: float = 0.2) -> tuple[slice, slice]:
    """A window well inside a rectangular zone, below its name box."""
    (x1, y1), (x2, y2) = zone.pixels(W, H).min(axis=0), zone.pixels(W, H).max(axis=0)
    return (slice(int(y1 + (y2 - y1) * 0.5), int(y2 - (y2 - y1) * margin)),
            slice(int(x1 + (x2 - x1) * margin), int(x2 - (x2 - x1) * margin)))


# ---- trails


def test_trails_keep_recent_anchor_points_and_forget_ended_and_unseen_tracks():
    trails = draw.Trails(length=4, forget_after=3, max_tracks=3)
    for i in range(6):  # track 1 walks right; the untracked detection leaves no trail
        trails.update({"detections": [det(1, (10.0 * i, 0.0, 10.0 * i + 20, 50.0)), det(None)]})
    assert trails.paths() == {1: [(30, 50), (40, 50), (50, 50), (60, 50)]}  # the last 4 bottom centres
    trails.update({"detections": [det(2)], "events": [{"type": "end", "track_id": 1}]})
    assert list(trails.paths()) == [2]  # ended: gone at once
    for _ in range(3):
        trails.update({"detections": []})
    assert list(trails.paths()) == [2]  # unseen for 3 records: kept
    trails.update({"detections": []})
    assert trails.paths() == {}  # for 4: forgotten
    for i in range(10):  # more tracks than max_tracks: the least recently seen go
        trails.update({"detections": [det(100 + i)]})
    assert list(trails.paths()) == [107, 108, 109]


def test_trails_follow_the_configured_anchor():
    trails = draw.Trails(anchor="center")  # track.anchor: center, as zones and lines test it
    trails.update({"detections": [det(1, (10.0, 0.0, 30.0, 50.0))]})
    assert trails.paths() == {1: [(20, 25)]}


# ---- boxes, zones, lines


def label_band(image: np.ndarray, box=(300, 200, 380, 400)) -> np.ndarray:
    """The row of text boxes just above a detection's box, from its left edge to the frame's right."""
    return image[box[1] - 12:box[1] - 2, box[0]:]


def test_track_id_is_drawn_on_the_box():
    tracked = draw.annotate(black(), {"detections": [det(7)]})
    untracked = draw.annotate(black(), {"detections": [det(None)]})
    width = [int((label_band(image).max(axis=2) > 0).any(axis=0).sum()) for image in (tracked, untracked)]
    assert width[0] > width[1] + 15  # "#7 " more text on the label
    assert tuple(int(v) for v in tracked[300, 300]) == draw.color(7)  # the box's left edge, in the track's colour
    assert tuple(int(v) for v in untracked[300, 300]) == draw.color(0)  # untracked: the class colour


def test_zone_is_filled_outlined_and_labelled_with_its_occupancy():
    record = {"detections": [], "zones": {"door": {"person": 2}}}
    image = draw.annotate(black(), record, zones=(DOOR,))
    window = image[inner(DOOR)].reshape(-1, 3).astype(np.float64)
    assert np.abs(window - expected_fill(0)).max() <= 1  # the translucent fill, everywhere inside
    assert image[20:100, 400:].max() == 0 and image[460:, :].max() == 0  # nothing outside
    x1, y1 = (int(v) for v in DOOR.pixels(W, H)[0])
    assert near(image[int((y1 + H * 0.9) / 2), x1], draw.region_color(0))  # the outline (antialiased)
    name_box = image[y1:y1 + 40, x1:x1 + 80]
    assert (name_box == draw.region_color(0)).all(axis=2).mean() > 0.4  # the name box, solid colour with text
    other = draw.annotate(black(), {"detections": [], "zones": {"door": {"person": 3}}}, zones=(DOOR,))
    changed = np.argwhere((other != image).any(axis=2))
    assert len(changed) and changed[:, 0].min() >= y1 and changed[:, 0].max() < y1 + 40  # the count, in that box


def test_line_arrow_points_to_the_in_side_with_the_totals():
    for line in (GATE, Line("gate", GATE.a, GATE.b, (), "right")):
        record = {"detections": [], "lines": {"gate": {"person": {"in": 3, "out": 1}}}}
        image = draw.annotate(black(), record, lines=(line,))
        a, b = line.pixels(W, H)
        middle = (a + b) / 2
        colour = draw.region_color(0)
        arrow = np.argwhere((image == colour).all(axis=2))
        near = arrow[np.abs(arrow[:, 0] - middle[1]) < 20]  # the arrow's rows (the name box is at a)
        sides = {zones.side(a, b, (x, y)) for y, x in near if abs(x - middle[0]) > 8}
        assert sides == {line.in_side}, line.direction
        plain = draw.annotate(black(), {"detections": [], "lines": {"gate": {"person": {"in": 4, "out": 1}}}},
                              lines=(line,))
        assert (plain != image).any()  # the totals are drawn


def test_trails_are_drawn_in_the_track_colour():
    path = [(100, 100), (200, 100), (200, 200)]
    image = draw.annotate(black(), {"detections": []}, trails={5: path})
    assert near(image[100, 150], draw.color(5)) and image[150, 150].max() == 0


# ---- the video sink


@pytest.mark.parametrize("suffix", [".mp4", ".avi"])
def test_saved_video_shows_the_zone_and_the_line(tmp_path, suffix):
    ctx = SinkContext(device="t", board="x86", model="m", source="s", fps=10.0, tracking=True, zones=(DOOR,),
                      lines=(GATE,))
    sink = video_sink.from_config({"path": str(tmp_path / f"out{suffix}")}, ctx)
    for i in range(10):
        sink.write({"frame": i, "fps": 10.0, "detections": [det(3, (500.0 + i, 50.0, 560.0 + i, 150.0))],
                    "zones": {"door": {"person": 0}}, "lines": {"gate": {"person": {"in": i, "out": 0}}}}, black())
    sink.close()
    capture = cv2.VideoCapture(str(tmp_path / f"out{suffix}"))
    frames = []
    while (ok := capture.read())[0]:
        frames.append(ok[1])
    capture.release()
    assert len(frames) == 10
    last = frames[-1].astype(np.float64)
    window = last[inner(DOOR)].reshape(-1, 3)
    assert np.abs(window.mean(axis=0) - expected_fill(0)).max() < 12  # lossy codecs: the mean, within a few levels
    assert last[60:130, 100:400].max() < 40  # outside every zone: black
    x = int(GATE.pixels(W, H)[0][0])
    assert last[300:360, x - 1:x + 2].mean() > 60  # the line (2 px of saturated colour, smeared by the codec)
