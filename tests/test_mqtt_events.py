"""Tracking events and counts over MQTT, against a real mosquitto: a real `edge-yolox run --track --zones` on the
scripted gate sequence (its events exactly as its records hold them; line totals that survive a restart), one
message per event in order, retained zone occupancy and line totals (what a late subscriber sees, published only
on change), `detections: events` with no per-frame records, no event lost across a broker outage (QoS 1) or a
kill -9 (with the journal), counts lost from a full queue or by a restarted broker published again, names that
never add topic levels, and Home Assistant discovery of the zone and line sensors."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import yaml
from conftest import until
from mqtt_helpers import ROOT, Broker, Subscriber, runtime
from runtime_helpers import records as stdout_records

from edge_yolox.errors import ConfigError
from edge_yolox.runflags import demo_model
from edge_yolox.sequences import GATE_LAYOUT
from edge_yolox.sinks import SinkContext
from edge_yolox.sinks import mqtt as mqtt_sink
from edge_yolox.zones import Line, Zone

ZONES = (Zone("door", ((0.1, 0.1), (0.5, 0.1), (0.5, 0.9), (0.1, 0.9)), ("person",), 3),
         Zone("yard", ((0.5, 0.1), (0.9, 0.1), (0.9, 0.9)), (), 3))
LINES = (Line("gate", (0.6, 0.0), (0.6, 1.0), ("person", "car"), "left"),)
CTX = SinkContext(device="cam1", board="x86", model="yolox-nano", source="synthetic",
                  class_names=("person", "bicycle", "car"), tracking=True, zones=ZONES, lines=LINES)


def sink(broker: Broker, ctx: SinkContext = CTX, **kw) -> mqtt_sink.MqttSink:
    section = {"url": broker.url(), "password_file": str(broker.password_file), "reconnect_min_s": 0.05,
               "reconnect_max_s": 0.5, **kw}
    return mqtt_sink.from_config(section, ctx)


def event(kind: str, frame: int, track_id: int, label: str = "person", **extra) -> dict:
    return {"type": kind, "track_id": track_id, "label": label, "class_id": CTX.class_names.index(label),
            "score": 0.87, "box": [10.0, 20.0, 60.0, 140.0], "ts": 1732451234.0 + frame / 10, "frame": frame, **extra}


def script(frames: int = 40) -> list[dict]:
    """A tracking run's records: every 8 frames a person appears (new), enters the door zone 3 frames later,
    leaves it and crosses the gate inwards 3 frames after that, and ends; counts as the pipeline reports them."""
    records, inside, crossed = [], 0, 0
    for i in range(frames):
        track, step = i // 8 + 1, i % 8
        events = []
        if step == 0:
            events.append(event("new", i, track, zones=[]))
        elif step == 3:
            events.append(event("enter", i, track, zone="door"))
            inside += 1
        elif step == 6:
            events += [event("leave", i, track, zone="door", duration_s=0.3),
                       event("cross", i, track, line="gate", direction="in")]
            inside, crossed = inside - 1, crossed + 1
        elif step == 7:
            events.append(event("end", i, track, duration_s=0.7))
        dets = [{"label": "person", "class_id": 0, "score": 0.87, "box": [10.0, 20.0, 60.0, 140.0],
                 "track_id": track}] if step < 7 else []
        records.append({"ts": 1732451234.0 + i / 10, "frame": i, "source": "synthetic", "board": "x86",
                        "model": "yolox-nano", "size": [480, 640], "fps": 10.0, "detections": dets,
                        "events": events, "zones": {"door": {"person": inside}, "yard": {}},
                        "lines": {"gate": {"person": {"in": crossed, "out": 0}, "car": {"in": 0, "out": 0}}}})
    return records


def all_events(records: list[dict]) -> list[dict]:
    return [e for r in records for e in r["events"]]


def received_events(sub: Subscriber) -> list[dict]:
    return [json.loads(p) for p in sub.payloads("test/cam1/events")]


def changes(values: list) -> list:
    """`values` without consecutive repeats: what a publish-on-change sends."""
    return [v for k, v in enumerate(values) if k == 0 or v != values[k - 1]]


def offline(sub: Subscriber, prefix: str = "test") -> bool:
    return sub.wait_for(lambda m: (f"{prefix}/cam1/status", b"offline", False) in m)


def test_runtime_publishes_the_gate_events_and_line_totals_survive_a_restart(broker, subscriber, tmp_path):
    """`edge-yolox run --source synthetic:gate --zones gate.yaml --mqtt-detections events`, twice with one state
    directory: each run's events reach the broker exactly as its records on stdout hold them, no record is
    published, the retained counts are the last record's, and the second run's line totals go on from the first's."""
    zones = tmp_path / "gate.yaml"
    zones.write_text(yaml.safe_dump(GATE_LAYOUT))
    args = ("--source", "synthetic:gate", "--model", str(demo_model()), "--zones", str(zones), "--state-dir",
            str(tmp_path / "state"), "--mqtt-detections", "events")
    finals = []
    for run in range(2):
        start = len(subscriber.messages)
        proc = runtime(broker, *args)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
        assert subscriber.wait_for(lambda m, run=run: subscriber.payloads("test/cam1/status").count(b"offline")
                                   == run + 1, timeout=30)
        recs = stdout_records(out)
        messages = subscriber.messages[start:]
        events = [json.loads(p) for t, p, _ in messages if t == "test/cam1/events"]
        assert events == all_events(recs) and {e["type"] for e in events} >= {"new", "end", "enter", "leave", "cross"}
        assert not [t for t, _, _ in messages if t.endswith("/detections")]
        counts = {t: int(p) for t, p, _ in messages if "/zones/" in t or "/lines/" in t}  # the last of each
        last = recs[-1]
        assert counts == {**{f"test/cam1/zones/{z}/{label}": n for z, labels in last["zones"].items()
                             for label, n in labels.items()},
                          **{f"test/cam1/lines/{ln}/{label}/{d}": t[d] for ln, labels in last["lines"].items()
                             for label, t in labels.items() for d in ("in", "out")}}
        finals.append({k: v for k, v in counts.items() if "/lines/" in k})
    crossings = sum(finals[0].values())
    assert crossings >= 4  # the script has 5 crossings; the demo model and the tracker count most of them
    assert finals[1] == {k: 2 * v for k, v in finals[0].items()}  # the same run again, on top of the first


def test_events_one_per_message_in_order_and_counts_on_change(broker, subscriber):
    records = script()
    s = sink(broker)
    for r in records:
        s.write(r)
    s.close()
    assert offline(subscriber)
    assert received_events(subscriber) == all_events(records)  # each event whole, alone, in order
    assert [json.loads(p)["frame"] for p in subscriber.payloads("test/cam1/detections")] == list(range(40))
    door = [int(p) for p in subscriber.payloads("test/cam1/zones/door/person")]
    assert door == changes([r["zones"]["door"]["person"] for r in records]) == [0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
    gate_in = [int(p) for p in subscriber.payloads("test/cam1/lines/gate/person/in")]
    assert gate_in == [0, 1, 2, 3, 4, 5]
    assert [int(p) for p in subscriber.payloads("test/cam1/lines/gate/car/out")] == [0]  # once after start
    assert not subscriber.payloads("/yard/person")  # a zone with no label seen yet has no topic
    count_topics = {t for t, _, _ in subscriber.messages if "/zones/" in t or "/lines/" in t}
    assert len(count_topics) == 5


def test_retained_counts_are_what_a_late_subscriber_sees(broker, subscriber):
    records = script(36)  # ends with one person inside the door zone, 4 crossings
    s = sink(broker)
    for r in records:
        s.write(r)
    s.close()
    assert offline(subscriber)
    late = Subscriber(broker, "test/cam1/+/#", client_id="late-subscriber")
    try:
        assert late.wait_for(lambda m: len(m) >= 6, timeout=10)
        time.sleep(0.5)  # anything more would come now
        retained = {t: p for t, p, retain in late.messages if retain}
    finally:
        late.close()
    assert retained == {"test/cam1/zones/door/person": b"1", "test/cam1/lines/gate/person/in": b"4",
                        "test/cam1/lines/gate/person/out": b"0", "test/cam1/lines/gate/car/in": b"0",
                        "test/cam1/lines/gate/car/out": b"0", "test/cam1/status": b"offline"}
    assert not [t for t, _, _ in late.messages if t.endswith(("/events", "/detections"))]  # neither is retained


def test_events_mode_publishes_no_detection_records(broker, subscriber):
    records = script()
    s = sink(broker, detections="events", homeassistant=True)
    for r in records:
        s.write(r)
        s.stats({"fps": 10.0, "frames": r["frame"] + 1})
    s.close()
    assert offline(subscriber)
    assert received_events(subscriber) == all_events(records)
    assert subscriber.payloads("test/cam1/zones/door/person") and subscriber.payloads("test/cam1/stats")
    assert not subscriber.payloads("/detections")
    sensors = [t for t, _, _ in subscriber.messages if t.startswith("homeassistant/")]
    assert sensors and not [t for t in sensors if t.endswith("_count/config")]  # they would read /detections
    with pytest.raises(ConfigError, match=r"^outputs\.mqtt\.detections: events needs tracking; add --track"):
        mqtt_sink.from_config({"url": broker.url(), "detections": "events"},
                              SinkContext(device="cam1", board="x86", model="m", source="s"))


def test_broker_outage_loses_no_event_with_qos1(broker, subscriber):
    records = script(80)
    s = sink(broker)
    try:
        for r in records[:30]:
            s.write(r)
        assert subscriber.wait_for(lambda m: len(received_events(subscriber)) == len(all_events(records[:30])))
        broker.kill()
        for r in records[30:]:  # the events of 50 frames happen while the broker is down
            s.write(r)
        assert until(lambda: not s.health()["connected"] and s.health()["queued"] > 0)
        subscriber.subscribed.clear()
        broker.start()
        assert subscriber.subscribed.wait(10)  # resent messages reach only a subscriber that is back
        expected = all_events(records)
        assert subscriber.wait_for(lambda m: len({json.dumps(e) for e in received_events(subscriber)})
                                   == len(expected), timeout=30)
    finally:
        s.close()
    got = received_events(subscriber)
    first_seen = [e for k, e in enumerate(got) if e not in got[:k]]  # at least once: a resend may repeat one
    assert first_seen == expected
    door = [int(p) for p in subscriber.payloads("test/cam1/zones/door/person")]
    assert door[-1] == records[-1]["zones"]["door"]["person"]


CHILD = """import json, os, signal, sys
from edge_yolox.sinks import SinkContext, mqtt
ctx = SinkContext(device="cam1", board="x86", model="m", source="s", class_names=("person", "car"), tracking=True)
sink = mqtt.from_config(json.loads(sys.argv[1]), ctx)
for record in json.loads(sys.argv[2]):
    sink.write(record)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_kill_9_during_an_outage_loses_no_event_with_the_journal(tmp_path):
    broker = Broker(tmp_path / "broker").start()
    sub = Subscriber(broker, durable=True)
    broker.kill()
    spill = tmp_path / "spill.jsonl"
    section = {"url": broker.url(), "password_file": str(broker.password_file), "spill": str(spill),
               "detections": "events"}
    records = script()
    try:
        proc = subprocess.run([sys.executable, "-c", CHILD, json.dumps(section), json.dumps(records)], cwd=ROOT,
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == -9 and "Traceback" not in proc.stderr, proc.stderr
        sub.subscribed.clear()
        broker.start()
        assert sub.subscribed.wait(10)
        s = sink(broker, spill=str(spill), detections="events")  # the next start sends what the journal kept
        assert sub.wait_for(lambda m: len(received_events(sub)) >= len(all_events(records)), timeout=30)
        s.close()
    finally:
        sub.close()
        broker.kill()
    assert received_events(sub) == all_events(records)
    assert s.counters["restored"] == len(all_events(records)) + len(changes_of_counts(records))
    assert spill.read_text() == ""


def changes_of_counts(records: list[dict]) -> list[tuple[str, int]]:
    """(topic suffix, value) of every count message a run of `records` publishes."""
    out, last = [], {}
    for r in records:
        values = {f"zones/{z}/{label}": n for z, labels in r["zones"].items() for label, n in labels.items()}
        values.update({f"lines/{line}/{label}/{d}": t[d] for line, labels in r["lines"].items()
                       for label, t in labels.items() for d in ("in", "out")})
        out += [(k, v) for k, v in values.items() if last.get(k) != v]
        last.update(values)
    return out


def test_counts_dropped_from_a_full_queue_are_published_again(tmp_path):
    dead = Broker(tmp_path / "later")  # not started: the broker is down
    s = sink(dead, queue_size=6, detections="events")
    records = script(20)
    try:
        for r in records[:19]:
            s.write(r)
        for _ in range(6):  # the stats of a long outage push every count out of the queue
            s.stats({"fps": 10.0})
        assert s.health()["dropped"] > 0
        dead.start()
        late = Subscriber(dead, "test/cam1/+/#", client_id="late-subscriber")
        assert until(lambda: s.health()["connected"] and s.health()["queued"] == 0)
        s.write(records[19])  # only the door zone changed; the rest are sent again as they were lost
        assert late.wait_for(lambda m: len({t for t, _, _ in m if "/zones/" in t or "/lines/" in t}) == 5, timeout=20)
        late.close()
    finally:
        s.close()
        dead.kill()
    counts = {t: p for t, p, _ in late.messages if "/zones/" in t or "/lines/" in t}
    assert counts == {"test/cam1/zones/door/person": b"1", "test/cam1/lines/gate/person/in": b"2",
                      "test/cam1/lines/gate/person/out": b"0", "test/cam1/lines/gate/car/in": b"0",
                      "test/cam1/lines/gate/car/out": b"0"}


def test_a_broker_that_lost_its_retained_counts_gets_them_again(broker):
    records = script(16)
    s = sink(broker)
    try:
        for r in records[:15]:
            s.write(r)
        assert until(lambda: s.health()["connected"] and s.health()["queued"] == 0)
        broker.kill()
        (broker.folder / "mosquitto.db").unlink(missing_ok=True)  # restarted without state: retained counts gone
        broker.start()
        assert until(lambda: s.health()["connects"] == 2)
        s.write(records[15])  # no count changed since frame 14, yet all are sent again after the reconnect
        assert until(lambda: s.health()["queued"] == 0)
        late = Subscriber(broker, "test/cam1/+/#", client_id="late-subscriber")
        late.wait_for(lambda m: len([t for t, _, _ in m if "/zones/" in t or "/lines/" in t]) == 5, timeout=10)
        late.close()
    finally:
        s.close()
    counts = {t: p for t, p, retained in late.messages if retained and ("/zones/" in t or "/lines/" in t)}
    assert counts == {"test/cam1/zones/door/person": b"0", "test/cam1/lines/gate/person/in": b"2",
                      "test/cam1/lines/gate/person/out": b"0", "test/cam1/lines/gate/car/in": b"0",
                      "test/cam1/lines/gate/car/out": b"0"}


def test_names_never_add_topic_levels(broker, subscriber):
    assert mqtt_sink._name_level("a/b+c#d%e\x01") == "a%2Fb%2Bc%23d%25e%01"
    assert mqtt_sink._name_level("traffic light") == "traffic light"
    assert mqtt_sink._name_level("a/b") != mqtt_sink._name_level("a_b")
    s = sink(broker)
    s.write({"frame": 0, "detections": [], "events": [], "zones": {"x/#": {"a/+": 2}},
             "lines": {"l+": {"50%": {"in": 1, "out": 2}}}})
    s.close()
    assert offline(subscriber)
    counts = {t: p for t, p, _ in subscriber.messages if "/zones/" in t or "/lines/" in t}
    assert counts == {"test/cam1/zones/x%2F%23/a%2F%2B": b"2", "test/cam1/lines/l%2B/50%25/in": b"1",
                      "test/cam1/lines/l%2B/50%25/out": b"2"}


def test_home_assistant_discovery_of_zones_and_lines(broker, subscriber):
    jinja2 = pytest.importorskip("jinja2", reason="jinja2 (Home Assistant's template engine) checks the templates")
    for _ in range(2):  # a restart announces the same sensors: unique ids are stable
        s = sink(broker, homeassistant=True)
        for r in script(20):
            s.write(r)
        s.close()
        assert offline(subscriber)
    configs = [(t, json.loads(p)) for t, p, _ in subscriber.messages if t.startswith("homeassistant/")]
    first, second = configs[:len(configs) // 2], configs[len(configs) // 2:]
    assert first == second
    sensors = dict(first)
    base = "homeassistant/sensor/edge_yolox_cam1"
    zone_keys = ["zone_door_person", "zone_yard_person"]  # yard takes every class: homeassistant_labels (person)
    line_keys = [f"line_gate_{label}_{d}" for label in ("person", "car") for d in ("in", "out")]
    assert set(sensors) == {f"{base}/{k}/config" for k in ["person_count", "fps", *zone_keys, *line_keys]}
    for key in zone_keys + line_keys:
        config = sensors[f"{base}/{key}/config"]
        assert config["unique_id"] == f"edge_yolox_cam1_{key}"
        assert config["availability_topic"] == "test/cam1/status"
        assert config["state_class"] == ("measurement" if key.startswith("zone") else "total_increasing")
    door = sensors[f"{base}/zone_door_person/config"]
    assert door["state_topic"] == "test/cam1/zones/door/person" and door["name"] == "door person"
    gate = sensors[f"{base}/line_gate_person_in/config"]
    assert gate["state_topic"] == "test/cam1/lines/gate/person/in" and gate["name"] == "gate person in"
    # the state Home Assistant reads: the retained payload on the state topic, a plain integer
    state = subscriber.payloads("test/cam1/lines/gate/person/in")[-1]
    template = jinja2.Environment().from_string(gate.get("value_template", "{{ value }}"))
    assert template.render(value=state.decode()) == "2"


def test_object_ids_that_would_collide_are_refused(broker):
    zones = (Zone("Door", ((0, 0), (1, 0), (1, 1)), (), 3), Zone("door", ((0, 0), (1, 0), (0, 1)), (), 3))
    ctx = SinkContext(device="cam1", board="x86", model="m", source="s", class_names=("person",), tracking=True,
                      zones=zones)
    with pytest.raises(ConfigError, match=r"^outputs\.mqtt\.homeassistant: zones 'Door' and 'door' give the same"):
        sink(broker, ctx, homeassistant=True)
