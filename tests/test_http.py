"""Live preview, metrics and health over HTTP, from a real `edge-yolox run` on the real video, read with a
real HTTP client (urllib) and rendered by headless Chromium."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from runtime_helpers import ROOT, free_port, onnx_model, video

from edge_yolox.errors import ConfigError
from edge_yolox.sinks import SinkContext
from edge_yolox.sinks import http as http_sink

CTX = SinkContext(device="cam1", board="x86", model="yolox-nano", source="synthetic")
SAMPLE = re.compile(r'^edge_yolox_[a-z_]+(\{[a-z_]+="(?:[^"\\]|\\.)*"(,[a-z_]+="(?:[^"\\]|\\.)*")*\})? -?[0-9.e+-]+$')


def get(url: str, accept: str = "*/*", timeout: float = 10) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def mjpeg_frames(url: str, count: int, accept: str = "*/*") -> list[np.ndarray]:
    """The first `count` JPEG parts of a multipart/x-mixed-replace stream, decoded."""
    request = urllib.request.Request(url, headers={"Accept": accept})
    frames = []
    with urllib.request.urlopen(request, timeout=20) as response:
        kind = response.headers["Content-Type"]
        boundary = re.search(r"boundary=(\S+)", kind).group(1).encode()
        assert kind.startswith("multipart/x-mixed-replace")
        while len(frames) < count:
            assert response.readline().strip() == b"--" + boundary
            headers = {}
            while (line := response.readline().strip()):
                key, value = line.decode().split(":", 1)
                headers[key.lower()] = value.strip()
            assert headers["content-type"] == "image/jpeg"
            jpeg = response.read(int(headers["content-length"]))
            response.readline()
            frames.append(cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR))
    return frames


@pytest.fixture(scope="module")
def served():
    """`edge-yolox run` on the real video at its own frame rate, serving the preview on a free port."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "edge_yolox.cli", "run", "--source", str(video()), "--realtime",
                             "--model", str(onnx_model()), "--threads", "1", "--serve", f"127.0.0.1:{port}",
                             "--no-stdout", "--stats-interval", "1"], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if get(base + "/healthz", timeout=1)[0] == 200:
                break
        except OSError:
            pass
        time.sleep(0.2)
    yield base
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err[-2000:]


def test_page_stream_stats_health(served):
    status, kind, body = get(served + "/", accept="text/html,application/xhtml+xml")
    assert status == 200 and kind.startswith("text/html") and b"stream.mjpg" in body
    frames = mjpeg_frames(served + "/stream.mjpg", 3)
    assert all(f.shape == (432, 768, 3) for f in frames)  # the video's frames, annotated
    assert mjpeg_frames(served + "/", 1)[0].shape == (432, 768, 3)  # `/` is the stream itself for non-browsers
    status, kind, body = get(served + "/stats.json")
    stats = json.loads(body)
    assert status == 200 and stats["device"] and stats["frames"] > 0 and "latency_ms" in stats["last"]
    status, _, body = get(served + "/healthz")
    assert status == 200 and json.loads(body)["status"] == "ok"
    assert get(served + "/nope")[0] == 404


def test_metrics_are_prometheus_text(served):
    time.sleep(1.5)  # one stats period: latency medians and source counters
    status, kind, body = get(served + "/metrics")
    assert status == 200 and kind.startswith("text/plain; version=0.0.4")
    lines = body.decode().splitlines()
    samples = [line for line in lines if not line.startswith("#")]
    assert samples and all(SAMPLE.match(line) for line in samples), [s for s in samples if not SAMPLE.match(s)]
    for line in lines:
        if line.startswith("# TYPE"):
            name = line.split()[2]
            assert any(s.startswith(name) for s in samples)
    values = {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1]) for line in samples}
    assert values["edge_yolox_frames_total"] > 0
    assert {f'edge_yolox_latency_ms{{stage="{s}"}}' for s in ("pre", "infer", "post")} <= set(values)
    assert "edge_yolox_dropped_frames_total" in values and "edge_yolox_fps" in values


def test_screenshot_in_headless_chromium(served, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        message = "chromium not installed (apt-get install chromium): needed for the preview screenshot"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    shot = Path(os.environ.get("EDGE_YOLOX_SCREENSHOT", tmp_path / "preview.png"))
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,460", "--virtual-time-budget=4000", f"--screenshot={shot}", served + "/"],
                   check=True, capture_output=True, timeout=120, cwd=tmp_path)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (460, 1000)
    stream = image[:360, :640]  # where the <img> is laid out: the video frame, scaled to 640 wide
    side = image[:, 660:]
    assert stream.std() > 20  # a real picture, not the empty black box of a stream that never came
    assert (side > 150).any()  # the stats text (light on dark) was filled in by the page's script


# ---- the sink in-process


def test_health_goes_stale_and_binds_localhost(tmp_path):
    sink = http_sink.from_config({"listen": "0", "stale_s": 0.3}, CTX)  # port 0: any free port
    try:
        assert sink.address[0] == "127.0.0.1"
        base = f"http://127.0.0.1:{sink.address[1]}"
        status, _, body = get(base + "/healthz")
        assert status == 503 and json.loads(body)["status"] == "starting"
        sink.write({"frame": 0, "fps": 1.0, "latency_ms": {}, "detections": []}, np.zeros((48, 64, 3), np.uint8))
        assert get(base + "/healthz")[0] == 200
        time.sleep(0.5)
        status, _, body = get(base + "/healthz")
        assert status == 503 and json.loads(body)["status"] == "stale"
        with pytest.raises(ConfigError, match="outputs.http.listen: cannot listen"):
            http_sink.from_config({"listen": f"127.0.0.1:{sink.address[1]}"}, CTX)
    finally:
        sink.close()
    with pytest.raises(ConfigError, match="outputs.http.listen"):
        http_sink.from_config({"listen": "localhost:http"}, CTX)


def test_label_values_are_escaped():
    sink = http_sink.from_config({"listen": "0"}, CTX)
    try:
        sink.write({"frame": 0, "detections": [{"label": 'a "quoted"\\label', "class_id": 0, "score": 0.5,
                                                 "box": [0, 0, 1, 1]}]}, None)
        sample = [line for line in sink.metrics().splitlines() if line.startswith("edge_yolox_detections_total")]
        assert sample == ['edge_yolox_detections_total{label="a \\"quoted\\"\\\\label"} 1']
        assert all(SAMPLE.match(line) for line in sink.metrics().splitlines() if not line.startswith("#"))
    finally:
        sink.close()
