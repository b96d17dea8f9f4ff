"""`edge-yolox doctor`: what works on this machine and, where something does not, why."""

from __future__ import annotations

import importlib
import importlib.metadata
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
    import numpy

    rows.append(("numpy", "OK", f"{numpy.__version__} ({_where(numpy)})"))
    import cv2

    build = cv2.getBuildInformation()
    videoio = [name for name in ("FFMPEG", "GStreamer", "v4l/v4l2")
               if any(line.strip().startswith(name + ":") and "YES" in line for line in build.splitlines())]
    rows.append(("opencv", "OK", f"{cv2.__version__}, video I/O: {', '.join(videoio) or 'none'} ({_where(cv2)})"))
    return rows


def _where(module) -> str:
    """Where a module was imported from: the system's (apt) packages or the venv's (pip)."""
    path = Path(module.__file__)
    folder = path.parent.parent if path.stem == "__init__" else path.parent
    return f"{'system, ' if folder.name == 'dist-packages' else ''}{folder}"


def backends() -> list[Row]:
    rows = []
    for name, reason in available().items():
        module = {"ncnn": "ncnn", "onnxruntime": "onnxruntime", "tflite": "ai_edge_litert",
                  "openvino": "openvino"}[name]
        if reason is None and name == "tflite" and importlib.util.find_spec(module) is None:
            module = "tflite_runtime"
        extra = "onnx" if name == "onnxruntime" else name
        rows.append((name, "OK", _version(module)) if reason is None
                    else (name, "--", f"{reason}; pip install 'edge-yolox[{extra}]'"))
    if all(r[1] != "OK" for r in rows):
        rows.append(("any backend", "FAIL", "no inference backend installed: nothing can run"))
    return rows


def accelerators() -> list[Row]:
    """The Vulkan devices ncnn can use (`--gpu N`); none is a plain "--": the CPU path always works."""
    if importlib.util.find_spec("ncnn") is None:
        return [("Vulkan (ncnn)", "--", "ncnn not installed")]
    from edge_yolox.backends.vulkan import devices

    found = devices(importlib.import_module("ncnn"))
    if not found:
        return [("Vulkan (ncnn)", "--", "no device (no GPU, or no Vulkan driver: e.g. sudo apt install "
                                        "mesa-vulkan-drivers); ncnn runs on the CPU")]
    return [("Vulkan (ncnn)", "OK", d.summary()) for d in found]


def cameras() -> list[Row]:
    from edge_yolox.sources.opencv import has_gstreamer

    nodes = sorted(str(p) for p in Path("/dev").glob("video*"))
    rows = [("V4L2 cameras", "OK" if nodes else "--", ", ".join(nodes) or "no /dev/video* (no USB camera)"),
            picamera2()]
    rows.append(("GStreamer in OpenCV", "OK" if has_gstreamer() else "--",
                 "yes: Jetson CSI (nvargus) and pipelines work" if has_gstreamer()
                 else "no: the Jetson CSI camera (nvargus) needs JetPack 6's own OpenCV (README: Jetson)"))
    return rows


def picamera2() -> Row:
    """Whether picamera2 imports here, and if not, the one line that says why and how to fix it."""
    from edge_yolox.errors import SourceError
    from edge_yolox.sources.csi import INSTALL, has_capture_timeout, import_picamera2

    if importlib.util.find_spec("picamera2") is None:
        return "picamera2", "--", f"not installed (Pi CSI cameras; {INSTALL})"
    try:
        camera_class = import_picamera2()
    except SourceError as exc:
        return "picamera2", "FAIL", str(exc)
    version = _distribution_version("picamera2")
    if not has_capture_timeout(camera_class):
        return "picamera2", "WARN", (f"{version}: older than 0.3.20, no capture timeout: a stalled camera is noticed "
                                     f"only by the service watchdog (sudo apt install --only-upgrade "
                                     f"python3-picamera2)")
    return "picamera2", "OK", version


def _distribution_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "installed"


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
    return {"system": core(), "backends": backends(), "accelerators": accelerators(), "cameras": cameras(),
            "extras": extras()}


