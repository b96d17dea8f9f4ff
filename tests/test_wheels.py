"""Release wheels (scripts/build-wheels.sh): the aarch64 wheel on an emulated ARM Debian, the x86_64 wheel in a
fresh venv. Minutes of CPU and network to PyPI/Debian the first time, so they run only when asked:
EDGE_YOLOX_TEST_ARM=1 pytest tests/test_wheels.py   (.ci/run calls the scripts directly instead).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import shared_path

ROOT = Path(__file__).resolve().parents[1]
PY = f"{sys.version_info.major}.{sys.version_info.minor}"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.environ.get("EDGE_YOLOX_TEST_ARM") != "1",
                       reason="wheel builds and emulation take minutes: set EDGE_YOLOX_TEST_ARM=1"),
]


def build_wheel(arch: str, version: str, out: Path) -> Path:
    subprocess.run([str(ROOT / "scripts" / "build-wheels.sh"), "--arch", arch, "--python", version, "--out", str(out)],
                   check=True)
    (wheel,) = out.glob(f"edge_yolox-*-cp{version.replace('.', '')}-*{arch}*.whl")
    assert f"manylinux2014_{arch}" in wheel.name  # auditwheel found nothing newer than glibc 2.17
    return wheel


def test_aarch64_wheel_on_emulated_debian(tmp_path):
    if shutil.which("qemu-aarch64-static") is None or shutil.which("debootstrap") is None:
        pytest.skip("needs qemu-user-static and debootstrap (apt-get install qemu-user-static debootstrap)")
    shared_path("models", "ncnn_yolox_nano", "yoloxN.param")
    wheel = build_wheel("aarch64", "3.11", tmp_path)  # bookworm's Python
    env = dict(os.environ, HOST_PYTHON=sys.executable)
    result = subprocess.run([str(ROOT / "scripts" / "test-aarch64.sh"), "--wheel", str(wheel)], env=env,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "on aarch64" in result.stdout and result.stdout.rstrip().endswith("OK")


def test_x86_64_wheel_in_fresh_venv(tmp_path):
    model = shared_path("models", "ncnn_yolox_nano")
    image = shared_path("images", "dog.jpg")
    recording = tmp_path / "dog.npz"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "cross" / "check_wheel.py"), "record", str(recording),
                    str(image), str(shared_path("models", "yolox_nano.onnx"))], check=True)
    wheel = build_wheel("x86_64", PY, tmp_path / "wheelhouse")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "-q", f"{wheel}[ncnn]"], check=True)
    result = subprocess.run(
        [str(venv / "bin" / "python"), str(ROOT / "scripts" / "cross" / "check_wheel.py"), "check", str(recording),
         "--arch", "x86_64", "--cli", str(venv / "bin" / "edge-yolox"), "--ncnn-model", str(model),
         "--image", str(image)],
        env=dict(os.environ, PYTHONPATH=str(ROOT / "tests")), cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"core {venv}/lib/python{PY}/site-packages/edge_yolox/_core.cpython-{PY.replace('.', '')}-x86_64" \
        in result.stdout
