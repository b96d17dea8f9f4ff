"""The MQTT journal (`spill`): `kill -9` of a real `edge-yolox run` at random moments during a broker outage and
during the resend loses no QoS 1 message (counted at a real mosquitto); a crash at any instant, even during a
rewrite, leaves a file that holds exactly the unacknowledged messages; torn lines are skipped with one warning;
an unusable path is a one-line error naming the key."""

from __future__ import annotations

import json
import random
import shutil
import signal
import subprocess
import sys
import threading
import time

import pytest
from mqtt_helpers import ROOT, Broker, Subscriber, runtime
from runtime_helpers import onnx_model

from edge_yolox.errors import ConfigError
from edge_yolox.sinks import SinkContext
from edge_yolox.sinks import mqtt as mqtt_sink

CTX = SinkContext(device="cam1", board="x86", model="yolox-nano", source="synthetic", class_names=("person",))


class Run:
    """A runtime with the journal whose stdout records are collected as they come."""

    def __init__(self, broker: Broker, journal, log):
        self.proc = runtime(broker, "--source", "synthetic", "--model", str(onnx_model()), "--mqtt-spill",
                            str(journal), stderr=log)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line)
                self.cond.notify_all()

    def wait_records(self, n: int, timeout: float = 60) -> None:
        with self.cond:
            assert self.cond.wait_for(lambda: len(self.lines) >= n, timeout), "the runtime produced no records"

    def stop(self, sig: int) -> set[tuple[float, int]]:
        """Stops it; the records the MQTT sink certainly accepted. Sinks take a frame in order, stdout before
        mqtt, so a record on stdout was queued by mqtt unless it is the last one of a killed run."""
        self.proc.send_signal(sig)
        self.proc.wait(timeout=30)
        self.reader.join(timeout=10)
        complete = [json.loads(line) for line in self.lines if line.endswith("\n")]
        accepted = complete if sig == signal.SIGTERM else complete[:-1]
        return {(r["ts"], r["frame"]) for r in accepted}


def received(sub: Subscriber) -> list[tuple[float, int]]:
    return [(r["ts"], r["frame"]) for r in sub.records()]


def unacknowledged(journal, scratch) -> set[int]:
    """The journal entries a restart would resend (read from a copy: reading rewrites the file)."""
    if not journal.exists():
        return set()
    shutil.copyfile(journal, scratch)
    return {m.seq for m in mqtt_sink.Journal(scratch).restored}


def kill_at_arrival(sub: Subscriber, n: int, run: Run) -> None:
    """kill -9 the runtime as the n-th detections message from now reaches the subscriber."""
    count = 0

    def arrived(topic: str) -> None:
        nonlocal count
        count += topic.endswith("/detections")
        if count == n:
            run.proc.kill()

    sub.on_arrival = arrived
    run.proc.wait(timeout=60)
    sub.on_arrival = None


def test_kill_9_during_outage_and_resend_loses_no_qos1_message(tmp_path):
    seed = random.randrange(1 << 30)
    rng = random.Random(seed)
    broker = Broker(tmp_path / "broker").start()
    sub = Subscriber(broker, durable=True)  # its session, stored by the broker, outlives the outage
    broker.kill()  # before anything was published, so the broker itself has nothing to lose
    journal = tmp_path / "state" / "mqtt-spill.jsonl"
    journal.parent.mkdir()
    accepted: set[tuple[float, int]] = set()
    backlog_left = []  # per kill during the resend: restored entries still unacknowledged
    runs: list[Run] = []
    with open(tmp_path / "runtime.log", "w") as log:
        try:
            # Outage: messages only reach the journal. One kill lands during start-up (the journal's restore
            # and rewrite), the others after a random number of frames.
            runs.append(Run(broker, journal, log))
            time.sleep(rng.uniform(0.2, 1.5))  # the random moment itself, whatever the runtime is doing
            accepted |= runs[-1].stop(signal.SIGKILL)
            for _ in range(3):
                runs.append(Run(broker, journal, log))
                runs[-1].wait_records(rng.randint(20, 80))
                accepted |= runs[-1].stop(signal.SIGKILL)
            # The broker is back: kill while the backlog is being resent, at a random arrival.
            broker.start()
            for _ in range(3):
                backlog = unacknowledged(journal, tmp_path / "scratch.jsonl")
                runs.append(Run(broker, journal, log))
                kill_at_arrival(sub, rng.randint(1, max(1, len(backlog) // 2)), runs[-1])
                accepted |= runs[-1].stop(signal.SIGKILL)
                backlog_left.append(len(backlog & unacknowledged(journal, tmp_path / "scratch.jsonl")))
            runs.append(Run(broker, journal, log))
            runs[-1].wait_records(1)  # running, with its SIGTERM handler
            sub.wait_for(lambda m: accepted <= set(received(sub)), timeout=30)  # the backlog, all of it
            accepted |= runs[-1].stop(signal.SIGTERM)
            assert runs[-1].proc.returncode == 0
            sub.wait_for(lambda m: accepted <= set(received(sub)), timeout=10)  # its last frames
        finally:
            for run in runs:
                if run.proc.poll() is None:
                    run.proc.kill()
                    run.proc.wait()
            sub.close()
            broker.kill()
    keys = received(sub)
    missing = sorted(accepted - set(keys))
    print(f"kill -9 x7 (seed {seed}): {len(accepted)} frames accepted, {len(keys)} received, "
          f"{len(keys) - len(set(keys))} duplicates; of the backlog, unacknowledged at the resend kills: "
          f"{backlog_left}")
    assert not missing, f"seed {seed}: {len(missing)} of {len(accepted)} frames lost, e.g. {missing[:5]}"
    assert max(backlog_left) > 0, "no kill interrupted a resend"
    assert "Traceback" not in (tmp_path / "runtime.log").read_text()


def message(seq: int) -> mqtt_sink.Message:
    return mqtt_sink.Message("t/cam1/detections", json.dumps({"frame": seq}).encode(), 1, False, seq)


def test_a_crash_at_any_instant_leaves_exactly_the_unacknowledged(tmp_path, monkeypatch):
    """Adds and acks race the sync thread, which rewrites the file every few ms here; copies taken at random
    instants (what a kill -9 would leave) must each hold exactly the messages not yet acknowledged."""
    monkeypatch.setattr(mqtt_sink, "SYNC_INTERVAL_S", 0.002)
    monkeypatch.setattr(mqtt_sink, "COMPACT_MIN_LINES", 20)
    rng = random.Random(7)
    path = tmp_path / "journal.jsonl"
    journal = mqtt_sink.Journal(path)
    journal.start()
    live: set[int] = set()
    for checkpoint in range(40):
        for seq in range(checkpoint * 300, (checkpoint + 1) * 300):
            journal.add(message(seq))
            live.add(seq)
            for done in rng.sample(sorted(live), k=min(len(live), rng.choice((0, 1, 2)))):
                journal.settle(done)
                live.discard(done)
        crash = tmp_path / f"crash{checkpoint}.jsonl"
        shutil.copyfile(path, crash)
        assert [m.seq for m in mqtt_sink.Journal(crash).restored] == sorted(live), checkpoint
    journal.close()
    restored = mqtt_sink.Journal(path).restored
    assert [m.seq for m in restored] == sorted(live) and restored[0] == message(restored[0].seq)
    assert len(path.read_text().splitlines()) == len(live)  # the final rewrite kept nothing else


def test_torn_and_damaged_lines_are_skipped_with_one_warning(tmp_path, caplog):
    path = tmp_path / "journal.jsonl"
    good = [mqtt_sink._line(message(seq)) for seq in range(3)]
    path.write_bytes("".join(good).encode() + b'{"done": 1}\n\xff\xfe not json\n[1, 2]\n{"seq": "x"}\n'
                     + b"[" * 100000 + b"\n" + good[0].encode()[:25])  # the last write torn by a power cut
    with caplog.at_level("WARNING"):
        journal = mqtt_sink.Journal(path)
    assert [m.seq for m in journal.restored] == [0, 2]
    assert [r.getMessage() for r in caplog.records] == [f"mqtt: {path}: 5 damaged lines skipped "
                                                        f"(a write cut short by a crash?)"]
    journal.add(message(3))  # appended after the rewrite, not glued to the torn line
    journal.start()
    journal.close()
    assert [m.seq for m in mqtt_sink.Journal(path).restored] == [0, 2, 3]


def test_spill_file_of_the_previous_version_is_resent(tmp_path):
    path = tmp_path / "mqtt-spill.jsonl"
    path.write_text("".join(json.dumps({"topic": "t/x", "payload": f"p{i}", "qos": 1, "retain": False}) + "\n"
                            for i in range(3)))
    assert [m.payload for m in mqtt_sink.Journal(path).restored] == [b"p0", b"p1", b"p2"]


def test_unusable_spill_path_is_a_one_line_error(tmp_path):
    a_file = tmp_path / "file"
    a_file.write_text("")
    for path in (tmp_path, a_file / "spill", tmp_path / "missing" / "spill", "/proc/version"):
        with pytest.raises(ConfigError, match=r"^outputs\.mqtt\.spill: cannot keep the journal in "):
            mqtt_sink.from_config({"url": "mqtt://127.0.0.1:1/x", "spill": str(path)}, CTX)
    proc = subprocess.run([sys.executable, "-m", "edge_yolox.cli", "run", "--source", "synthetic", "--model",
                           str(onnx_model()), "--mqtt", "mqtt://127.0.0.1:1/x", "--mqtt-spill", str(tmp_path),
                           "--limit", "1"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("edge-yolox: error: ") and \
        last.endswith(f"outputs.mqtt.spill: cannot keep the journal in {tmp_path} (Is a directory)")
