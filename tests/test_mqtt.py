"""MQTT output against a real mosquitto (password auth, TLS with CA and client certificates): the
documented payload from a real `edge-yolox run`, a broker killed for 10 s without losing a QoS 1 message,
the last will when the runtime is killed, SIGTERM during an outage (journal kept, exit 0), the bounded queue,
detection filters, Home Assistant discovery, and no password of a malformed URL in any error.
The journal's kill -9 test is in test_mqtt_journal.py."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import free_port, until
from mqtt_helpers import PASSWORD, Broker, Subscriber, runtime
from runtime_helpers import ROOT, onnx_model, records, video

from edge_yolox.errors import ConfigError, redact
from edge_yolox.sinks import SinkContext
from edge_yolox.sinks import mqtt as mqtt_sink

CTX = SinkContext(device="cam1", board="x86", model="yolox-nano", source="synthetic",
                  class_names=("person", "bicycle", "car"))


def record(index: int, labels: tuple[str, ...] = ("person",)) -> dict:
    dets = [{"label": label, "class_id": CTX.class_names.index(label), "score": 0.9, "box": [1.0, 2.0, 30.0, 40.0]}
            for label in labels]
    return {"ts": 1732451234.0 + index, "frame": index, "source": "synthetic", "board": "x86", "model": "yolox-nano",
            "size": [480, 640], "latency_ms": {"pre": 1.0, "infer": 40.0, "post": 0.2}, "fps": 20.0,
            "detections": dets}


def sink(broker: Broker, **kw) -> mqtt_sink.MqttSink:
    section = {"url": broker.url(), "password_file": str(broker.password_file), "reconnect_min_s": 0.05,
               "reconnect_max_s": 0.5, **kw}
    return mqtt_sink.from_config(section, CTX)


def frames_of(sub: Subscriber) -> list[int]:
    return [r["frame"] for r in sub.records()]


# ---- configuration


def test_config_errors_name_the_key(tmp_path):
    bad = [({"url": "mqtt://edge:secret@host/x"}, "outputs.mqtt.url: a password in the URL"),
           ({"url": "http://host"}, "outputs.mqtt.url"),
           ({"url": "mqtt://host:99999"}, "outputs.mqtt.url"),
           ({"url": "mqtt://host", "qos": 3}, "outputs.mqtt.qos"),
           ({"url": "mqtt://edge@host", "password_file": str(tmp_path / "nope")}, "outputs.mqtt.password_file"),
           ({"url": "mqtt://host", "spill": "/nonexistent/dir/spill"}, "outputs.mqtt.spill"),
           ({"url": "mqtt://host", "detections": "some"}, "outputs.mqtt.detections"),
           ({"url": "mqtt://host", "homeassistant": True, "homeassistant_labels": ["dragon"]},
            "outputs.mqtt.homeassistant_labels"),
           ({"url": "mqtts://host", "ca_file": str(tmp_path / "none.crt")}, "outputs.mqtt.ca_file"),
           ({"url": "mqtt://host", "qos": "1"}, "outputs.mqtt.qos")]
    for section, message in bad:
        with pytest.raises(ConfigError, match=message.replace(".", r"\.")):
            mqtt_sink.from_config(section, CTX)


SECRET = "S3cr3t-pw"
MALFORMED = ["mqtt://u:{}@/x", "http://u:{}@host", "mqtt://u:{}@host:notaport/x", "mqtt://u:{}@[::1/x",
             "mqtt://u:{}@[zz]/x", "mqtts://:{}@", "mqtt://u:pa/{}@host/x", "mqtt://u:{}@host/a+b", "u:{}@host",
             "mqtt:u:{}@host", "mqtt://u:{}@host:99999", "mqtt://u:p@{}@host/x", "ftp://u:{}@", "mqtt://u:{}",
             "mqtt://u:{}/x", "MQTT://u:{}@h\nost", " mqtt://u:{}@host"]


def test_no_password_of_a_malformed_url_in_any_error():
    for url in MALFORMED:
        with pytest.raises(ConfigError, match=r"^outputs\.mqtt\.url: ") as error:
            mqtt_sink.from_config({"url": url.format(SECRET)}, CTX)
        assert SECRET not in str(error.value), url
    assert redact("mqtt://u:pw@host:1883/x") == "mqtt://u:***@host:1883/x"
    for url in MALFORMED[:4]:  # and through the CLI, with debug logging
        proc = subprocess.run([sys.executable, "-m", "edge_yolox.cli", "-v", "run", "--source", "synthetic",
                               "--model", str(onnx_model()), "--mqtt", url.format(SECRET), "--limit", "1"],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
        assert SECRET not in proc.stderr + proc.stdout, url


def test_bad_flag_is_one_line_error_from_the_cli():
    proc = subprocess.run([sys.executable, "-m", "edge_yolox.cli", "run", "--source", "synthetic", "--model",
                           str(onnx_model()), "--mqtt", "mqtt://u:pw@127.0.0.1/x", "--limit", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edge-yolox: error: ") and "outputs.mqtt.url: a password in the URL" in last
    assert "Traceback" not in proc.stderr


# ---- with the real runtime


def test_runtime_publishes_the_documented_payload(broker, subscriber):
    proc = runtime(broker, "--source", str(video()), "--model", str(onnx_model()), "--limit", "12")
    seen_argv = ""
    while proc.poll() is None:  # what `ps` shows while it runs
        try:
            seen_argv += Path(f"/proc/{proc.pid}/cmdline").read_bytes().decode(errors="replace")
        except OSError:
            pass
        time.sleep(0.2)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    frames = records(out)
    assert len(frames) == 12
    assert subscriber.wait_for(lambda m: sum(t.endswith("/detections") for t, _, _ in m) >= 12
                               and any(t.endswith("/status") and p == b"offline" for t, p, _ in m))
    assert subscriber.records() == frames  # every frame's record, exactly as on stdout, in order
    assert {"ts", "frame", "source", "board", "model", "size", "latency_ms", "detections"} <= set(frames[0])
    statuses = subscriber.payloads("test/cam1/status")
    assert statuses[0] == b"online" and statuses[-1] == b"offline"
    stats = [json.loads(p) for p in subscriber.payloads("test/cam1/stats")]
    assert stats and stats[-1]["frames"] == 12 and stats[-1]["outputs"]["mqtt"]["connected"] is True
    assert PASSWORD not in seen_argv and PASSWORD not in err and PASSWORD not in out


def test_broker_outage_of_10s_loses_no_qos1_message(broker, subscriber):
    proc = runtime(broker, "--source", "synthetic", "--model", str(onnx_model()), "--stats-interval", "2")
    try:
        assert subscriber.wait_for(lambda m: len(frames_of(subscriber)) >= 10, timeout=60)
        before = len(frames_of(subscriber))
        broker.kill()
        time.sleep(10)
        subscriber.subscribed.clear()
        broker.start()
        assert subscriber.subscribed.wait(10)  # resent messages reach only a subscriber that is back
        assert subscriber.wait_for(lambda m: len(frames_of(subscriber)) >= before + 50, timeout=60)
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err[-2000:]
    processed = [r["frame"] for r in records(out)]
    assert "connection lost" in err
    assert subscriber.wait_for(lambda m: set(processed) <= set(frames_of(subscriber)), timeout=30), \
        f"missing frames: {sorted(set(processed) - set(frames_of(subscriber)))[:20]}"
    assert set(frames_of(subscriber)) == set(processed)  # at least once, and nothing that was not processed
    assert len(processed) >= before + 50  # frames went on during the outage


def test_last_will_when_the_runtime_is_killed(broker, subscriber):
    proc = runtime(broker, "--source", "synthetic", "--model", str(onnx_model()), "--no-stdout")
    try:
        assert subscriber.wait_for(lambda m: (("test/cam1/status", b"online", False) in m), timeout=60)
    finally:
        proc.kill()
        proc.communicate(timeout=30)
    assert subscriber.wait_for(lambda m: subscriber.payloads("test/cam1/status")[-1:] == [b"offline"], timeout=10)
    late = Subscriber(broker, "test/cam1/status", client_id="late-subscriber")  # the retained state
    try:
        assert late.wait_for(lambda m: ("test/cam1/status", b"offline", True) in m, timeout=10)
    finally:
        late.close()


def test_sigterm_during_outage_keeps_the_queue_and_exits_0(broker, subscriber, tmp_path):
    spill = tmp_path / "state" / "mqtt-spill.jsonl"
    spill.parent.mkdir()
    proc = runtime(broker, "--source", "synthetic", "--model", str(onnx_model()), "--mqtt-spill", str(spill))
    try:
        assert subscriber.wait_for(lambda m: len(frames_of(subscriber)) >= 5, timeout=60)
        broker.kill()
        time.sleep(2)
    finally:
        stopped = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]
    assert time.monotonic() - stopped < 30  # WatchdogSec of the rendered unit
    processed = [r["frame"] for r in records(out)]
    spilled = [json.loads(line) for line in spill.read_text().splitlines()]
    assert spilled and "kept in" in err
    subscriber.subscribed.clear()  # the killed broker forgot the subscription: resent messages need it back first
    broker.start()
    assert subscriber.subscribed.wait(10)
    s = sink(broker, spill=str(spill))  # the next start of the service sends what was saved
    try:
        assert subscriber.wait_for(lambda m: set(processed) <= set(frames_of(subscriber)), timeout=30), \
            f"missing: {sorted(set(processed) - set(frames_of(subscriber)))[:20]}"
    finally:
        s.close()
    assert spill.read_text() == ""  # every message acknowledged: the final rewrite keeps none
    assert s.counters["restored"] == len(spilled)


# ---- the sink itself


def test_full_queue_drops_oldest_and_counts(tmp_path):
    dead = Broker(tmp_path / "later")  # configured but not running yet: the broker is down
    s = sink(dead, queue_size=10)
    try:
        for i in range(25):
            s.write(record(i))
        health = s.health()
        assert health == {**health, "dropped": 15, "queued": 10, "connected": False}
        dead.start()
        sub = Subscriber(dead)
        assert sub.wait_for(lambda m: len(frames_of(sub)) >= 10, timeout=20)
        sub.close()
    finally:
        s.close()
        dead.kill()
    assert frames_of(sub) == list(range(15, 25))


def test_detection_filters(broker, subscriber):
    frames = [(), (), ("person",), ("person",), ("person", "car"), ("car", "person"), ("car",), ()]
    cases = (("all", 1, list(range(8))), ("nonempty", 0, [2, 3, 4, 5, 6]), ("change", 2, [0, 2, 4, 6, 7]))
    for mode, qos, expected in cases:  # each QoS level once, too
        s = sink(broker, detections=mode, url=broker.url(mode), qos=qos)
        for i, labels in enumerate(frames):
            s.write(record(i, labels))
        s.close()
        assert s.health()["queued"] == 0  # every message confirmed (QoS 0: written to the socket)
        assert subscriber.wait_for(lambda m, mode=mode: any(t == f"{mode}/cam1/status" and p == b"offline"
                                                            for t, p, _ in m))
        got = [json.loads(p)["frame"] for t, p, _ in subscriber.messages if t == f"{mode}/cam1/detections"]
        assert got == expected, mode
    s = sink(broker, max_rate=2.0, url=broker.url("rate"))
    start = time.monotonic()
    i = 0
    while time.monotonic() - start < 1.2:
        s.write(record(i))
        i += 1
        time.sleep(0.01)
    s.close()
    assert subscriber.wait_for(lambda m: ("rate/cam1/status", b"offline", False) in m)
    assert 2 <= sum(t == "rate/cam1/detections" for t, _, _ in subscriber.messages) <= 3 < i


def test_tls_with_ca_and_client_certificate(broker, subscriber):
    certs = broker.certs
    tls = {"url": broker.url(tls=True), "cert_file": str(certs["client.crt"]), "key_file": str(certs["client.key"])}
    s = sink(broker, ca_file=str(certs["ca.crt"]), **tls)
    s.write(record(1))
    s.close()
    assert subscriber.wait_for(lambda m: 1 in frames_of(subscriber))

    # A broker whose certificate is not signed by the CA we trust: no connection, messages stay queued.
    s = sink(broker, **tls)  # system CAs only
    s.write(record(2))
    time.sleep(1.5)
    health = s.health()
    s.close()
    assert health["connected"] is False and health["queued"] == 1 and 2 not in frames_of(subscriber)

    s = sink(broker, insecure=True, **tls)  # explicitly asked for: self-signed test setups
    s.write(record(3))
    s.close()
    assert subscriber.wait_for(lambda m: 3 in frames_of(subscriber))


def test_wrong_password_is_logged_not_fatal(broker, tmp_path, caplog):
    wrong = tmp_path / "wrong"
    wrong.write_text("nope\n")
    with caplog.at_level("WARNING"):
        s = sink(broker, password_file=str(wrong))
        s.write(record(1))
        assert until(lambda: "refused the connection" in caplog.text)
        s.close()
    assert "nope" not in caplog.text


def test_password_from_environment(broker, subscriber, monkeypatch):
    monkeypatch.setenv("MY_MQTT_PW", PASSWORD)
    s = sink(broker, password_file="", password_env="MY_MQTT_PW")
    s.write(record(7))
    s.close()
    assert subscriber.wait_for(lambda m: 7 in frames_of(subscriber))


def test_home_assistant_discovery(broker, subscriber):
    jinja2 = pytest.importorskip("jinja2", reason="jinja2 (Home Assistant's template engine) checks the templates")
    s = sink(broker, homeassistant=True, homeassistant_labels=["person", "car"])
    s.write(record(1, ("person", "car", "person")))
    s.close()
    assert subscriber.wait_for(lambda m: sum(t.startswith("homeassistant/") for t, _, _ in m) >= 3
                               and 1 in frames_of(subscriber))
    configs = {t: json.loads(p) for t, p, _ in subscriber.messages if t.startswith("homeassistant/")}
    assert set(configs) == {f"homeassistant/sensor/edge_yolox_cam1/{k}/config" for k in ("person_count", "car_count",
                                                                                          "fps")}
    detections = json.loads(subscriber.payloads("/detections")[-1])
    env = jinja2.Environment()
    counts = {c["name"]: env.from_string(c["value_template"]).render(value_json=detections)
              for c in configs.values() if c["state_topic"] == "test/cam1/detections"}
    assert counts == {"person count": "2", "car count": "1"}
    assert all(c["availability_topic"] == "test/cam1/status" for c in configs.values())


def test_unreachable_broker_never_blocks_write(tmp_path):
    port = free_port()  # nothing listens there
    s = mqtt_sink.from_config({"url": f"mqtt://127.0.0.1:{port}/x", "queue_size": 50}, CTX)
    for i in range(2000):
        s.write(record(i))
    s.close()
    assert s.health()["dropped"] == 1950

