"""`edge-yolox doctor`: what works on this machine and, where something does not, why."""

from __future__ import annotations

import importlib
import importlib.util
import platform
from pathlib import Path

from edge_yolox import __version__, telemetry
from edge_yolox.backends import available
from edge_yolox.config import detect_board

Row = tuple[str, str, str]  # (name, OK/WARN/FAIL/--, detail)


def _version(module: str) -> str:
    try:
        return str(getattr(importlib.import_module(module), "__version__", "installed"))
    except Exception as exc:  # a broken install is exactly what doctor should report
        return f"import failed: {exc}"


def _optional(module: str, why: str, hint: str) -> Row:
    if importlib.util.find_spec(module) is None:
        return module, "--", f"not installed ({why}; {hint})"
    return module, "OK", _version(module)


def core() -> list[Row]:
    rows: list[Row] = [("edge-yolox", "OK", f"{__version__} on Python {platform.python_version()} "
                                            f"({platform.machine()})"),
                       ("board", "OK", f"{detect_board()} (detected; override with --board)")]
    try:
        importlib.import_module("edge_yolox._core")
        rows.append(("C++ core", "OK", "edge_yolox._core loaded"))
    except ImportError as exc:
        rows.append(("C++ core", "FAIL", f"{exc} (reinstall edge-yolox)"))
    import cv2

    build = cv2.getBuildInformation()
    videoio = [name for name in ("FFMPEG", "GStreamer", "v4l/v4l2")
               if any(line.strip().startswith(name + ":") and "YES" in line for line in build.splitlines())]
    rows.append(("opencv", "OK", f"{cv2.__version__}, video I/O: {', '.join(videoio) or 'none'}"))
    return rows


def backends() -> list[Row]:
    rows = []
    for name, reason in available().items():
        module = {"ncnn": "ncnn", "onnxruntime": "onnxruntime", "tflite": "ai_edge_litert"}[name]
        if reason is None and name == "tflite" and importlib.util.find_spec(module) is None:
            module = "tflite_runtime"
        extra = "onnx" if name == "onnxruntime" else name
        rows.append((name, "OK", _version(module)) if reason is None
                    else (name, "--", f"{reason}; pip install 'edge-yolox[{extra}]'"))
    if all(r[1] != "OK" for r in rows):
        rows.append(("any backend", "FAIL", "no inference backend installed: nothing can run"))
    return rows


def cameras() -> list[Row]:
    from edge_yolox.sources.opencv import has_gstreamer

    nodes = sorted(str(p) for p in Path("/dev").glob("video*"))
    rows = [("V4L2 cameras", "OK" if nodes else "--", ", ".join(nodes) or "no /dev/video* (no USB camera)")]
    rows.append(_optional("picamera2", "Pi CSI cameras", "on Pi OS: sudo apt install python3-picamera2"))
    rows.append(("GStreamer in OpenCV", "OK" if has_gstreamer() else "--",
                 "yes: Jetson CSI (nvargus) and pipelines work" if has_gstreamer()
                 else "no: Jetson CSI needs the system OpenCV (JetPack python3-opencv)"))
    return rows


def extras() -> list[Row]:
    rows = [_optional("paho", "MQTT output", "pip install 'edge-yolox[mqtt]'"),
            _optional("serial", "serial output", "pip install 'edge-yolox[serial]'")]
    spec = importlib.util.find_spec("torch")  # found, never imported: the runtime must not load torch
    rows.append(("torch (training)", "OK" if spec else "--",
                 "installed" if spec else "not installed (train/export need pip install 'edge-yolox[train]')"))
    health = telemetry.read()
    rows.append(("telemetry", "OK" if health else "--", ", ".join(f"{k}={v}" for k, v in health.items())
                 or "no CPU temperature sensor readable"))
    return rows


def report() -> dict[str, list[Row]]:
    return {"system": core(), "backends": backends(), "cameras": cameras(), "extras": extras()}


