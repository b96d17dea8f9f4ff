"""From tracks to what happened: `new`/`update`/`end` events per track, `enter`/`leave` per zone, `cross` per line,
zone occupancy and line totals; and `Tracking`, the one call the pipeline makes per frame when tracking is on
(detections -> tracker -> events -> the record's fields).

Every event is a flat dict: `type`, `track_id`, `label`, `class_id`, `score`, `box` (the track's Kalman box),
`ts`, `frame`, plus `zone` (enter, leave), `line` and `direction` "in"/"out" (cross), `zones` the track is in
(new, update) and `duration_s` (end: first to last sighting; leave: enter to leave). A track's point is its box's
bottom centre (`track.anchor: bottom`, the feet on the floor) or centre. Its class is the one with the highest
summed score over its sightings: a class-agnostic tracker follows an object whose class flickers (person,
umbrella) and one bad frame should not make it leave a zone of people. A track enters a zone after
`min_frames` consecutive frames inside it (of a class the zone takes) and leaves after as many outside, or when
the track ends; while the tracker has lost it, nothing changes. Crossings follow edge_yolox.zones.

Line totals survive restarts in `<state_dir>/lines.json`, keyed by line name (a renamed or removed line's
totals are dropped, with a log line): written whole (temporary file, fsync, rename) at most once a second while
they change, and on close; at most a second of crossings is lost to a power cut. A file that is not what we
write is kept aside as `lines.json.corrupt-<time>` with a warning, and the totals start at zero.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from edge_yolox.classes import class_index
from edge_yolox.errors import ConfigError
from edge_yolox.files import load_json
from edge_yolox.schema import check
from edge_yolox.tracker import Tracker
from edge_yolox.zones import Line, Zone, anchor_points, crossing, inside, side

if TYPE_CHECKING:
    from edge_yolox.config import Config, TrackConfig

log = logging.getLogger(__name__)
STATE_FILE = "lines.json"
STATE_VERSION = 1
PERSIST_INTERVAL_S = 1.0
DIRECTIONS = ("in", "out")
Totals = dict[str, dict[str, dict[str, int]]]  # line -> label -> {"in": n, "out": n}


@dataclass
class _Track:
    first_ts: float
    last_update: float  # ts of its `new` or latest `update` event
    last_seen: float = 0.0
    fields: dict = field(default_factory=dict)  # label, class_id, score, box as the events carry them
    zones: dict[str, tuple[float, str]] = field(default_factory=dict)  # zone it is in -> (entered ts, label)
    streaks: dict[str, int] = field(default_factory=dict)  # zone -> consecutive frames against its state
    sides: dict[str, tuple[int, tuple[float, float]]] = field(default_factory=dict)  # line -> last side, point
    votes: dict[int, float] = field(default_factory=dict)  # class id -> summed score of its sightings


class Events:
    """The events engine of one stream. `update` once per frame with the tracker's `tracks` (float [M, 7]: id,
    x1, y1, x2, y2, score, class_id, frame pixels) and `ended` ids; returns the frame's events and the counts
    ({"zones": ...} when zones are configured, {"lines": ...} when lines are)."""

    def __init__(self, zones: Sequence[Zone], lines: Sequence[Line], config: TrackConfig, class_names: Sequence[str],
                 state_dir: Optional[Path] = None, clock: Callable[[], float] = time.monotonic):
        self.zones, self.lines, self.names = tuple(zones), tuple(lines), list(class_names)
        self.anchor = config.anchor
        self.interval = config.update_interval_s
        self.tracks: dict[int, _Track] = {}
        self.seen = {z.name: dict.fromkeys(z.classes, 0) for z in self.zones}  # labels the counts list, ordered
        self.geometry: tuple[tuple[int, int], list[np.ndarray], list[np.ndarray]] | None = None
        self.clock, self.written, self.dirty, self.failing = clock, clock(), False, False
        self.now: dict[str, Any] = {}  # this frame's ts and frame, which every event carries
        self.path = Path(state_dir) / STATE_FILE if state_dir is not None and self.lines else None
        loaded = self._load() if self.path else {}
        self.totals: Totals = {ln.name: {label: {"in": 0, "out": 0} for label in ln.classes} for ln in self.lines}
        for name, labels in loaded.items():
            if name in self.totals:
                self.totals[name].update(labels)
        dropped = sorted(set(loaded) - set(self.totals))
        if dropped:
            log.info("%s: dropping the totals of %s: no longer configured", self.path, ", ".join(dropped))
            self.dirty = True

    # ---- per frame

    def update(self, ts: float, frame: int, size: Sequence[int], tracks: np.ndarray,
               ended: np.ndarray) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        polygons, segments = self._geometry(int(size[0]), int(size[1]))
        tracks = np.array(tracks, np.float64).reshape(-1, 7)
        # The Kalman box of an object leaving the frame overshoots its edge; clipped like detections, its bottom
        # anchor stays on a line ending at the border instead of passing below its end point.
        tracks[:, [1, 3]] = tracks[:, [1, 3]].clip(0, int(size[1]))
        tracks[:, [2, 4]] = tracks[:, [2, 4]].clip(0, int(size[0]))
        boxes = tracks[:, 1:5]
        anchors = anchor_points(boxes, self.anchor)
        within = [inside(polygon, anchors) for polygon in polygons]
        self.now = {"ts": round(ts, 3), "frame": frame}
        events: list[dict[str, Any]] = []
        for k, row in enumerate(tracks):
            track_id = int(row[0])
            state = self.tracks.get(track_id)
            new = state is None
            if state is None:
                state = self.tracks[track_id] = _Track(first_ts=ts, last_update=ts)
            state.votes[int(row[6])] = state.votes.get(int(row[6]), 0.0) + float(row[5])
            state.last_seen, state.fields = ts, self._fields(track_id, row, max(state.votes, key=state.votes.get))
            changes = self._zones(state, [bool(w[k]) for w in within], ts) + \
                self._cross(state, segments, (float(anchors[k, 0]), float(anchors[k, 1])))
            if new:  # first, with the zones it entered on this frame (min_frames 1)
                events.append(self._event("new", state, zones=list(state.zones)))
            events.extend(changes)
            if not new and self.interval and ts - state.last_update >= self.interval:
                state.last_update = ts
                events.append(self._event("update", state, zones=list(state.zones)))
        for track_id in np.asarray(ended).reshape(-1).tolist():
            state = self.tracks.pop(int(track_id), None)
            if state is not None:
                events.extend(self._event("leave", state, zone=zone, duration_s=round(state.last_seen - since, 3))
                              for zone, (since, _) in state.zones.items())
                events.append(self._event("end", state, duration_s=round(state.last_seen - state.first_ts, 3)))
        self._persist(force=False)
        return events, self.counts()

    def _event(self, kind: str, state: _Track, **extra: Any) -> dict[str, Any]:
        return {"type": kind, **state.fields, **self.now, **extra}

    def _fields(self, track_id: int, row: np.ndarray, class_id: int) -> dict[str, Any]:
        label = self.names[class_id] if 0 <= class_id < len(self.names) else str(class_id)
        return {"track_id": track_id, "label": label, "class_id": class_id, "score": round(float(row[5]), 4),
                "box": [round(float(v), 1) for v in row[1:5]]}

    def _zones(self, state: _Track, within: list[bool], ts: float) -> list[dict[str, Any]]:
        """Enter after min_frames consecutive frames inside, leave after as many outside."""
        out = []
        label = state.fields["label"]
        for zone, raw in zip(self.zones, within):
            now = raw and zone.accepts(label)
            if now == (zone.name in state.zones):
                state.streaks.pop(zone.name, None)
                continue
            state.streaks[zone.name] = state.streaks.get(zone.name, 0) + 1
            if state.streaks[zone.name] < zone.min_frames:
                continue
            del state.streaks[zone.name]
            if now:
                state.zones[zone.name] = (ts, label)
                self.seen[zone.name].setdefault(label, 0)
                out.append(self._event("enter", state, zone=zone.name))
            else:
                since, _ = state.zones.pop(zone.name)
                out.append(self._event("leave", state, zone=zone.name, duration_s=round(ts - since, 3)))
        return out

    def _cross(self, state: _Track, segments: list[np.ndarray], point: tuple[float, float]) -> list[dict[str, Any]]:
        out = []
        label = state.fields["label"]
        for line, (a, b) in zip(self.lines, segments):
            now = side(a, b, point)
            if now == 0:
                continue  # on the line: neither side yet
            before = state.sides.get(line.name)
            state.sides[line.name] = (now, point)
            if before is None or not line.accepts(label):
                continue
            moved = crossing(a, b, before[1], point)
            if moved:
                direction = "in" if moved == line.in_side else "out"
                counts = self.totals[line.name].setdefault(label, {"in": 0, "out": 0})
                counts[direction] += 1
                self.dirty = True
                out.append(self._event("cross", state, line=line.name, direction=direction))
        return out

    def _geometry(self, height: int, width: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
        """The zones and lines in this frame size's pixels; a new size (a stream reopened differently) also forgets
        the sides of the lines the tracks were on, which were in the old pixels."""
        if self.geometry is None or self.geometry[0] != (height, width):
            self.geometry = ((height, width), [z.pixels(width, height) for z in self.zones],
                             [ln.pixels(width, height) for ln in self.lines])
            for state in self.tracks.values():
                state.sides.clear()
        return self.geometry[1], self.geometry[2]

    def counts(self) -> dict[str, Any]:
        """Fresh dicts (a sink may keep the record): occupancy by zone and label, line totals by line and label."""
        out: dict[str, Any] = {}
        if self.zones:
            occupancy = {z.name: dict.fromkeys(self.seen[z.name], 0) for z in self.zones}
            for state in self.tracks.values():
                for zone, (_, label) in state.zones.items():
                    occupancy[zone][label] += 1
            out["zones"] = occupancy
        if self.lines:
            out["lines"] = {name: {label: dict(n) for label, n in labels.items()}
                            for name, labels in self.totals.items()}
        return out

    # ---- line totals across restarts

    def _load(self) -> Totals:
        assert self.path is not None
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(f"runtime.state_dir: cannot create {self.path.parent} ({exc.strerror or exc})") from None
        if not self.path.exists() and not self.path.is_symlink():
            return {}
        try:
            return read_totals(self.path)
        except ConfigError as exc:
            aside = self.path.with_name(f"{STATE_FILE}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            try:
                os.replace(self.path, aside)
            except OSError as err:
                raise ConfigError(f"{exc}; and it cannot be moved aside ({err.strerror or err}): move or remove it "
                                  f"to start the line totals at zero") from None
            log.warning("%s; kept aside as %s: the line totals start at zero", exc, aside.name)
            return {}

    def _persist(self, force: bool) -> None:
        if self.path is None or not self.dirty or (not force and self.clock() - self.written < PERSIST_INTERVAL_S):
            return
        self.written = self.clock()
        try:
            write_totals(self.path, self.totals)
        except OSError as exc:  # kept in memory and tried again in a second; said once, and when it works again
            if not self.failing:
                log.warning("%s: cannot save the line totals (%s); retrying", self.path, exc.strerror or exc)
            self.failing = True
            return
        if self.failing:
            log.warning("%s: line totals saved again", self.path)
        self.dirty = self.failing = False

    def close(self) -> None:
        """Save the line totals if they changed since the last write."""
        self._persist(force=True)


def read_totals(path: Path) -> Totals:
    """The totals of a lines.json, checked (bounded read, plain JSON, the shape we write); ConfigError names the
    file and what is wrong."""
    data = load_json(path, "line totals")
    if not isinstance(data, dict) or set(data) != {"version", "lines"} or data["version"] != STATE_VERSION:
        raise ConfigError(f"{path}: not a version {STATE_VERSION} line totals file ({{\"version\", \"lines\"}})")
    totals = check(data["lines"], Totals, {}, "lines", lambda _: str(path))
    for line, labels in totals.items():
        for label, counts in labels.items():
            if set(counts) != set(DIRECTIONS) or min(counts.values()) < 0:
                raise ConfigError(f"{path}: lines.{line}.{label}: invalid value {counts!r}"[:200] +
                                  "; allowed: {\"in\": n, \"out\": n} with n >= 0")
    return totals


def write_totals(path: Path, totals: Totals) -> None:
    """Replace `path` whole: a crash leaves the old file or the new one, never a part."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump({"version": STATE_VERSION, "lines": totals}, f, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself
    finally:
        os.close(directory)


def regions(config: Config, class_names: Sequence[str]) -> tuple[tuple[Zone, ...], tuple[Line, ...]]:
    """The config's zones and lines, their classes checked against the model's names (an alias becomes the
    model's spelling, a class id its name). load_config checked the geometry and the names."""
    def labels(classes: list[str], key: str) -> tuple[str, ...]:
        out = []
        for c in classes:
            i = int(c) if c.isdigit() else class_index(c, class_names)
            if i is None or not 0 <= i < len(class_names):
                raise ConfigError(f"{config.origin(key)}: {key}: unknown class {c!r}; this model has: "
                                  f"{', '.join(class_names)}")
            out.append(class_names[i])
        return tuple(dict.fromkeys(out))

    zones = tuple(Zone(name, tuple(map(tuple, z.polygon)), labels(z.classes, f"zones.{name}.classes"), z.min_frames)
                  for name, z in config.zones.items())
    lines = tuple(Line(name, tuple(ln.points[0]), tuple(ln.points[1]), labels(ln.classes, f"lines.{name}.classes"),
                       ln.direction) for name, ln in config.lines.items())
    return zones, lines


class Tracking:
    """What the pipeline runs per frame when `track.enabled`: the tracker on the detections (the detector runs at
    min(detect.conf, track.low) so ByteTrack sees its low-score boxes), then the events engine."""

    def __init__(self, config: Config, class_names: Sequence[str], fps: Optional[float]):
        from edge_yolox.config import state_dir

        self.zones, self.lines = regions(config, class_names)
        self.conf = config.detect.conf
        self.tracker = Tracker(config.track, fps)
        self.events = Events(self.zones, self.lines, config.track, class_names,
                             state_dir(config.runtime) if self.lines else None)

    def update(self, dets: np.ndarray, ts: float, frame: int,
               size: Sequence[int]) -> tuple[np.ndarray, np.ndarray, dict[str, Any]]:
        """The detections a record lists (score >= detect.conf, or part of a track), their track ids (0: none), and
        the record's `events` plus `zones`/`lines` counts."""
        ids, tracks, ended = self.tracker.update(dets)
        keep = (dets[:, 4] >= self.conf) | (ids > 0)
        events, counts = self.events.update(ts, frame, size, tracks, ended)
        return dets[keep], ids[keep], {"events": events, **counts}

    def close(self) -> None:
        self.events.close()
