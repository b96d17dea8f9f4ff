"""The events engine on hand-made track sequences: entering takes min_frames, flicker does not enter, leaving
and ending, class filters, crossings in and out by direction (touching is not crossing), throttled updates, the
occupancy and totals the records carry, and line totals across a restart (a corrupt state file kept aside)."""

from __future__ import annotations

import json
import logging

import numpy as np
import pytest
from hostile import LINE_TOTALS

from edge_yolox.config import TrackConfig
from edge_yolox.errors import ConfigError
from edge_yolox.events import Events, read_totals
from edge_yolox.zones import Line, Zone

NAMES = ["person", "bicycle", "car"]
SIZE = (100, 200)  # height, width
DOOR = Zone("door", ((50, 50), (100, 50), (100, 100), (50, 100)), ("person",), 3)  # pixels
GATE = Line("gate", (150, 0), (150, 100), (), "right")  # vertical, pointing down: right of it is the screen's left
NONE = np.zeros(0, np.int32)


def track(track_id: int, x: float, y: float, cls: int = 0, score: float = 0.9) -> list[float]:
    """A 10x20 box whose bottom centre is (x, y)."""
    return [track_id, x - 5, y - 20, x + 5, y, score, cls]


class Run:
    """Feeds an Events engine one frame at a time (ts = frame / 10)."""

    def __init__(self, zones=(DOOR,), lines=(GATE,), state_dir=None, clock=None, **track_config):
        config = TrackConfig(update_interval_s=track_config.pop("update_interval_s", 0), **track_config)
        self.events = Events(zones, lines, config, NAMES, state_dir, **({"clock": clock} if clock else {}))
        self.frame = 0
        self.counts: dict = {}

    def step(self, *tracks: list[float], ended=()) -> list[dict]:
        rows = np.array(tracks, np.float64).reshape(-1, 7)
        events, self.counts = self.events.update(self.frame / 10, self.frame, SIZE, rows,
                                                 np.array(ended, np.int32))
        self.frame += 1
        return events


def kinds(events: list[dict]) -> list[tuple]:
    return [(e["type"], e["track_id"], e.get("zone") or e.get("line") or "", e.get("direction", "")) for e in events]


def test_enter_takes_min_frames_and_leave_as_many():
    run = Run()
    assert kinds(run.step(track(1, 20, 60))) == [("new", 1, "", "")]
    assert run.counts == {"zones": {"door": {"person": 0}}, "lines": {"gate": {}}}
    assert run.step(track(1, 60, 60)) == [] and run.step(track(1, 61, 60)) == []
    (enter,) = run.step(track(1, 62, 60))
    assert enter == {"type": "enter", "track_id": 1, "label": "person", "class_id": 0, "score": 0.9,
                     "box": [57.0, 40.0, 67.0, 60.0], "ts": 0.3, "frame": 3, "zone": "door"}
    assert run.counts["zones"] == {"door": {"person": 1}}
    assert run.step(track(1, 20, 60)) == [] and run.step(track(1, 20, 60)) == []
    (leave,) = run.step(track(1, 20, 60))
    assert leave["type"] == "leave" and leave["zone"] == "door" and leave["duration_s"] == pytest.approx(0.3)
    assert run.counts["zones"] == {"door": {"person": 0}}  # zero kept once listed


def test_flicker_does_not_enter():
    run = Run()
    for x in (60, 20, 60, 60, 20, 60, 20, 60, 60, 10):
        assert [e["type"] for e in run.step(track(1, x, 60))] in ([], ["new"])
    assert run.counts["zones"]["door"] == {"person": 0}


def test_end_leaves_every_zone_at_once_and_lost_tracks_change_nothing():
    run = Run(zones=(DOOR, Zone("all", ((0, 0), (1, 0), (1, 1), (0, 1)), (), 1)))
    run.step(track(7, 60, 60))
    run.step(track(7, 60, 60))
    assert kinds(run.step(track(7, 60, 60))) == [("enter", 7, "door", "")]
    assert run.counts["zones"] == {"door": {"person": 1}, "all": {"person": 1}}
    assert run.step() == [] and run.step() == []  # lost: still counted where it was
    assert run.counts["zones"] == {"door": {"person": 1}, "all": {"person": 1}}
    events = run.step(ended=[7])
    assert kinds(events) == [("leave", 7, "all", ""), ("leave", 7, "door", ""), ("end", 7, "", "")]
    assert [e["duration_s"] for e in events] == [pytest.approx(0.2), 0.0, pytest.approx(0.2)]  # to the last sighting
    assert all(e["frame"] == 5 and e["ts"] == 0.5 and e["box"] == [55.0, 40.0, 65.0, 60.0] for e in events)
    assert run.counts["zones"] == {"door": {"person": 0}, "all": {"person": 0}}
    assert run.events.tracks == {}  # nothing kept for ended tracks
    assert run.step(ended=[99]) == []  # an id it never saw


def test_new_lists_the_zones_entered_on_its_first_frame():
    run = Run(zones=(Zone("door", DOOR.points, (), 1),))
    assert kinds(run.step(track(3, 60, 60))) == [("new", 3, "", ""), ("enter", 3, "door", "")]
    assert run.step(track(4, 60, 60))[0]["zones"] == ["door"]


def test_zone_class_filter_and_the_label_vote():
    run = Run()
    for _ in range(4):
        run.step(track(1, 60, 60, cls=2), track(2, 70, 70, cls=0))
    assert run.counts["zones"]["door"] == {"person": 1}  # the car never entered a zone of people
    for _ in range(3):  # seen as a bicycle, each time with a higher score than any person sighting: 2.85 < 3.6
        assert run.step(track(2, 70, 70, cls=1, score=0.95)) == []
    assert run.counts["zones"]["door"] == {"person": 1}
    events = [e for _ in range(5) for e in run.step(track(2, 70, 70, cls=1, score=0.95))]
    # The 4th bicycle sighting turns the vote (3.8 > 3.6); three frames as a bicycle later, it leaves.
    assert kinds(events) == [("leave", 2, "door", "")] and events[0]["label"] == "bicycle"
    assert events[0]["frame"] == 9


def test_crossings_in_and_out_by_direction():
    run = Run(zones=())
    run.step(track(1, 140, 50), track(2, 160, 50))
    events = run.step(track(1, 160, 50), track(2, 140, 50))
    assert kinds(events) == [("cross", 1, "gate", "out"), ("cross", 2, "gate", "in")]
    # GATE points down and counts "in" to its right, the screen's left: track 2 went that way.
    assert run.counts == {"lines": {"gate": {"person": {"in": 1, "out": 1}}}}
    line = Line("gate", (150, 0), (150, 100), (), "left")
    run = Run(zones=(), lines=(line,))
    run.step(track(1, 140, 50))
    assert kinds(run.step(track(1, 160, 50))) == [("cross", 1, "gate", "in")]


def test_a_box_overshooting_the_frame_is_clipped_before_its_anchor_is_tested():
    """A Kalman box leaving through the bottom edge reaches past it (bottom 108 in a 100-high frame): clipped like a
    detection, its anchor crosses GATE (which ends at the border) instead of passing below the end point."""
    run = Run(zones=())
    run.step(track(1, 140, 108))
    (cross,) = run.step(track(1, 160, 108))
    assert kinds([cross]) == [("cross", 1, "gate", "out")] and cross["box"][3] == SIZE[0]


def test_touching_the_line_is_not_crossing_and_crossing_from_it_counts_once():
    run = Run(zones=())
    run.step(track(1, 140, 50))
    assert run.step(track(1, 150, 50)) == []  # onto the line
    assert run.step(track(1, 140, 50)) == []  # and back: touched, not crossed
    assert run.step(track(1, 150, 50)) == [] and run.step(track(1, 150, 60)) == []  # along it
    assert kinds(run.step(track(1, 155, 60))) == [("cross", 1, "gate", "out")]  # off it on the other side: now
    assert run.step(track(1, 160, 60)) == []
    assert run.counts["lines"]["gate"] == {"person": {"in": 0, "out": 1}}


def test_going_around_the_end_of_a_line_is_not_crossing():
    run = Run(zones=(), lines=(Line("gate", (150, 0), (150, 50)),))
    run.step(track(1, 140, 80))
    assert run.step(track(1, 160, 80)) == []  # below the segment's end
    assert kinds(run.step(track(1, 140, 10))) == [("cross", 1, "gate", "out")]  # through it, from the last side


def test_line_class_filter_and_anchor():
    cars = Line("road", (0, 50), (200, 50), ("car",))  # horizontal: the box's bottom or centre decides
    run = Run(zones=(), lines=(cars,))
    run.step(track(1, 100, 45, cls=0), track(2, 100, 45, cls=2))
    assert kinds(run.step(track(1, 100, 55, cls=0), track(2, 100, 55, cls=2))) == [("cross", 2, "road", "out")]
    assert run.counts["lines"] == {"road": {"car": {"in": 0, "out": 1}}}  # the class is listed from the start
    centre = Run(zones=(), lines=(cars,), anchor="center")
    centre.step(track(1, 100, 55, cls=2))  # centre at y 45
    assert centre.step(track(1, 100, 60, cls=2)) == []  # centre at 50: on the line
    assert kinds(centre.step(track(1, 100, 75, cls=2))) == [("cross", 1, "road", "out")]


def test_updates_are_throttled_per_track():
    run = Run(zones=(), lines=(), update_interval_s=0.45)
    updates = []
    for frame in range(13):
        tracks = [track(1, 10, 50), track(2, 30, 50)] + ([track(3, 50, 50)] if frame >= 3 else [])
        updates += [(e["frame"], e["track_id"]) for e in run.step(*tracks) if e["type"] == "update"]
    assert updates == [(5, 1), (5, 2), (8, 3), (10, 1), (10, 2)]
    assert "zones" not in run.counts and "lines" not in run.counts
    quiet = Run(update_interval_s=0)
    assert [e for _ in range(100) for e in quiet.step(track(1, 10, 50)) if e["type"] == "update"] == []


def test_normalised_geometry_follows_the_frame_size():
    run = Run(zones=(Zone("left", ((0, 0), (0.5, 0), (0.5, 1), (0, 1)), (), 1),),
              lines=(Line("mid", (0.75, 0), (0.75, 1)),))
    assert kinds(run.step(track(1, 40, 50), track(2, 140, 50))) == [("new", 1, "", ""), ("enter", 1, "left", ""),
                                                                    ("new", 2, "", "")]
    assert kinds(run.step(track(1, 40, 50), track(2, 160, 50))) == [("cross", 2, "mid", "in")]


# ---- line totals across restarts


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def cross_right(run: Run, track_id: int, cls: int = 0) -> None:
    run.step(track(track_id, 140, 50, cls))
    run.step(track(track_id, 160, 50, cls))


def test_totals_survive_a_restart(tmp_path):
    clock = Clock()
    run = Run(zones=(), state_dir=tmp_path / "state", clock=clock)
    state = tmp_path / "state" / "lines.json"
    cross_right(run, 1)
    assert not state.exists()  # at most once a second
    clock.now += 1.0
    run.step()
    assert json.loads(state.read_text()) == {"version": 1, "lines": {"gate": {"person": {"in": 0, "out": 1}}}}
    cross_right(run, 2, cls=2)
    cross_right(run, 3)
    assert read_totals(state)["gate"] == {"person": {"in": 0, "out": 1}}  # not yet: within the second
    run.events.close()
    assert read_totals(state)["gate"] == {"person": {"in": 0, "out": 2}, "car": {"in": 0, "out": 1}}
    assert sorted(p.name for p in state.parent.iterdir()) == ["lines.json"]  # no temporary file left

    again = Run(zones=(), state_dir=tmp_path / "state")
    assert again.step() == [] and again.counts["lines"] == {"gate": {"person": {"in": 0, "out": 2},
                                                                     "car": {"in": 0, "out": 1}}}
    cross_right(again, 1)  # ids start again after a restart: counted all the same
    again.events.close()
    assert read_totals(state)["gate"]["person"] == {"in": 0, "out": 3}


def test_a_removed_line_drops_only_its_totals(tmp_path, caplog):
    state = tmp_path / "lines.json"
    state.write_text(json.dumps({"version": 1, "lines": {"gate": {"person": {"in": 4, "out": 5}},
                                                         "old": {"car": {"in": 1, "out": 0}}}}))
    with caplog.at_level(logging.INFO, logger="edge_yolox.events"):
        run = Run(zones=(), state_dir=tmp_path)
    assert "dropping the totals of old: no longer configured" in caplog.text
    run.step()
    assert run.counts["lines"] == {"gate": {"person": {"in": 4, "out": 5}}}
    run.events.close()
    assert read_totals(state) == {"gate": {"person": {"in": 4, "out": 5}}}


def test_no_lines_no_state_file(tmp_path):
    run = Run(lines=(), state_dir=tmp_path / "state")
    run.step(track(1, 60, 60))
    run.events.close()
    assert not (tmp_path / "state").exists()


@pytest.mark.parametrize("name", sorted(LINE_TOTALS))
def test_a_corrupt_state_file_is_kept_aside(tmp_path, caplog, name):
    state = tmp_path / "lines.json"
    state.write_bytes(LINE_TOTALS[name])
    with caplog.at_level(logging.WARNING, logger="edge_yolox.events"):
        run = Run(zones=(), state_dir=tmp_path)
    (aside,) = tmp_path.glob("lines.json.corrupt-*")
    assert aside.read_bytes() == LINE_TOTALS[name]  # nothing lost: the user can look at it
    assert not state.exists() and str(state) in caplog.text and "start at zero" in caplog.text
    run.step()
    assert run.counts["lines"] == {"gate": {}}


def test_read_totals_names_the_key(tmp_path):
    state = tmp_path / "lines.json"
    state.write_bytes(LINE_TOTALS["negative count"])
    with pytest.raises(ConfigError, match=rf"^{state}: lines\.gate\.person: invalid value"):
        read_totals(state)


def test_unwritable_state_is_retried_and_kept_in_memory(tmp_path, caplog):
    clock = Clock()
    run = Run(zones=(), state_dir=tmp_path, clock=clock)
    (tmp_path / "lines.json.tmp").mkdir()  # the temporary file cannot be written
    clock.now += 1
    with caplog.at_level(logging.WARNING, logger="edge_yolox.events"):
        cross_right(run, 1)
        clock.now += 1
        cross_right(run, 2)
    assert caplog.text.count("cannot save the line totals") == 1
    (tmp_path / "lines.json.tmp").rmdir()
    run.events.close()
    assert read_totals(tmp_path / "lines.json")["gate"]["person"] == {"in": 0, "out": 2}
    assert "line totals saved again" in caplog.text
