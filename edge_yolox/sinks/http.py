"""Live preview and metrics over HTTP (`--serve [HOST:]PORT`, off by default, 127.0.0.1 unless a host is given).

    /             a small page with the annotated MJPEG stream and live stats (MJPEG itself for non-browsers)
    /stream.mjpg  the annotated frames (edge_yolox.draw: boxes, track ids, trails, zones, lines) as
                  multipart/x-mixed-replace JPEGs
    /stats.json   the latest record summary (with the zones' occupancy and the lines' totals) and periodic stats
    /metrics      Prometheus text format: fps, latencies, detections per label, drops, queue depths, temperature,
                  zone occupancy and line crossings
    /healthz      200 while frames flow, 503 when none came for `stale_s` seconds

`write` only keeps a reference to the newest frame. An encoder thread annotates and JPEG-encodes it, at most
`fps` times a second and only while someone watches, so the preview costs inference nothing when unused.

Class names and source paths come from files and flags: the page shows them as text (no inline script, a
strict Content-Security-Policy). At most `max_connections` clients are served at once (more get a 503), and
a client that sends or takes nothing for `idle_s` seconds is disconnected.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Optional

import numpy as np

from edge_yolox.draw import Trails, annotate
from edge_yolox.errors import ConfigError
from edge_yolox.schema import options
from edge_yolox.sinks.base import Sink, SinkContext

NAME = "http"
DEFAULTS = {"listen": "", "fps": 10.0, "quality": 75, "width": 0, "stale_s": 10.0, "max_connections": 16,
            "idle_s": 10.0}
BOUNDARY = "edge-yolox-frame"
# Scripts, styles, images and fetches from this server only; nothing inline, no plugins, no framing.
SECURITY_HEADERS = {"Content-Security-Policy": "default-src 'self'; object-src 'none'; base-uri 'none'; "
                                               "form-action 'none'; frame-ancestors 'none'",
                    "X-Content-Type-Options": "nosniff"}
BUSY = b"HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    parser.add_argument("--serve", metavar="[HOST:]PORT",
                        help="live preview, /metrics and /healthz over HTTP (127.0.0.1 unless HOST is given)")


def section_from_args(args) -> Optional[dict]:
    return {"listen": args.serve} if getattr(args, "serve", None) else None


def parse_listen(text: str) -> tuple[str, int]:
    host, _, port = str(text).rpartition(":")
    host = host.strip("[]") or "127.0.0.1"  # localhost unless asked: the preview shows the camera
    if not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ConfigError(f"outputs.{NAME}.listen: invalid value {text!r}; allowed: [HOST:]PORT, e.g. 0.0.0.0:8080")
    return host, int(port)


def from_config(section: dict, ctx: SinkContext) -> HttpSink:
    opts = options(section, f"outputs.{NAME}", DEFAULTS)
    host, port = parse_listen(opts["listen"])
    if opts["fps"] <= 0 or not 1 <= opts["quality"] <= 100 or opts["width"] < 0:
        raise ConfigError(f"outputs.{NAME}: fps must be > 0, quality 1-100, width >= 0")
    if opts["max_connections"] < 1 or not opts["idle_s"] > 0:
        raise ConfigError(f"outputs.{NAME}: max_connections must be >= 1, idle_s > 0")
    return HttpSink(host, port, ctx, float(opts["fps"]), int(opts["quality"]), int(opts["width"]),
                    float(opts["stale_s"]), int(opts["max_connections"]), float(opts["idle_s"]))


class HttpSink(Sink):
    name = NAME
    wants_frames = True

    def __init__(self, host: str, port: int, ctx: SinkContext, fps: float = 10.0, quality: int = 75,
                 width: int = 0, stale_s: float = 10.0, max_connections: int = 16, idle_s: float = 10.0):
        self.ctx, self.interval, self.quality, self.width, self.stale_s = ctx, 1.0 / fps, quality, width, stale_s
        self.cond = threading.Condition()
        self.closing = False
        self.stopped = threading.Event()  # wakes the encoder's frame-rate pause at shutdown
        self.latest: Optional[tuple[dict, np.ndarray]] = None
        self.seq = 0  # frames written
        self.jpeg, self.jpeg_seq = b"", 0
        self.viewers = 0
        self.last_write: Optional[float] = None
        self.last_stats: dict[str, Any] = {}
        self.detections: Counter[str] = Counter()
        self.counts: dict[str, dict] = {}  # the latest record's "zones" and "lines"
        self.trails = Trails(anchor=ctx.anchor)  # updated on every record, drawn on the encoded ones
        handler = type("Handler", (Handler,), {"sink": self, "timeout": idle_s})  # timeout: per socket operation
        try:
            self.server = PreviewServer((host, port), handler, max_connections)
        except OSError as exc:
            raise ConfigError(f"outputs.{NAME}.listen: cannot listen on {host}:{port} ({exc.strerror})") from None
        self.address = self.server.server_address[:2]
        self.threads = [threading.Thread(target=self.server.serve_forever, name="http-server", daemon=True),
                        threading.Thread(target=self._encoder, name="http-encoder", daemon=True)]
        for thread in self.threads:
            thread.start()
        log.info("preview on http://%s:%d/ (metrics /metrics, health /healthz)", *self.address)

    # ---- inference thread: keep a reference, count, nothing else

    def write(self, record: dict[str, Any], frame: Optional[np.ndarray] = None) -> None:
        with self.cond:
            self.seq += 1
            self.last_write = time.monotonic()
            self.detections.update(d["label"] for d in record["detections"])
            self.counts.update((k, record[k]) for k in ("zones", "lines") if k in record)
            self.trails.update(record)
            self.latest = (record, frame) if frame is not None else self.latest
            if self.viewers:
                self.cond.notify_all()

    def stats(self, stats: dict[str, Any]) -> None:
        with self.cond:
            self.last_stats = stats

    # ---- encoder thread

    def _encoder(self) -> None:
        import cv2

        while True:
            with self.cond:
                while not self.closing and not (self.viewers and self.latest and self.seq != self.jpeg_seq):
                    self.cond.wait()
                if self.closing:
                    return
                (record, frame), seq, trails = self.latest, self.seq, self.trails.paths()
            image = annotate(frame, record, self.ctx.zones, self.ctx.lines, trails)
            if self.width and image.shape[1] > self.width:
                scale = self.width / image.shape[1]
                image = cv2.resize(image, (self.width, round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA)
            ok, jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            with self.cond:
                if ok:
                    self.jpeg, self.jpeg_seq = jpeg.tobytes(), seq
                    self.cond.notify_all()
            self.stopped.wait(self.interval)  # the preview frame-rate cap

    def next_jpeg(self, after: int, timeout: float = 1.0) -> tuple[bytes, int]:
        """The newest JPEG newer than `after` (waits up to `timeout`); (b"", after) when none or closing."""
        with self.cond:
            self.cond.wait_for(lambda: self.closing or (self.jpeg and self.jpeg_seq != after), timeout)
            if self.closing or self.jpeg_seq == after:
                return b"", after
            return self.jpeg, self.jpeg_seq

    def watching(self, delta: int) -> None:
        with self.cond:
            self.viewers += delta
            self.cond.notify_all()

    # ---- views

    def health(self) -> dict[str, Any]:
        """Whether frames flow: status "ok", "stale" (none for stale_s) or "starting" (none yet)."""
        with self.cond:
            age = None if self.last_write is None else time.monotonic() - self.last_write
        if age is None:
            return {"status": "starting", "detail": "no frame processed yet"}
        return {"status": "ok" if age <= self.stale_s else "stale", "last_frame_age_s": round(age, 2),
                "frames": self.seq}

    def snapshot(self) -> dict[str, Any]:
        with self.cond:
            record = dict(self.latest[0]) if self.latest else {}
            return {"device": self.ctx.device, "board": self.ctx.board, "model": self.ctx.model,
                    "source": self.ctx.source, "frames": self.seq, "viewers": self.viewers,
                    "last": {k: record[k] for k in ("frame", "fps", "latency_ms", "detections") if k in record},
                    "detections_total": dict(self.detections), "stats": self.last_stats,
                    "zones": self.counts.get("zones", {}), "lines": self.counts.get("lines", {})}

    def metrics(self) -> str:
        snap = self.snapshot()
        stats, last = snap["stats"], snap["last"]
        out: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[dict, Any]]) -> None:
            samples = [(labels, value) for labels, value in samples if isinstance(value, (int, float))]
            if samples:
                out.append(f"# HELP edge_yolox_{name} {help_text}\n# TYPE edge_yolox_{name} {kind}")
                out.extend(f"edge_yolox_{name}{_labels(labels)} {float(value):g}" for labels, value in samples)

        latency = stats.get("latency_ms") or last.get("latency_ms") or {}
        outputs = stats.get("outputs", {})
        metric("frames_total", "counter", "Frames processed.", [({}, snap["frames"])])
        metric("fps", "gauge", "Frames per second (running).", [({}, last.get("fps"))])
        metric("latency_ms", "gauge", "Stage latency, median over the last stats period (ms).",
               [({"stage": k}, v) for k, v in latency.items()])
        metric("detections_total", "counter", "Detections per label since start.",
               [({"label": k}, v) for k, v in sorted(snap["detections_total"].items())])
        metric("dropped_frames_total", "counter", "Frames the source dropped (stale or behind).",
               [({}, stats.get("dropped"))])
        metric("source_reconnects_total", "counter", "Times the source reconnected.", [({}, stats.get("reconnects"))])
        metric("output_queue_depth", "gauge", "Messages waiting in an output's queue.",
               [({"output": k}, v.get("queued")) for k, v in outputs.items()])
        metric("output_dropped_total", "counter", "Messages an output dropped (queue full, timeouts).",
               [({"output": k}, v.get("dropped")) for k, v in outputs.items()])
        metric("cpu_temperature_celsius", "gauge", "Hottest CPU thermal zone.", [({}, stats.get("cpu_temp_c"))])
        metric("throttled", "gauge", "Board throttling flags (1 = active now).",
               [({"flag": k}, int(v)) for k, v in stats.get("throttled", {}).items() if isinstance(v, bool)])
        metric("uptime_seconds", "gauge", "Seconds since the run started.", [({}, stats.get("uptime_s"))])
        metric("preview_viewers", "gauge", "Open preview streams.", [({}, snap["viewers"])])
        metric("zone_occupancy", "gauge", "Tracked objects inside a zone, per label.",
               [({"zone": zone, "label": label}, n) for zone, labels in snap["zones"].items()
                for label, n in labels.items()])
        metric("line_crossings_total", "counter", "Objects that crossed a line, per label and direction (totals "
               "since the line's state file began).",
               [({"line": line, "label": label, "direction": direction}, totals.get(direction))
                for line, labels in snap["lines"].items() for label, totals in labels.items()
                for direction in ("in", "out")])
        return "\n".join(out) + "\n"

    def close(self) -> None:
        with self.cond:
            self.closing = True
            self.cond.notify_all()
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()
        for thread in self.threads:
            thread.join(timeout=2)


def _labels(labels: dict[str, Any]) -> str:
    def escape(value: Any) -> str:
        return str(value).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in labels.items()) + "}" if labels else ""


class PreviewServer(ThreadingHTTPServer):
    """One thread per connection, at most `max_connections` of them: beyond that a client gets a 503 at once."""

    daemon_threads = True
    request_queue_size = 64  # a burst beyond the cap is answered 503 at once, not left to the kernel's SYN retries

    def __init__(self, address: tuple[str, int], handler: type, max_connections: int):
        self.slots = threading.BoundedSemaphore(max_connections)
        super().__init__(address, handler)

    def process_request(self, request: socket.socket, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self._refuse(request)
            return
        try:
            super().process_request(request, client_address)  # starts the connection's thread
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: socket.socket, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()

    def _refuse(self, request: socket.socket) -> None:
        try:
            request.setblocking(False)  # a fresh socket's send buffer is empty: this never waits
            request.send(BUSY)
        except OSError:
            pass
        self.shutdown_request(request)


class Handler(BaseHTTPRequestHandler):
    sink: HttpSink  # set on the per-sink subclass
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        path = self.path.split("?", 1)[0]
        if path == "/" and "text/html" in self.headers.get("Accept", ""):
            self._send(200, "text/html; charset=utf-8", PAGE.encode())
        elif path in ASSETS:
            self._send(200, *ASSETS[path])
        elif path in ("/", "/stream.mjpg"):
            self._stream()
        elif path == "/stats.json":
            self._send(200, "application/json", json.dumps(self.sink.snapshot()).encode())
        elif path == "/metrics":
            self._send(200, "text/plain; version=0.0.4; charset=utf-8", self.sink.metrics().encode())
        elif path == "/healthz":
            body = self.sink.health()
            self._send(200 if body["status"] == "ok" else 503, "application/json", json.dumps(body).encode())
        else:
            self._send(404, "text/plain", b"not found\n")

    def end_headers(self) -> None:  # every response, the stdlib's error pages (400, 501) included
        for name, value in SECURITY_HEADERS.items():
            self.send_header(name, value)
        super().end_headers()

    def _start(self, code: int, kind: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", kind)
        self.send_header("Cache-Control", "no-store")

    def _send(self, code: int, kind: str, body: bytes) -> None:
        self._start(code, kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _stream(self) -> None:
        self._start(200, f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        self.sink.watching(+1)
        seq = 0
        try:
            while not self.sink.closing:
                jpeg, seq = self.sink.next_jpeg(seq)
                if jpeg:
                    self.wfile.write(f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}\r\n\r\n"
                                     .encode() + jpeg + b"\r\n")
                    self.wfile.flush()
        except OSError:
            pass  # the viewer went away, or took no bytes for idle_s (a send timeout)
        finally:
            self.sink.watching(-1)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (signature of http.server)
        log.debug("%s " + format, self.address_string(), *args)


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>edge-yolox</title><link rel="stylesheet" href="preview.css"><script src="preview.js" defer></script></head>
<body><img id="stream" alt="live preview" width="640" height="480">
<div id="side"><h1 id="title">edge-yolox</h1><table id="stats"></table></div></body></html>
"""

STYLE = """body { margin: 0; font: 14px system-ui, sans-serif; background: #111; color: #ddd;
       display: flex; flex-wrap: wrap; }
img { max-width: 100%; height: auto; background: #000; }
#side { padding: 12px 16px; flex: 0 1 320px; }
h1 { font-size: 16px; margin: 0 0 8px; } table { width: 100%; }
td { padding: 2px 10px 2px 0; white-space: nowrap; }
td + td { text-align: right; white-space: normal; word-break: break-all; }
.ok { color: #6c6; } .bad { color: #e66; }
"""

# The table is built with textContent only: names and paths in stats.json are data, never markup.
SCRIPT = """const $ = (id) => document.getElementById(id);
const fixed = (v, digits) => (typeof v === "number" ? v.toFixed(digits) : String(v ?? "-"));
function row(rows, key, value, cls) {
  const tr = document.createElement("tr"), name = document.createElement("td"), cell = document.createElement("td");
  name.textContent = key;
  cell.textContent = value ?? "";
  if (cls) cell.className = cls;
  tr.append(name, cell);
  rows.push(tr);
}
async function refresh() {
  try {
    const s = await (await fetch("stats.json", {cache: "no-store"})).json();
    const last = s.last || {}, lat = last.latency_ms || {}, st = s.stats || {}, rows = [];
    $("title").textContent = `edge-yolox · ${s.device}`;
    row(rows, "board", s.board); row(rows, "model", s.model); row(rows, "source", s.source);
    row(rows, "fps", fixed(last.fps ?? 0, 1), "ok"); row(rows, "frames", s.frames);
    for (const k in lat) row(rows, `${k} ms`, fixed(lat[k], 1));
    if (st.cpu_temp_c !== undefined) row(rows, "CPU °C", st.cpu_temp_c);
    if (st.dropped !== undefined) row(rows, "dropped", st.dropped, st.dropped ? "bad" : "");
    for (const [k, v] of Object.entries(st.outputs || {}))
      if (v.queued !== undefined) row(rows, `${k} queue`, v.queued);
    for (const [zone, labels] of Object.entries(s.zones || {}))
      for (const [label, n] of Object.entries(labels)) row(rows, `${zone} · ${label}`, n);
    for (const [line, labels] of Object.entries(s.lines || {}))
      for (const [label, t] of Object.entries(labels)) row(rows, `${line} · ${label}`, `in ${t.in} · out ${t.out}`);
    for (const d of last.detections || [])
      row(rows, d.track_id == null ? d.label : `#${d.track_id} ${d.label}`, fixed(d.score, 2));
    $("stats").replaceChildren(...rows);
  } catch (e) { $("title").textContent = "edge-yolox · disconnected"; }
}
// The stream starts after load, so the page (and a screenshot of it) never waits on the endless response.
addEventListener("load", () => { $("stream").src = "stream.mjpg"; });
refresh(); setInterval(refresh, 1000);
"""

ASSETS = {"/preview.js": ("text/javascript; charset=utf-8", SCRIPT.encode()),
          "/preview.css": ("text/css; charset=utf-8", STYLE.encode())}
