"""OpenVINO: the backend on our ONNX export and on IR bundles gives onnxruntime's detections on dog.jpg, an INT8
export calibrated with NNCF records its calibration and still finds the dog and the bicycle, and bad options,
absent devices and unreadable models give one clear line.

CI-sized: 320×320 input, 8 calibration images, one export per kind for the whole module."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest

pytest.importorskip("openvino")
pytest.importorskip("torch")

from edge_yolox.train.cli import main  # noqa: E402
from edge_yolox.train.export.openvino import IGNORED_PATTERNS  # noqa: E402
from models_helpers import coco128, letterboxed, nano_checkpoint  # noqa: E402
from runtime_helpers import iou  # noqa: E402

from edge_yolox.backends import load_backend  # noqa: E402
from edge_yolox.bundle import read_bundle  # noqa: E402
from edge_yolox.config import load_config  # noqa: E402
from edge_yolox.detector import Detector  # noqa: E402
from edge_yolox.errors import ConfigError, ModelError  # noqa: E402

SIZE = 320
CALIB_N = 8
CONF = 0.5


def export(tmp_path_factory, fmt: str, precision: str = "fp32"):
    out = tmp_path_factory.mktemp("openvino") / f"nano-{fmt}-{precision}"
    args = ["export", "--weights", str(nano_checkpoint()), "--format", fmt, "--img-size", str(SIZE), "--out", str(out)]
    if fmt != "onnx":
        args += ["--precision", precision]
    if precision == "int8":
        args += ["--calib", str(coco128() / "images"), "--calib-n", str(CALIB_N)]
    assert main(args) == 0
    return out


@pytest.fixture(scope="module")
def onnx_bundle(tmp_path_factory):
    return export(tmp_path_factory, "onnx")


@pytest.fixture(scope="module")
def ir_fp32(tmp_path_factory):
    return export(tmp_path_factory, "openvino")


@pytest.fixture(scope="module")
def ir_int8(tmp_path_factory):
    pytest.importorskip("nncf")
    return export(tmp_path_factory, "openvino", "int8")


def detect(bundle, backend=None, **opts) -> tuple[np.ndarray, list[str], str]:
    """Detections on dog.jpg (score >= CONF), the class names and where the backend ran."""
    detector = Detector(bundle, conf=CONF, iou=0.45, backend=backend, threads=1, **opts)
    try:
        return detector.detect(letterboxed("dog.jpg")[0])[0], detector.class_names, detector.backend.device
    finally:
        detector.close()


def assert_same(got: np.ndarray, expected: np.ndarray, min_iou: float = 0.95) -> None:
    """The same classes, and each expected box has a box of its class with IoU >= min_iou."""
    assert sorted(got[:, 5].tolist()) == sorted(expected[:, 5].tolist())
    for *box, _, cls in expected:
        assert max(iou(box, d[:4]) for d in got if d[5] == cls) >= min_iou


@pytest.fixture(scope="module")
def reference(onnx_bundle):
    dets, names, device = detect(onnx_bundle)
    assert device == "CPUExecutionProvider"
    assert {names[int(c)] for c in dets[:, 5]} >= {"dog", "bicycle"}
    return dets


def test_onnx_bundle_matches_onnxruntime(onnx_bundle, reference):
    dets, _, device = detect(onnx_bundle, backend="openvino")
    assert device == "CPU"
    assert_same(dets, reference)


def test_ir_fp32_bundle_matches_onnxruntime(ir_fp32, reference):
    meta = read_bundle(ir_fp32)
    assert meta.backend == "openvino" and meta.precision == "fp32" and meta.layout == "split"
    assert {"model.xml", "model.bin"} <= set(meta.files)
    dets, _, _ = detect(ir_fp32)
    assert_same(dets, reference)


def test_int8_bundle_records_calibration_and_detects(ir_int8):
    meta = read_bundle(ir_int8)
    assert meta.precision == "int8" and meta.backend == "openvino"
    assert meta.extra["calibration"] == {"images": CALIB_N, "method": "performance",
                                         "folder": str(coco128() / "images")}
    assert meta.extra["float_scopes"] == list(IGNORED_PATTERNS)
    assert "FakeQuantize" in (ir_int8 / "model.xml").read_text()
    dets, names, _ = detect(ir_int8)
    assert {names[int(c)] for c in dets[:, 5]} >= {"dog", "bicycle"}


def test_bare_ir_folder_is_openvino_not_ncnn(ir_fp32, tmp_path, reference):
    """model.bin alone is no ncnn model: a folder with an IR and no meta.json loads with OpenVINO."""
    for name in ("model.xml", "model.bin"):
        shutil.copy(ir_fp32 / name, tmp_path / name)
    backend = load_backend(tmp_path, threads=1)
    assert backend.name == "openvino" and backend.meta.num_classes == 80 and list(backend.meta.input_size) == [SIZE] * 2
    backend.close()


def test_absent_device_falls_back_to_the_cpu_with_one_line(ir_fp32, caplog):
    with caplog.at_level(logging.WARNING):
        _, _, device = detect(ir_fp32, options={"openvino": {"device": "NPU"}})
    assert device == "CPU"
    why = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(why) == 1 and "device NPU is not present here" in why[0] and "using CPU instead" in why[0]


def test_broken_irs_are_one_line_model_errors(ir_fp32, tmp_path):
    (tmp_path / "model.xml").write_bytes((ir_fp32 / "model.xml").read_bytes())
    (tmp_path / "model.bin").write_bytes((ir_fp32 / "model.bin").read_bytes()[:1000])  # truncated weights
    with pytest.raises(ModelError) as raised:
        load_backend(tmp_path / "model.xml")
    assert "not a loadable OpenVINO/ONNX model (Incorrect weights in bin file!)" in str(raised.value)
    assert "\n" not in str(raised.value)
    # entity expansion, an external entity and no input
    (tmp_path / "model.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        '<!ENTITY e SYSTEM "file:///etc/passwd">]><net name="&b;&e;" version="11"><layers/><edges/></net>')
    with pytest.raises(ModelError, match="expects one image input"):
        load_backend(tmp_path / "model.xml")


def test_bad_device_is_a_one_line_config_error(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text("model:\n  options:\n    openvino: {device: TPU}\n")
    with pytest.raises(ConfigError) as raised:
        load_config("x86", str(config))
    assert str(raised.value) == (f"{config}: model.options.openvino.device: invalid value 'TPU'; "
                                 "allowed: CPU, GPU, NPU, AUTO")
