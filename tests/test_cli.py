"""The `edge-yolox` command as a user runs it: one-line errors with exit 2 and no traceback; boards,
doctor, bench."""

from __future__ import annotations

import importlib.util
import shutil

import pytest
from conftest import shared_path
from runtime_helpers import cli, onnx_model, video


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("edge-yolox: error: "), result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def run_args(*extra: str) -> list[str]:
    return ["-q", "run", "--board", "x86", "--model", str(onnx_model()), *extra]


def test_unknown_board():
    assert_one_line_error(cli(*run_args("--board", "rpi3", "--source", "synthetic")), "unknown board 'rpi3'", "rpi4")


def test_bad_config_file(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text("detect:\n  conf: high\n")
    assert_one_line_error(cli(*run_args("--config", config, "--source", "synthetic")),
                          str(config), "detect.conf", "a finite number")


def test_unknown_output_section(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text("outputs:\n  telegram: {}\n")
    assert_one_line_error(cli(*run_args("--config", config, "--source", "synthetic", "--limit", "1")),
                          "outputs.telegram", "stdout")


def test_missing_camera_index_fails_fast():
    result = cli(*run_args("--camera", "0"), timeout=60)
    assert_one_line_error(result, "camera0", "/dev/video0")


@pytest.mark.parametrize("content", [b"", b"\x08\x01garbage-not-protobuf" * 50])
def test_corrupt_model(tmp_path, content):
    model = tmp_path / "broken.onnx"
    model.write_bytes(content)
    result = cli("-q", "run", "--board", "x86", "--model", model, "--source", "synthetic", "--limit", "1")
    assert_one_line_error(result, str(model))


def test_truncated_ncnn_weights(tmp_path):
    src = shared_path("models", "ncnn_yolox_nano", "yoloxN.param")
    shutil.copy(src, tmp_path / "m.param")
    (tmp_path / "m.bin").write_bytes(src.with_suffix(".bin").read_bytes()[:100000])
    result = cli("-q", "run", "--board", "x86", "--model", tmp_path / "m.param", "--source", "synthetic")
    assert_one_line_error(result, "m.bin")


def test_missing_model_and_source(tmp_path):
    assert_one_line_error(cli("-q", "run", "--board", "x86", "--model", tmp_path / "x.onnx", "--source", "synthetic"),
                          "model not found")
    assert_one_line_error(cli(*run_args("--source", tmp_path / "clip.mp4")), "no such file")


def test_no_model_anywhere(tmp_path):
    result = cli("-q", "run", "--board", "x86", "--source", "synthetic", env={"HOME": str(tmp_path)})
    assert_one_line_error(result, "model.path", "--model")


def test_bad_flag_value():
    assert_one_line_error(cli(*run_args("--source", "synthetic", "--conf", "7")), "command line", "detect.conf")


def test_boards_lists_every_board():
    result = cli("boards")
    assert result.returncode == 0
    for name in ("rpi4", "rpi5", "rpi-zero2w", "jetson-nano", "jetson-orin-nano", "x86"):
        assert f"\n{name} " in "\n" + result.stdout


def test_doctor_reports_backends_and_cameras():
    result = cli("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    for word in ("onnxruntime", "ncnn", "tflite", "V4L2 cameras", "picamera2", "C++ core"):
        assert word in result.stdout


def test_bench_prints_a_table():
    result = cli("-q", "bench", "--model", onnx_model(), "--board", "x86", "--source", video(), "--frames", "5",
                 "--warmup", "1", "--provider", "cpu")
    assert result.returncode == 0, result.stderr
    assert "onnxruntime on CPUExecutionProvider" in result.stdout  # where it ran, from the session itself
    for row in ("pure inference", "pipeline pre", "pipeline infer", "pipeline post", "end-to-end", "overhead"):
        assert row in result.stdout


def test_training_commands_are_forwarded():
    result = cli("export", "--help")
    if importlib.util.find_spec("edge_yolox.train.cli") is None:
        assert_one_line_error(result, "export", "[train]")
    else:
        assert result.returncode == 0 and "usage" in result.stdout.lower()


@pytest.mark.parametrize("command", [["boards"], ["run", "--demo"], ["doctor"], ["export", "--help"]])
def test_without_opencv_every_command_says_how_to_install_it(tmp_path, command):
    """ARM Linux takes the system's OpenCV (no pip requirement there): its absence is one line, not a traceback."""
    (tmp_path / "cv2.py").write_text("raise ModuleNotFoundError(\"No module named 'cv2'\", name='cv2')\n")
    result = cli(*command, env={"PYTHONPATH": str(tmp_path)})
    assert_one_line_error(result, "No module named 'cv2'", "sudo apt install python3-opencv",
                          "pip install 'edge-yolox[opencv]'")
