"""Config: board < user YAML < flags, and every bad value named by file, key and what is allowed."""

from __future__ import annotations

import pytest

from edge_yolox.config import board_names, load_config
from edge_yolox.errors import ConfigError

BOARDS = ["jetson-nano", "jetson-orin-nano", "rpi-zero2w", "rpi4", "rpi5", "x86"]


def test_all_boards_present_and_valid():
    assert board_names() == BOARDS
    for name in BOARDS:
        config = load_config(name)
        assert config.board == name and config.description
        assert config.model.backends and config.model.threads >= 1


def test_every_board_value_is_commented():
    """Each board YAML explains its choices: a comment in every section."""
    from importlib import resources

    for name in BOARDS:
        text = resources.files("edge_yolox.boards").joinpath(f"{name}.yaml").read_text()
        sections = [line for line in text.splitlines() if line and not line[0].isspace() and line.endswith(":")]
        assert text.count("#") >= len(sections), name


def test_precedence_board_then_file_then_flags(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("model:\n  threads: 3\ndetect:\n  conf: 0.5\n  classes: person\n")
    config = load_config("rpi4", str(user), {"detect": {"conf": 0.6}})
    assert config.model.threads == 3  # file over board (4)
    assert config.detect.conf == 0.6  # flag over file
    assert config.detect.classes == ["person"]  # a single value where a list is expected
    assert config.model.backends[0] == "ncnn"  # untouched board value
    assert config.camera.kind == "picamera2"


def test_board_from_user_file(tmp_path):
    user = tmp_path / "user.yaml"
    user.write_text("board: rpi5\n")
    assert load_config(None, str(user)).board == "rpi5"


@pytest.mark.parametrize("yaml_text, key, allowed", [
    ("detect:\n  conf: 2\n", "detect.conf", "0.0 to 1.0"),
    ("model:\n  threads: four\n", "model.threads", "an integer"),
    ("model:\n  backend: tensorrt\n", "model.backend", "auto, ncnn, tflite, onnxruntime"),
    ("model:\n  backends: [ncnn, coreml]\n", "model.backends", "ncnn, tflite, onnxruntime"),
    ("camera:\n  kind: usb\n", "camera.kind", "opencv, picamera2, nvargus"),
    ("camera:\n  widht: 640\n", "camera.widht", "kind, index, width"),
    ("detect:\n  agnostic: sometimes\n", "detect.agnostic", "true or false"),
    ("model:\n  input_size: [416]\n", "model.input_size", "a list of 2 int"),
    ("frobnicate: 1\n", "frobnicate", "model, detect, camera"),
    ("detect: 3\n", "detect", "allowed: a mapping"),
])
def test_bad_values_name_file_key_and_allowed(tmp_path, yaml_text, key, allowed):
    user = tmp_path / "bad.yaml"
    user.write_text(yaml_text)
    with pytest.raises(ConfigError) as err:
        load_config("x86", str(user))
    message = str(err.value)
    assert str(user) in message and key in message and allowed in message, message


def test_flag_errors_say_command_line():
    with pytest.raises(ConfigError, match=r"command line: detect\.iou.*0\.0 to 1\.0"):
        load_config("x86", None, {"detect": {"iou": 1.5}})


def test_unknown_board_lists_the_boards():
    with pytest.raises(ConfigError, match="unknown board 'rpi3'.*rpi4, rpi5"):
        load_config("rpi3")


def test_invalid_yaml_names_the_line(tmp_path):
    user = tmp_path / "broken.yaml"
    user.write_text("model:\n  threads: [1, 2\n")
    with pytest.raises(ConfigError, match=rf"{user}: line \d+ invalid YAML"):
        load_config("x86", str(user))


def test_missing_config_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config"):
        load_config("x86", str(tmp_path / "nope.yaml"))


def test_reconnect_bounds_checked():
    with pytest.raises(ConfigError, match="reconnect_max_s"):
        load_config("x86", None, {"source": {"reconnect_min_s": 5, "reconnect_max_s": 1}})


def test_one_detection_default_everywhere():
    """The config, the Detector and the postprocess API share one max_det (it was 100 in the config and 300 in
    the other two), conf and iou."""
    import inspect

    from edge_yolox.detector import Detector
    from edge_yolox.postprocess import CONF, IOU, MAX_DET, postprocess_batch

    detect = load_config("x86").detect
    assert (detect.max_det, detect.conf, detect.iou) == (MAX_DET, CONF, IOU) == (100, 0.25, 0.45)
    for function in (Detector.__init__, postprocess_batch):
        params = inspect.signature(function).parameters
        assert (params["max_det"].default, params["conf"].default, params["iou"].default) == (MAX_DET, CONF, IOU)


def test_backend_options_per_backend(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text("model:\n  options:\n    tflite: {xnnpack: false}\n")
    loaded = load_config("rpi4", str(config))
    assert loaded.model.options == {"ncnn": {"fp16": True, "int8": True}, "tflite": {"xnnpack": False}}
    config.write_text("model:\n  options:\n    ncnn: {fp17: true}\n")
    with pytest.raises(ConfigError, match=f"{config}: model.options.ncnn.fp17: unknown key; allowed: fp16, int8"):
        load_config("rpi4", str(config))
    config.write_text("model:\n  options:\n    tensorrt: {}\n")
    with pytest.raises(ConfigError, match="model.options.tensorrt: unknown backend; allowed: ncnn, tflite"):
        load_config("rpi4", str(config))
    config.write_text("model:\n  options:\n    ncnn: {int8: 'yes'}\n")
    with pytest.raises(ConfigError, match="model.options.ncnn.int8: invalid value 'yes'; allowed: a bool"):
        load_config("rpi4", str(config))
