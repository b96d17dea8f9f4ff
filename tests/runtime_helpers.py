"""Shared by the runtime tests: the real models/video, the CLI as a user runs it, detection matching."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from conftest import shared_path, system_tool, until

ROOT = Path(__file__).resolve().parents[1]


def onnx_model() -> Path:
    return shared_path("models", "yolox_nano.onnx")


def ncnn_model() -> Path:
    return shared_path("models", "ncnn_yolox_nano", "yoloxN.param")


def video() -> Path:
    return shared_path("video", "one-by-one-person-detection.mp4")


def cli(*args: str, timeout: float = 120, env: dict | None = None, **kwargs) -> subprocess.CompletedProcess:
    """`edge-yolox ARGS` in a fresh interpreter, as a user would run it."""
    return subprocess.run([sys.executable, "-m", "edge_yolox.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env={**os.environ, **(env or {})}, **kwargs)


def records(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.strip()]


def iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def unmatched(dets_a: list[dict], dets_b: list[dict], min_score: float, min_iou: float = 0.8,
              max_score_diff: float = 0.1, max_shift: float = 0.0) -> list[dict]:
    """Detections of A scoring >= min_score with no same-class B detection whose score is within max_score_diff
    and whose box is at IoU >= min_iou or has every edge within max_shift pixels (a small box's IoU falls fast
    with a sub-pixel edge; detections near the threshold may legitimately be on one side only)."""
    def same_box(a, b) -> bool:
        return iou(a, b) >= min_iou or max(abs(u - v) for u, v in zip(a, b)) <= max_shift

    missing = []
    for a in dets_a:
        if a["score"] < min_score:
            continue
        if not any(b["class_id"] == a["class_id"] and same_box(a["box"], b["box"])
                   and abs(a["score"] - b["score"]) <= max_score_diff for b in dets_b):
            missing.append(a)
    return missing


def as_dicts(dets: np.ndarray) -> list[dict]:
    return [{"class_id": int(c), "score": float(s), "box": [float(v) for v in box]} for *box, s, c in dets]


class MjpegServer:
    """A live HTTP MJPEG stream of the real video, served by ffmpeg on 127.0.0.1 (one client at a time,
    as an IP camera); `stop()` kills it like a camera losing power, `start()` brings it back."""

    def __init__(self, port: int):
        self.port = port
        self.url = f"http://127.0.0.1:{port}/stream.mjpg"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout: float = 30.0) -> MjpegServer:
        """Returns once ffmpeg listens: a fixed sleep was not enough on a loaded CI machine (the client was
        refused), and a probing connection would take ffmpeg's one client slot, so ask the kernel instead."""
        ffmpeg = system_tool("ffmpeg", package="ffmpeg", needed_for="for the live-stream tests")
        self.proc = subprocess.Popen(
            [ffmpeg, "-loglevel", "error", "-re", "-stream_loop", "-1", "-i", str(video()), "-vf", "scale=384:216",
             "-q:v", "8", "-f", "mpjpeg", "-listen", "1", self.url], stdin=subprocess.DEVNULL)
        assert until(lambda: listening(self.port) or self.proc.poll() is not None, timeout), \
            f"ffmpeg not listening on port {self.port} after {timeout:.0f} s"
        assert self.proc.poll() is None, f"ffmpeg exited with {self.proc.returncode} before listening"
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def listening(port: int) -> bool:
    """Whether a socket listens on 127.0.0.1:port (Linux's /proc/net/tcp: local address in hex, state 0A = LISTEN)."""
    local = f"0100007F:{port:04X}"
    with open("/proc/net/tcp") as table:
        return any(f[1] == local and f[3] == "0A" for f in (line.split() for line in list(table)[1:]))
