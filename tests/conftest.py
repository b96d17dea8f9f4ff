"""Shared fixtures: the real data in ../shared/data and the system programs the tests start (skipped with a
message locally, a failure in CI)."""

from __future__ import annotations

import os
import shutil
import socket
import time
from pathlib import Path
from typing import NoReturn

import pytest

SHARED_DATA = Path(os.environ.get("EDGE_YOLOX_SHARED_DATA",
                                  Path(__file__).resolve().parents[1] / ".." / "shared" / "data"))


def missing(message: str) -> NoReturn:
    """Something a test needs is absent: a failure in CI (CI=true: scripts/test.sh provides it all), a skip
    with the message elsewhere."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


def shared_path(*parts: str) -> Path:
    """A file under ../shared/data (see `missing` when it is absent)."""
    path = SHARED_DATA.joinpath(*parts).resolve()
    if not path.exists():
        missing(f"real test data missing: {path} (see ../shared/data/README.md)")
    return path


def system_tool(*names: str, package: str, needed_for: str) -> str:
    """The path of the first of `names` on PATH, a program from Debian's `package` (see `missing`)."""
    path = next((p for p in map(shutil.which, names) if p), None)
    if path is None:
        missing(f"{names[0]} not installed (apt-get install {package}): needed {needed_for}")
    return path


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def until(condition, timeout: float = 20.0) -> bool:
    """Polls `condition` until it holds or `timeout` seconds pass (what a test waits for, never a fixed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)
    return condition()


@pytest.fixture(scope="session")
def coco_names() -> list[str]:
    return shared_path("models", "coco.names").read_text().split("\n")[:80]


@pytest.fixture(scope="session")
def nano_onnx_outputs():
    """Real YOLOX-Nano outputs: the official ONNX on dog.jpg and busstop.jpg, with each letterbox ratio."""
    import cv2
    import onnxruntime as ort

    from edge_yolox.preprocess import letterbox, to_nchw

    session = ort.InferenceSession(str(shared_path("models", "yolox_nano.onnx")), providers=["CPUExecutionProvider"])
    result = {}
    for name in ("dog.jpg", "busstop.jpg"):
        frame = cv2.imread(str(shared_path("images", name)))
        image, ratio = letterbox(frame, (416, 416))
        result[name] = (session.run(None, {"images": to_nchw(image)})[0], ratio, frame.shape[:2])
    return result


@pytest.fixture()
def broker(tmp_path):
    """A real mosquitto on 127.0.0.1 (tests/mqtt_helpers.py), killed after the test."""
    from mqtt_helpers import Broker  # here: mqtt_helpers imports this module

    b = Broker(tmp_path / "broker").start()
    yield b
    b.kill()


@pytest.fixture()
def subscriber(broker, request):
    """A subscriber to everything on `broker`; durable in tests named *outage*, whose session must survive a
    broker kill."""
    from mqtt_helpers import Subscriber

    s = Subscriber(broker, durable="outage" in request.node.name)
    yield s
    s.close()
