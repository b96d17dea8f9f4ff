"""Annotated frames for the video sink (`--save`) and the live preview (`--serve`): boxes with labels and track
ids, zones (outline, translucent fill, name and occupancy), lines (segment, an arrow towards the "in" side, the
in/out totals), track trails and the fps. One function, `annotate`, draws all of it for both."""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Mapping, Sequence
from typing import Any, Optional

import cv2
import numpy as np

from edge_yolox.zones import anchor_points

# Zones and lines, by their place in the config: saturated colours that boxes (golden-ratio hues at full value)
# rarely take. BGR.
REGION_COLORS = ((255, 0, 255), (255, 255, 0), (0, 165, 255), (0, 255, 0), (255, 128, 0), (128, 0, 255))
ZONE_ALPHA = 0.25  # opacity of a zone's fill
ARROW_PX = 40  # length of a line's "in" arrow at a 900-pixel frame


def color(key: int) -> tuple[int, int, int]:
    """A stable, well-separated colour per class id or track id (golden-ratio hue steps)."""
    hue = int((key * 0.618033988749895 % 1.0) * 179)
    bgr = cv2.cvtColor(np.uint8([[[hue, 220, 255]]]), cv2.COLOR_HSV2BGR)[0, 0]
    return int(bgr[0]), int(bgr[1]), int(bgr[2])


def region_color(index: int) -> tuple[int, int, int]:
    return REGION_COLORS[index % len(REGION_COLORS)]


class Trails:
    """The recent anchor points of each track, from the records: at most `length` points per track and
    `max_tracks` tracks (the least recently seen go first); a track is forgotten when its `end` event comes or
    after `forget_after` records without it. Not thread-safe: the caller serialises update and paths."""

    def __init__(self, length: int = 32, forget_after: int = 30, max_tracks: int = 256, anchor: str = "bottom"):
        self.length, self.forget_after, self.max_tracks = length, forget_after, max_tracks
        self.anchor = anchor  # track.anchor: the trail follows the point zones and lines test
        self.tracks: OrderedDict[int, tuple[int, deque]] = OrderedDict()  # id -> (last update seen, points)
        self.updates = 0

    def update(self, record: Mapping[str, Any]) -> None:
        self.updates += 1
        for det in record.get("detections", ()):
            track_id = det.get("track_id")
            if track_id is None:
                continue
            _, points = self.tracks.pop(track_id, (0, None))
            points = points if points is not None else deque(maxlen=self.length)
            x, y = anchor_points(det["box"], self.anchor)[0]
            points.append((int(round(x)), int(round(y))))
            self.tracks[track_id] = (self.updates, points)  # to the end: the order is last seen
        for event in record.get("events", ()):
            if event.get("type") == "end":
                self.tracks.pop(event.get("track_id"), None)
        while self.tracks and (len(self.tracks) > self.max_tracks or
                               self.updates - next(iter(self.tracks.values()))[0] > self.forget_after):
            self.tracks.popitem(last=False)

    def paths(self) -> dict[int, list[tuple[int, int]]]:
        """A copy of every trail (to draw on another thread)."""
        return {track_id: list(points) for track_id, (_, points) in self.tracks.items()}


def annotate(frame: np.ndarray, record: Mapping[str, Any], zones: Sequence = (), lines: Sequence = (),
             trails: Optional[Mapping[int, Sequence[tuple[int, int]]]] = None) -> np.ndarray:
    """A copy of `frame` with the record drawn on it: `zones` and `lines` (edge_yolox.zones objects) with the
    record's counts, `trails` (Trails.paths()), each detection boxed and labelled (`#7 person 0.83` when it
    belongs to a track), and the record's fps."""
    out = frame.copy()
    height, width = out.shape[:2]
    scale = max(0.4, min(height, width) / 900)
    thick = max(1, round(scale * 2))
    if zones:
        _zones(out, zones, record.get("zones", {}), scale, thick)
    for k, line in enumerate(lines):
        _line(out, line, region_color(len(zones) + k), record.get("lines", {}).get(line.name, {}), scale, thick)
    for track_id, points in (trails or {}).items():
        if len(points) > 1:
            cv2.polylines(out, [np.int32(points)], False, color(track_id), thick, cv2.LINE_AA)
    for det in record.get("detections", ()):
        x1, y1, x2, y2 = (int(round(v)) for v in det["box"])
        track_id = det.get("track_id")
        c = color(int(det["class_id"]) if track_id is None else track_id)
        cv2.rectangle(out, (x1, y1), (x2, y2), c, thick)
        text = f"{det['label']} {det['score']:.2f}" if track_id is None else \
            f"#{track_id} {det['label']} {det['score']:.2f}"
        _text(out, [text], (x1, y1), c, scale, thick, above=True)
    if record.get("fps") is not None:
        cv2.putText(out, f"{record['fps']:.1f} fps", (8, int(30 * scale) + 4), cv2.FONT_HERSHEY_SIMPLEX, scale,
                    (255, 255, 255), thick, cv2.LINE_AA)
    return out


def _zones(out: np.ndarray, zones: Sequence, counts: Mapping[str, Mapping[str, int]], scale: float,
           thick: int) -> None:
    height, width = out.shape[:2]
    polygons = [np.int32(np.round(zone.pixels(width, height))) for zone in zones]
    fill = out.copy()
    for k, points in enumerate(polygons):
        cv2.fillPoly(fill, [points], region_color(k))
    cv2.addWeighted(fill, ZONE_ALPHA, out, 1 - ZONE_ALPHA, 0, dst=out)
    for k, (zone, points) in enumerate(zip(zones, polygons)):
        cv2.polylines(out, [points], True, region_color(k), thick, cv2.LINE_AA)
        rows = [zone.name] + [f"{label} {n}" for label, n in counts.get(zone.name, {}).items()]
        top = points[np.argmin(points[:, 1])]  # the highest corner
        _text(out, rows, (int(top[0]), int(top[1])), region_color(k), scale, thick)


def _line(out: np.ndarray, line: Any, c: tuple[int, int, int], totals: Mapping[str, Mapping[str, int]],
          scale: float, thick: int) -> None:
    height, width = out.shape[:2]
    a, b = np.asarray(line.pixels(width, height), np.float64)
    cv2.line(out, _pt(a), _pt(b), c, thick + 1, cv2.LINE_AA)
    direction = b - a
    # "left" of a->b as the image shows it (y grows downwards): (dy, -dx); "right" the opposite.
    normal = np.array([direction[1], -direction[0]]) * (1 if line.direction == "left" else -1)
    normal /= max(float(np.hypot(*normal)), 1e-9)
    middle = (a + b) / 2
    cv2.arrowedLine(out, _pt(middle), _pt(middle + normal * ARROW_PX * max(scale, 0.5)), c, thick + 1,
                    cv2.LINE_AA, tipLength=0.35)
    rows = [line.name] + [f"{label} in {n['in']} out {n['out']}" for label, n in totals.items()]
    _text(out, rows, _pt(a), c, scale, thick)  # at a's end, clear of the arrow


def _pt(p: np.ndarray) -> tuple[int, int]:
    return int(round(p[0])), int(round(p[1]))


def _text(out: np.ndarray, rows: list[str], origin: tuple[int, int], c: tuple[int, int, int], scale: float,
          thick: int, above: bool = False) -> None:
    """Rows of dark text on a box of colour `c` whose top-left corner is `origin` (bottom-left when `above`),
    kept inside the frame."""
    font = cv2.FONT_HERSHEY_SIMPLEX
    sizes = [cv2.getTextSize(row, font, scale, thick) for row in rows]
    ascent = max(h for (_, h), _ in sizes)
    row_h = ascent + max(base for _, base in sizes)
    box_w, box_h = max(w for (w, _), _ in sizes), row_h * len(rows)
    x = min(max(origin[0], 0), max(out.shape[1] - box_w, 0))
    y = min(max(origin[1] - box_h if above else origin[1], 0), max(out.shape[0] - box_h, 0))
    cv2.rectangle(out, (x, y), (x + box_w, y + box_h), c, -1)
    for k, row in enumerate(rows):
        cv2.putText(out, row, (x, y + k * row_h + ascent), font, scale, (0, 0, 0), thick, cv2.LINE_AA)
