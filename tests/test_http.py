"""Live preview, metrics and health over HTTP, from a real `edge-yolox run` on the real video, read with a
real HTTP client (urllib) and rendered by headless Chromium; zones, lines and track ids in the preview's pixels
and in /metrics; hostile names, idle and slow clients."""

from __future__ import annotations

import contextlib
import html
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import cv2
import numpy as np
import pytest
from conftest import free_port, system_tool, until
from runtime_helpers import ROOT, onnx_model, video

from edge_yolox import draw
from edge_yolox.errors import ConfigError
from edge_yolox.sinks import SinkContext
from edge_yolox.sinks import http as http_sink
from edge_yolox.zones import Line, Zone

CTX = SinkContext(device="cam1", board="x86", model="yolox-nano", source="synthetic")
SAMPLE = re.compile(r'^edge_yolox_[a-z_]+(\{[a-z_]+="(?:[^"\\]|\\.)*"(,[a-z_]+="(?:[^"\\]|\\.)*")*\})? -?[0-9.e+-]+$')


def get(url: str, accept: str = "*/*", timeout: float = 10) -> tuple[int, str, bytes]:
    request = urllib.request.Request(url, headers={"Accept": accept})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, response.headers["Content-Type"], response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers["Content-Type"], exc.read()


def response_headers(url: str, method: str = "GET"):
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # the body is not read: it may be a stream
            return response.headers
    except urllib.error.HTTPError as exc:
        return exc.headers


def read_until_closed(sock: socket.socket, timeout: float) -> bytes | None:
    """What the server sent before it closed the connection; None while it is still open after `timeout`."""
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return data


@contextlib.contextmanager
def feeding(sink: http_sink.HttpSink, record: dict, images: list[np.ndarray]):
    """A live source while the block runs: a frame every 10 ms (a stream with none stalls Chromium's clock)."""
    stop = threading.Event()

    def feed():
        index = 0
        while not stop.is_set():
            sink.write({**record, "frame": index}, images[index % len(images)])
            index += 1
            time.sleep(0.01)

    thread = threading.Thread(target=feed, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def chromium_or_skip() -> str:
    return system_tool("chromium", "chromium-browser", package="chromium", needed_for="to render the preview page")


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
    assert status == 200 and kind.startswith("text/html") and b'src="preview.js"' in body
    assert b"stream.mjpg" in get(served + "/preview.js")[2]  # the page's script starts the stream
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
    chromium = chromium_or_skip()
    shot = Path(os.environ.get("EDGE_YOLOX_SCREENSHOT", tmp_path / "preview.png"))
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    "--window-size=1000,460", "--virtual-time-budget=4000", f"--screenshot={shot}", served + "/"],
                   check=True, capture_output=True, timeout=120, cwd=tmp_path)
    image = cv2.imread(str(shot))
    assert image is not None and image.shape[:2] == (460, 1000)
    stream = image[:360, :640]  # where the <img> is laid out: the video frame, scaled to 640 wide
    side = image[:, 660:]
    assert stream.std() > 20  # a real picture, not the empty black box of a stream that never came
    assert (side > 150).any()  # the stats text (light on dark) was filled in by the page's script, under the CSP


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


# ---- tracking: zones, lines, track ids

DOOR = Zone("door", ((0.1, 0.3), (0.45, 0.3), (0.45, 0.9), (0.1, 0.9)), ("person",), 3)
GATE = Line("gate", (0.7, 0.05), (0.7, 0.45), (), "left")
TRACKING = SinkContext(device="cam1", board="x86", model="yolox-nano", source="synthetic", tracking=True,
                       zones=(DOOR,), lines=(GATE,))


def tracked_record(track_id) -> dict:
    return {"fps": 10.0, "latency_ms": {"infer": 12.0},
            "detections": [{"label": "person", "class_id": 0, "score": 0.83, "box": [300.0, 200.0, 380.0, 400.0],
                            "track_id": track_id}],
            "zones": {"door": {"person": 1}}, "lines": {"gate": {"person": {"in": 3, "out": 1}}}}


def test_zone_occupancy_and_line_crossings_in_metrics_and_stats():
    name = 'a "quoted"\\zone'  # allowed in a zone name; escaped in the label value
    sink = http_sink.from_config({"listen": "0"}, TRACKING)
    try:
        for k in range(3):
            sink.write({"frame": k, "detections": [], "zones": {"door": {"person": k, "car": 0}, name: {"person": 5}},
                        "lines": {"gate": {"person": {"in": 10 + k, "out": 4}}}}, None)
        sink.write({"frame": 3, "detections": []}, None)  # a record without counts keeps the last ones
        text = sink.metrics()
        _, _, body = get(f"http://127.0.0.1:{sink.address[1]}/stats.json")
    finally:
        sink.close()
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert all(SAMPLE.match(line) for line in samples), [s for s in samples if not SAMPLE.match(s)]
    assert [line for line in samples if "zone_occupancy" in line or "line_crossings" in line] == [
        'edge_yolox_zone_occupancy{zone="door",label="person"} 2',
        'edge_yolox_zone_occupancy{zone="door",label="car"} 0',
        'edge_yolox_zone_occupancy{zone="a \\"quoted\\"\\\\zone",label="person"} 5',
        'edge_yolox_line_crossings_total{line="gate",label="person",direction="in"} 12',
        'edge_yolox_line_crossings_total{line="gate",label="person",direction="out"} 4']
    assert "# TYPE edge_yolox_zone_occupancy gauge" in text and "# TYPE edge_yolox_line_crossings_total counter" in text
    stats = json.loads(body)
    assert stats["zones"] == {"door": {"person": 2, "car": 0}, name: {"person": 5}}
    assert stats["lines"] == {"gate": {"person": {"in": 12, "out": 4}}}


def test_preview_screenshot_shows_zones_lines_and_track_ids(tmp_path):
    """Headless Chromium renders the page of a sink fed a tracked detection: the zone's translucent fill is in
    the polygon on screen, and the label above the box is the tracked one (`#7 person 0.83`), not the plain one."""
    chromium = chromium_or_skip()
    frame = np.full((480, 640, 3), 90, np.uint8)
    sink = http_sink.from_config({"listen": "0", "quality": 95}, TRACKING)
    shot = tmp_path / "preview.png"
    try:
        with feeding(sink, tracked_record(7), [frame]):
            subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                            "--window-size=1000,520", "--virtual-time-budget=4000", f"--screenshot={shot}",
                            f"http://127.0.0.1:{sink.address[1]}/"], check=True, capture_output=True, timeout=120,
                           cwd=tmp_path)
    finally:
        sink.close()
    stream = cv2.imread(str(shot))[:480, :640].astype(np.float64)  # the <img>, at its own size
    fill = np.array(draw.region_color(0)) * draw.ZONE_ALPHA + 90 * (1 - draw.ZONE_ALPHA)
    assert np.abs(stream[300:400, 100:200].mean(axis=(0, 1)) - fill).max() < 6  # inside the door zone
    assert np.abs(stream[40:120, 100:200].mean(axis=(0, 1)) - 90).max() < 6  # above it: the plain frame
    trails = {7: [(340, 400)] * 2}
    renders = {tid: draw.annotate(frame, tracked_record(tid), (DOOR,), (GATE,), trails).astype(np.float64)
               for tid in (7, None)}
    band = (slice(180, 200), slice(300, 480))  # the label above the box
    diff = {tid: np.abs(stream[band] - render[band]).mean() for tid, render in renders.items()}
    assert diff[7] < 15 and diff[None] > 3 * diff[7], diff  # measured 11 and 59: JPEG blurs the saturated text


# ---- hostile data and hostile clients


def payload(name: str) -> str:
    """Markup that, if parsed as HTML, sets the title and requests /pwned-NAME from the server."""
    return (f"<img src=x onerror=\"document.title='pwned';fetch('/pwned-{name}')\">"
            f"<svg onload=\"fetch('/pwned-{name}')\">")


def test_hostile_names_render_as_text_and_run_nothing(tmp_path, caplog):
    chromium = chromium_or_skip()
    caplog.set_level("DEBUG", logger=http_sink.__name__)  # the server logs every request it gets
    ctx = SinkContext(device=payload("device"), board="x86", model=payload("model"), source=payload("source"))
    sink = http_sink.from_config({"listen": "0"}, ctx)
    record = {"fps": 5.0, "latency_ms": {"infer": 12.0},
              "detections": [{"label": payload("label"), "class_id": 0, "score": 0.9, "box": [0, 0, 9, 9]}]}
    try:
        with feeding(sink, record, [np.zeros((48, 64, 3), np.uint8)]):
            dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                                  "--dump-dom", f"http://127.0.0.1:{sink.address[1]}/"],
                                 check=True, capture_output=True, text=True, timeout=120, cwd=tmp_path).stdout
    finally:
        sink.close()
    requests = [r.getMessage() for r in caplog.records if '"GET /' in r.getMessage()]
    assert any("/preview.js" in r for r in requests) and any("/stats.json" in r for r in requests)
    assert not [r for r in requests if "/pwned" in r or "GET /x " in r], requests  # no handler ran, no <img> made
    assert "<title>edge-yolox</title>" in dom and 'src="x"' not in dom and "<svg" not in dom
    for name in ("model", "source", "label"):  # each shown whole, as text, in its own cell
        assert f"<td>{html.escape(payload(name), quote=False)}</td>" in dom
    assert f'<h1 id="title">edge-yolox · {html.escape(payload("device"), quote=False)}</h1>' in dom


def test_every_response_carries_a_strict_csp_and_the_page_has_nothing_inline():
    sink = http_sink.from_config({"listen": "0"}, CTX)
    try:
        base = f"http://127.0.0.1:{sink.address[1]}"
        _, _, page = get(base + "/", accept="text/html")
        assert b"<script src=" in page and not re.search(rb"<script(?! src=)|<style|\son[a-z]+=", page)
        for path, method in [("/", "GET"), ("/preview.js", "GET"), ("/preview.css", "GET"), ("/stats.json", "GET"),
                             ("/nope", "GET"), ("/", "POST")]:  # POST: the stdlib's own 501 page
            headers = response_headers(base + path, method)
            csp = headers["Content-Security-Policy"]
            assert "default-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp, path
            assert headers["X-Content-Type-Options"] == "nosniff", path
        assert response_headers(base + "/preview.js")["Content-Type"].startswith("text/javascript")
    finally:
        sink.close()


def test_connections_are_capped_and_idle_ones_closed():
    sink = http_sink.from_config({"listen": "0", "max_connections": 4, "idle_s": 3.0}, CTX)
    address = ("127.0.0.1", sink.address[1])
    baseline = threading.active_count()
    sockets = []
    try:
        kept_alive = socket.create_connection(address)  # served once, then idle on an HTTP/1.1 keep-alive
        sockets.append(kept_alive)
        kept_alive.sendall(b"GET /stats.json HTTP/1.1\r\nHost: x\r\n\r\n")
        assert kept_alive.recv(65536).startswith(b"HTTP/1.1 200")
        idle = [socket.create_connection(address) for _ in range(15)]  # connect, then send nothing
        sockets += idle
        time.sleep(0.3)
        assert threading.active_count() - baseline <= 4  # one thread per served connection, no more
        outcomes = [read_until_closed(s, 0.1) for s in idle]
        assert sum(o is None for o in outcomes) == 3  # the slots left: held open
        assert all(o.startswith(b"HTTP/1.1 503") for o in outcomes if o is not None)  # the rest: busy, at once
        started = time.monotonic()
        with socket.create_connection(address) as late:
            late.sendall(b"GET /stats.json HTTP/1.1\r\nHost: x\r\n\r\n")
            assert read_until_closed(late, 1.0) is not None and time.monotonic() - started < 1.0
        held = [kept_alive] + [s for s, o in zip(idle, outcomes) if o is None]
        assert all(read_until_closed(s, 4.0) is not None for s in held)  # closed by the server after idle_s
        assert get(f"http://127.0.0.1:{address[1]}/stats.json")[0] == 200  # slots free again
        assert until(lambda: threading.active_count() <= baseline, 3)
    finally:
        for s in sockets:
            s.close()
        sink.close()


def test_a_viewer_that_stops_reading_is_dropped():
    sink = http_sink.from_config({"listen": "0", "fps": 100.0, "idle_s": 0.5, "max_connections": 2}, CTX)
    noise = [np.random.default_rng(k).integers(0, 256, (240, 320, 3), np.uint8) for k in range(4)]  # ~60 kB JPEGs
    try:
        with feeding(sink, {"detections": []}, noise), socket.socket() as slow:
            slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # a small window: the server's sends block
            slow.connect(("127.0.0.1", sink.address[1]))
            slow.sendall(b"GET /stream.mjpg HTTP/1.1\r\nHost: x\r\n\r\n")
            assert until(lambda: sink.viewers == 1, 5)
            assert until(lambda: sink.viewers == 0, 15), "a viewer that reads nothing kept its connection"
            assert len(mjpeg_frames(f"http://127.0.0.1:{sink.address[1]}/stream.mjpg", 2)) == 2  # readers still served
    finally:
        sink.close()


def test_limits_are_validated():
    for bad in ({"max_connections": 0}, {"idle_s": 0}, {"idle_s": -1.0}):
        with pytest.raises(ConfigError, match="outputs.http: max_connections must be >= 1, idle_s > 0"):
            http_sink.from_config({"listen": "0", **bad}, CTX)
