"""Backends on the real models: the official ONNX, the third-party NCNN export (YoloV5Focus), bundles,
legacy preprocessing, and broken model files."""

from __future__ import annotations

import json
import shutil

import cv2
import numpy as np
import onnxruntime as ort
import pytest
from conftest import shared_path
from runtime_helpers import as_dicts, ncnn_model, onnx_model, unmatched

from edge_yolox import postprocess
from edge_yolox.backends import load_backend, normalize
from edge_yolox.backends.ncnn import rewrite_focus
from edge_yolox.backends.ncnn_param import parse_param, render_param
from edge_yolox.bundle import ModelMeta, Preprocess, write_bundle
from edge_yolox.detector import Detector
from edge_yolox.errors import ModelError
from edge_yolox.preprocess import letterbox, to_nchw


@pytest.fixture(scope="module")
def onnx_backend():
    return load_backend(onnx_model(), threads=2)


@pytest.fixture(scope="module")
def ncnn_backend():
    return load_backend(ncnn_model(), threads=2)


def test_bare_onnx_meta_inferred(onnx_backend):
    meta = onnx_backend.meta
    assert (meta.layout, meta.num_classes, tuple(meta.input_size)) == ("single", 80, (416, 416))
    assert meta.sigmoid_applied and not meta.boxes_decoded  # the official export's conventions
    assert meta.class_names[:3] == shared_path("models", "coco.names").read_text().split("\n")[:3]


def test_onnx_backend_equals_a_plain_session(onnx_backend):
    frame = cv2.imread(str(shared_path("images", "dog.jpg")))
    image, _ = letterbox(frame, (416, 416))
    session = ort.InferenceSession(str(onnx_model()), providers=["CPUExecutionProvider"])
    expected = session.run(None, {"images": to_nchw(image)})[0]
    np.testing.assert_allclose(onnx_backend.infer(image)[0], expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("image", ["dog.jpg", "busstop.jpg"])
def test_ncnn_agrees_with_onnx_on_detections(onnx_backend, ncnn_backend, image):
    """Confident detections match (same class, IoU >= 0.8, score within 0.1). The third-party file's fp16
    weights move mid-confidence scores further (busstop.jpg: an occluded person 0.688 in ONNX, 0.443 in
    NCNN), so detections below 0.7 may differ or appear on one side only."""
    frame = cv2.imread(str(shared_path("images", image)))
    dets = {}
    for backend in (onnx_backend, ncnn_backend):
        dets[backend.name], _ = Detector(backend, conf=0.3, iou=0.45, class_agnostic=True).detect(frame)
    onnx, ncnn = as_dicts(dets["onnxruntime"]), as_dicts(dets["ncnn"])
    assert len(onnx) >= 3
    assert unmatched(onnx, ncnn, min_score=0.7) == []
    assert unmatched(ncnn, onnx, min_score=0.7) == []


def test_detect_with_input_prepared_ahead(onnx_backend):
    frame = cv2.imread(str(shared_path("images", "busstop.jpg")))
    detector = Detector(onnx_backend, conf=0.3)
    prepared = detector.prepare(frame)
    assert prepared.input.shape == (1, 3, 416, 416) and prepared.ratio == pytest.approx(416 / 1664)
    ahead, latency = detector.detect(frame, prepared)
    now, _ = detector.detect(frame)
    assert len(now) >= 3 and np.array_equal(ahead, now) and latency["pre"] == prepared.ms


def test_ncnn_focus_rewrite_is_the_yolox_focus():
    """The in-memory rewrite of YoloV5Focus gives YOLOX's channel order, checked on random data."""
    import ncnn

    param = "7767517\n2 2\nInput in 0 1 in\nYoloV5Focus focus 1 1 in out\n"
    layers, added = rewrite_focus(parse_param(param, "test.param"))
    net = ncnn.Net()
    assert net.load_param_mem(render_param(layers, 2 + added)) == 0
    net.load_model_mem(b"")
    x = np.random.default_rng(0).random((3, 8, 6), dtype=np.float32)
    with net.create_extractor() as ex:
        ex.input("in", ncnn.Mat(x))
        _, out = ex.extract("out")
        got = np.array(out)
    expected = np.concatenate([x[:, ::2, ::2], x[:, 1::2, ::2], x[:, ::2, 1::2], x[:, 1::2, 1::2]])
    np.testing.assert_array_equal(got, expected)


def test_legacy_preprocessing_reaches_the_model(tmp_path):
    """A bundle whose meta says legacy gets RGB/255/mean-std: checked through an identity ONNX model."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["output"])], "id",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 32, 32])],
                              [helper.make_tensor_value_info("output", TensorProto.FLOAT, [1, 3, 32, 32])])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)]), tmp_path / "model.onnx")
    write_bundle(tmp_path, ModelMeta(num_classes=1, input_size=(32, 32), backend="onnxruntime",
                                     preprocess=Preprocess.legacy()))
    image = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    got = load_backend(tmp_path).infer(image)[0]
    rgb = image[..., ::-1].astype(np.float32) / 255.0
    expected = ((rgb - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])).transpose(2, 0, 1)
    np.testing.assert_allclose(got[0], expected, rtol=1e-5, atol=1e-5)
    plain = image.astype(np.float32)[None]
    assert np.array_equal(normalize(image, Preprocess()), plain.transpose(0, 3, 1, 2))
    assert np.array_equal(normalize(image, Preprocess(), nchw=False), plain)


def test_onnx_bundle_loads_and_detects(tmp_path, onnx_backend):
    shutil.copy(onnx_model(), tmp_path / "model.onnx")
    meta = ModelMeta(num_classes=80, input_size=(416, 416), outputs=["output"], class_names=["c"] * 80,
                     backend="onnxruntime", variant="yolox-nano")
    write_bundle(tmp_path, meta)
    backend = load_backend(tmp_path)
    assert backend.meta.variant == "yolox-nano" and backend.meta.class_names == ["c"] * 80
    frame = cv2.imread(str(shared_path("images", "dog.jpg")))
    image, ratio = letterbox(frame, (416, 416))
    a = postprocess(backend.infer(image), (416, 416), ratio=ratio, **backend.meta.postprocess_options)
    b = postprocess(onnx_backend.infer(image), (416, 416), ratio=ratio, **onnx_backend.meta.postprocess_options)
    np.testing.assert_array_equal(a, b)


def _copy_ncnn(tmp_path):
    for suffix in (".param", ".bin"):
        shutil.copy(ncnn_model().with_suffix(suffix), tmp_path / f"m{suffix}")
    return tmp_path / "m.param"


def _truncate(path, keep: float):
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


@pytest.mark.parametrize("case", ["onnx-truncated", "onnx-garbage", "tflite-garbage", "ncnn-param-truncated",
                                  "ncnn-bin-truncated", "ncnn-bin-missing", "bundle-sha", "bundle-size",
                                  "missing", "not-a-model"])
def test_broken_model_files_raise_one_clear_error(tmp_path, case):
    if case == "onnx-truncated":
        path = tmp_path / "m.onnx"
        shutil.copy(onnx_model(), path)
        _truncate(path, 0.5)
    elif case == "onnx-garbage":
        path = tmp_path / "m.onnx"
        path.write_bytes(b"\x00garbage" * 100)
    elif case == "tflite-garbage":
        path = tmp_path / "m.tflite"
        path.write_bytes(b"TFL3" + b"\x01" * 200)
    elif case.startswith("ncnn"):
        path = _copy_ncnn(tmp_path)
        if case == "ncnn-param-truncated":
            _truncate(path, 0.5)
        elif case == "ncnn-bin-truncated":
            _truncate(path.with_suffix(".bin"), 0.5)
        else:
            path.with_suffix(".bin").unlink()
    elif case.startswith("bundle"):
        path = tmp_path
        shutil.copy(onnx_model(), path / "model.onnx")
        size = (320, 320) if case == "bundle-size" else (416, 416)
        write_bundle(path, ModelMeta(num_classes=80, input_size=size, backend="onnxruntime"))
        if case == "bundle-sha":
            _truncate(path / "model.onnx", 0.9)
    elif case == "missing":
        path = tmp_path / "nope.onnx"
    else:
        path = tmp_path / "notes.txt"
        path.write_text("hello")
    with pytest.raises(ModelError) as err:
        load_backend(path)
    message = str(err.value)
    assert str(path.name) in message or str(tmp_path) in message
    assert "\n" not in message


def test_meta_json_unreadable(tmp_path):
    (tmp_path / "meta.json").write_text(json.dumps({"num_classes": 80}))
    with pytest.raises(ModelError, match="meta.json"):
        load_backend(tmp_path)


def test_tflite_pixel_levels_equal_the_float_quantization():
    from edge_yolox.backends.tflite import pixel_levels, quantize

    image = np.random.default_rng(2).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    x = normalize(image, Preprocess(), nchw=False)
    for dtype, zero in ((np.int8, -128), (np.uint8, 0)):
        detail = {"dtype": dtype, "quantization": (1.0, zero)}
        levels = pixel_levels(image, detail)
        assert levels.dtype == dtype and np.array_equal(levels, quantize(x, detail))
    assert pixel_levels(image, {"dtype": np.int8, "quantization": (1 / 255, -128)}) is None
    assert pixel_levels(image, {"dtype": np.int8, "quantization": (1.0, 0)}) is None
