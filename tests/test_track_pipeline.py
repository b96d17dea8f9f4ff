"""`edge-yolox run --track --zones` end to end on the real video and model: track ids in the records, events that
agree with the counts, line totals that continue after a restart (given the second time by flags, tracking
implied), classes checked against the model, and `service install` rendering the zones into the config."""

from __future__ import annotations

import json
from collections import Counter

import pytest
import yaml
from runtime_helpers import cli, onnx_model, records, video

from edge_yolox.classes import COCO_NAMES
from edge_yolox.errors import ConfigError
from edge_yolox.service import render

FRAMES = 240  # the first person walks in around frame 62 and out around 200; the second comes in at 230
ZONES = {"zones": {"room": {"polygon": [[0.3, 0.3], [0.9, 0.3], [0.9, 1.0], [0.3, 1.0]], "classes": ["person"]}},
         "lines": {"mid": {"points": [[0.5, 0.0], [0.5, 1.0]]}}}
FLAGS = ["--zone", "room=0.3,0.3,0.9,0.3,0.9,1.0,0.3,1.0", "--line", "mid=0.5,0,0.5,1"]  # the same, but all classes


def run(*extra) -> list[dict]:
    result = cli("-q", "run", "--board", "x86", "--threads", "2", "--model", onnx_model(), "--source", video(),
                 "--limit", FRAMES, "--conf", "0.25", *extra, timeout=600)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return records(result.stdout)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Two runs sharing one state directory, as a service restarted."""
    folder = tmp_path_factory.mktemp("track")
    zones = folder / "zones.yaml"
    zones.write_text(yaml.safe_dump(ZONES))
    state = folder / "state"
    first = run("--track", "--zones", zones, "--state-dir", state)
    saved = json.loads((state / "lines.json").read_text())
    second = run(*FLAGS, "--state-dir", state)
    return first, saved, second


def test_records_carry_track_ids_events_and_counts(runs):
    recs = runs[0]
    assert len(recs) == FRAMES
    assert all(set(r) >= {"events", "zones", "lines"} for r in recs)
    dets = [d for r in recs for d in r["detections"]]
    assert all("track_id" in d for d in dets)
    tracked = [d for d in dets if d["track_id"] is not None]
    assert len(tracked) >= 100 and {d["label"] for d in tracked} >= {"person"}
    assert all(d["track_id"] is not None for d in dets if d["score"] < 0.25)  # low scores listed only when tracked
    new = {}
    for r in recs:
        new.update((e["track_id"], r["frame"]) for e in r["events"] if e["type"] == "new")
        for d in r["detections"]:  # a track's id is announced by a `new` event on or before its first frame
            assert d["track_id"] is None or new.get(d["track_id"], r["frame"] + 1) <= r["frame"]
    for r in recs:
        for e in r["events"]:
            assert e["ts"] == r["ts"] and e["frame"] == r["frame"]
            assert set(e) >= {"type", "track_id", "label", "class_id", "score", "box"}


def test_counts_agree_with_the_events(runs):
    occupancy, totals = Counter(), Counter()
    for r in runs[0]:
        for e in r["events"]:
            if e["type"] in ("enter", "leave"):
                occupancy[(e["zone"], e["label"])] += 1 if e["type"] == "enter" else -1
            if e["type"] == "cross":
                totals[(e["line"], e["label"], e["direction"])] += 1
        assert r["zones"] == {"room": {"person": occupancy[("room", "person")]}}
        assert {(line, label, d): n for line, labels in r["lines"].items() for label, counts in labels.items()
                for d, n in counts.items() if n} == +totals


def test_the_first_person_walks_in_crosses_and_leaves(runs):
    """The person comes in from the left, into the room zone, across the middle line (rightwards: "in" for a
    line pointing down with direction left) and out of the frame on the right; then the track ends."""
    person = [e for r in runs[0] for e in r["events"] if e["track_id"] == 1 and e["type"] != "update"]
    assert [(e["type"], e.get("zone") or e.get("line"), e.get("direction")) for e in person] == [
        ("new", None, None), ("enter", "room", None), ("cross", "mid", "in"), ("leave", "room", None),
        ("end", None, None)]
    assert all(e["label"] == "person" for e in person)
    assert person[-1]["duration_s"] > 0 and person[3]["duration_s"] > 0
    assert any(e["type"] == "new" and e["track_id"] == 2 for r in runs[0] for e in r["events"])


def test_line_totals_continue_after_a_restart(runs):
    first, saved, second = runs
    assert saved == {"version": 1, "lines": first[-1]["lines"]}
    assert first[-1]["lines"]["mid"]["person"]["in"] >= 2
    assert second[0]["lines"] == first[-1]["lines"]  # loaded at start
    doubled = {label: {d: 2 * n for d, n in counts.items()} for label, counts in first[-1]["lines"]["mid"].items()}
    assert second[-1]["lines"]["mid"] == doubled  # the same video again: every total twice
    assert all("track_id" in d for r in second for d in r["detections"])  # zones alone turned tracking on


def test_without_tracking_records_are_unchanged():
    result = cli("-q", "run", "--board", "x86", "--model", onnx_model(), "--source", video(), "--limit", "3")
    assert result.returncode == 0, result.stderr
    for r in records(result.stdout):
        assert not {"events", "zones", "lines"} & set(r)
        assert all("track_id" not in d for d in r["detections"])


def test_zone_classes_are_checked_against_the_model(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text("zones:\n  door:\n    polygon: [[0, 0], [1, 0], [1, 1]]\n    classes: [person, unicorn]\n")
    result = cli("-q", "run", "--board", "x86", "--model", onnx_model(), "--source", "synthetic", "--limit", "1",
                 "--config", config, "--state-dir", tmp_path)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines() == [f"edge-yolox: error: {config}: zones.door.classes: unknown class "
                                                  f"'unicorn'; this model has: {', '.join(COCO_NAMES)}"]


def test_service_install_renders_tracking_and_zones(tmp_path):
    zones = tmp_path / "zones.yaml"
    zones.write_text(yaml.safe_dump(ZONES))
    base = ["--", "--source", "synthetic", "--model", str(onnx_model()), "--zones", str(zones)]
    rendered = render("cam", "edge-yolox", [*base, "--track", "--line", "exit=0,0.9,1,0.9", "--state-dir", "/srv/s"])
    config = yaml.safe_load(rendered.config)
    assert config["track"] == {"enabled": True}
    assert config["zones"] == ZONES["zones"]  # the file's content: the service does not depend on it later
    assert config["lines"] == {**ZONES["lines"], "exit": {"points": [[0.0, 0.9], [1.0, 0.9]]}}
    assert any("runtime.state_dir /srv/s will be read-only" in note for note in rendered.notes)
    assert not any("state_dir" in note for note in render("cam", "edge-yolox", base).notes)
    zones.write_text("zones:\n  d:\n    polygon: [[0, 0], [1, 0]]\n")
    with pytest.raises(ConfigError, match=rf"^{zones}: zones\.d\.polygon: "):  # the file, as `run` says it
        render("cam", "edge-yolox", base)
