"""`edge-yolox run` end to end on real components: the real video with the ONNX and the NCNN model, a live
MJPEG stream killed and restarted, SIGTERM, sd_notify on a real socket, and file outputs."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from types import SimpleNamespace

import cv2
import pytest
from conftest import free_port
from runtime_helpers import ROOT, MjpegServer, cli, iou, ncnn_model, onnx_model, records, unmatched, video

from edge_yolox.config import load_config
from edge_yolox.pipeline import Pipeline
from edge_yolox.sinks import Sink

FRAMES = 100  # the person walks in around frame 62


@pytest.fixture(scope="module")
def video_runs():
    runs = {}
    for name, model in (("onnx", onnx_model()), ("ncnn", ncnn_model())):
        result = cli("-q", "run", "--board", "x86", "--threads", "2", "--model", model, "--source", video(),
                     "--limit", FRAMES, "--conf", "0.25", timeout=600)
        assert result.returncode == 0, result.stderr
        runs[name] = records(result.stdout)
    return runs


def test_records_follow_the_schema(video_runs):
    recs = video_runs["onnx"]
    assert [r["frame"] for r in recs] == list(range(FRAMES))
    first = recs[-1]
    assert set(first) >= {"ts", "frame", "source", "board", "model", "size", "latency_ms", "fps", "detections"}
    assert first["size"] == [432, 768] and first["board"] == "x86" and first["fps"] > 0
    assert set(first["latency_ms"]) == {"pre", "infer", "post"}


def test_person_reported_where_onnx_finds_one(video_runs):
    person_frames = 0
    for onnx, ncnn in zip(video_runs["onnx"], video_runs["ncnn"]):
        people = [d for d in onnx["detections"] if d["label"] == "person" and d["score"] >= 0.5]
        person_frames += bool(people)
        for person in people:
            assert any(d["label"] == "person" and iou(d["box"], person["box"]) >= 0.8
                       for d in ncnn["detections"]), f"frame {onnx['frame']}: NCNN misses {person}"
    assert person_frames >= 20


def test_backends_agree_at_detection_level(video_runs):
    """Every confident detection (>= 0.7) has a same-class match with IoU >= 0.8, both ways. Scores of the
    matched pairs differ by <= 0.1 in at least 95% of them and never by more than 0.15: the third-party
    NCNN file's fp16 weights move a few scores a little further (frame 67: person 0.832 vs 0.712)."""
    diffs = []
    for onnx, ncnn in zip(video_runs["onnx"], video_runs["ncnn"]):
        for a, b in ((onnx, ncnn), (ncnn, onnx)):
            assert unmatched(a["detections"], b["detections"], min_score=0.7, max_score_diff=0.15) == [], a["frame"]
        for d in onnx["detections"]:
            if d["score"] >= 0.7:
                diffs.append(min(abs(d["score"] - m["score"]) for m in ncnn["detections"]
                                 if m["class_id"] == d["class_id"] and iou(m["box"], d["box"]) >= 0.8))
    assert len(diffs) >= 20
    assert sum(x <= 0.1 for x in diffs) >= 0.95 * len(diffs)


def popen_run(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge_yolox.cli", *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env={**os.environ, **(env or {})})


class Lines:
    """Collects a process's stdout lines on a thread, so the test can wait for N of them."""

    def __init__(self, stream):
        self.lines: list[str] = []
        self._thread = threading.Thread(target=lambda: self.lines.extend(iter(stream.readline, "")), daemon=True)
        self._thread.start()

    def wait_for(self, n: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while len(self.lines) < n and time.monotonic() < deadline:
            time.sleep(0.1)
        return len(self.lines) >= n


def stop(proc: subprocess.Popen, lines: Lines) -> tuple[int, str]:
    proc.send_signal(signal.SIGTERM)
    rc = proc.wait(timeout=30)
    lines._thread.join(timeout=5)
    return rc, proc.stderr.read()


def test_live_stream_killed_and_restarted():
    server = MjpegServer(free_port()).start()
    proc = None
    try:
        proc = popen_run("run", "--board", "x86", "--model", onnx_model(), "--source", server.url,
                         "--stats-interval", "1")
        lines = Lines(proc.stdout)
        assert lines.wait_for(5, 60), proc.stderr.read() if proc.poll() is not None else "no frames"
        server.stop()
        time.sleep(3.0)
        before = len(lines.lines)
        assert proc.poll() is None  # the outage did not end the run
        server.start()
        assert lines.wait_for(before + 5, 60), "no frames after the stream came back"
        rc, stderr = stop(proc, lines)
        assert rc == 0, stderr
        assert "reconnected" in stderr and "Traceback" not in stderr
        frames = [json.loads(line)["frame"] for line in lines.lines]
        assert frames == sorted(frames)  # frame numbers keep counting across the reconnect
    finally:
        server.stop()
        if proc is not None and proc.poll() is None:
            proc.kill()


def test_sigterm_flushes_and_exits_zero(tmp_path):
    out = tmp_path / "frames.jsonl"
    proc = popen_run("run", "--board", "x86", "--model", onnx_model(), "--source", video(), "--jsonl", out)
    lines = Lines(proc.stdout)
    assert lines.wait_for(5, 60)
    rc, stderr = stop(proc, lines)
    assert rc == 0, stderr
    saved = [json.loads(line) for line in out.read_text().splitlines()]  # every line complete
    assert len(saved) == len(lines.lines) >= 5
    assert "stats" in stderr  # final stats at shutdown


def test_sd_notify_ready_watchdog_status_stopping(tmp_path):
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.2)
    messages: list[str] = []
    done = threading.Event()

    def receive() -> None:  # read as systemd does, while the run goes on (a full socket queue blocks senders)
        while not done.is_set():
            try:
                messages.append(sock.recv(4096).decode())
            except socket.timeout:
                continue

    receiver = threading.Thread(target=receive, daemon=True)
    receiver.start()
    try:
        result = cli("-q", "run", "--board", "x86", "--model", onnx_model(), "--source", video(), "--limit", "15",
                     "--no-stdout", env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "200000"})
        time.sleep(0.5)
    finally:
        done.set()
        receiver.join()
        sock.close()
    assert result.returncode == 0, result.stderr
    assert messages.count("READY=1") == 1
    assert "WATCHDOG=1" in messages
    assert any(m.startswith("STATUS=") and "fps" in m for m in messages)
    assert "STOPPING=1" in messages
    assert messages.index("READY=1") < messages.index("STOPPING=1")
    assert result.stdout == ""  # --no-stdout


def test_save_video_and_image_folder_outputs(tmp_path):
    clip = tmp_path / "out.mp4"
    result = cli("-q", "run", "--board", "x86", "--model", onnx_model(), "--source", video(), "--limit", "8",
                 "--save", clip, "--classes", "person,tvmonitor")
    assert result.returncode == 0, result.stderr
    cap = cv2.VideoCapture(str(clip))
    assert cap.get(cv2.CAP_PROP_FRAME_COUNT) == 8 and int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)) == 768
    cap.release()
    assert all(d["label"] in ("person", "tv") for r in records(result.stdout) for d in r["detections"])

    folder = tmp_path / "annotated"
    result = cli("-q", "run", "--board", "x86", "--model", onnx_model(), "--source", "synthetic", "--limit", "3",
                 "--save", folder)
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in folder.iterdir()) == [f"frame_{i:06d}.jpg" for i in range(3)]


class Reporting(Sink):
    def __init__(self, name: str, health: dict):
        self.name, self.own, self.seen = name, health, []

    def health(self) -> dict:
        return self.own

    def stats(self, stats: dict) -> None:
        self.seen.append(stats)


def test_stats_carry_every_sinks_health_to_every_sink(monkeypatch):
    """Each sink reports its own health; the pipeline merges them, so the first sink sees the last one's too (it
    once depended on SINK_MODULES order). Built in-process, a Pipeline never speaks to systemd."""
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify.sock")
    sinks = [Reporting("stdout", {}), Reporting("mqtt", {"queued": 2}), Reporting("serial", {"connected": False})]
    source = SimpleNamespace(name="test", dropped=0, reconnects=0)
    pipeline = Pipeline(load_config("x86"), SimpleNamespace(), source, sinks)
    assert not pipeline.notifier.enabled
    pipeline.send_stats()
    for sink in sinks:
        assert sink.seen[-1]["outputs"] == {"mqtt": {"queued": 2}, "serial": {"connected": False}}


def test_logs_and_records_name_the_model_alike():
    result = cli("run", "--demo", "--board", "x86", "--limit", "2", "--threads", "1", "--stats-interval", "0")
    assert result.returncode == 0, result.stderr
    name = records(result.stdout)[0]["model"]
    assert name == "yolox-nano-int8" and f"running {name} on synthetic" in result.stderr
