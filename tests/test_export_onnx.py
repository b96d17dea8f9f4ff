"""ONNX export of the real official Nano weights: bundles the runtime loads, the same detections and AP as torch,
the official single layout, the pnnx-friendly stem, dynamic sizes, and clear CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ort = pytest.importorskip("onnxruntime")

from conftest import shared_path  # noqa: E402
from edge_yolox.train.cli import main  # noqa: E402
from edge_yolox.train.export import base_meta  # noqa: E402
from edge_yolox.train.export.graph import ExportGraph  # noqa: E402
from edge_yolox.train.export.onnx import MODEL_NAME, export_onnx  # noqa: E402
from models_helpers import coco128, detections, letterboxed, load_nano, match, nano_checkpoint, torch_input  # noqa: E402

from edge_yolox.backends import load_backend  # noqa: E402
from edge_yolox.bundle import read_bundle  # noqa: E402
from edge_yolox.detector import Detector  # noqa: E402


@pytest.fixture(scope="module")
def nano():
    return load_nano()


@pytest.fixture(scope="module")
def split_bundle(tmp_path_factory):
    """`edge-yolox export` with the defaults: split layout, 416, COCO names."""
    out = tmp_path_factory.mktemp("export") / "nano-onnx"
    assert main(["export", "--weights", str(nano_checkpoint()), "--format", "onnx", "--out", str(out)]) == 0
    return out


def session_outputs(path, x: np.ndarray) -> list[np.ndarray]:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": x})


def test_split_bundle_meta(split_bundle, coco_names):
    meta = read_bundle(split_bundle)
    assert meta.layout == "split" and meta.outputs == [f"{k}{s}" for s in (8, 16, 32) for k in ("reg", "obj", "cls")]
    assert meta.sigmoid_applied and not meta.boxes_decoded and meta.backend == "onnxruntime"
    assert meta.input_size == (416, 416) and meta.num_classes == 80 and meta.variant == "nano"
    assert meta.class_names[:3] == coco_names[:3] and MODEL_NAME in meta.files
    assert meta.extra["check_max_abs_diff"] < 1e-3 and meta.extra["opset"] == 13


@pytest.mark.parametrize("image", ["dog.jpg", "busstop.jpg"])
def test_runtime_detections_equal_torch(split_bundle, nano, image):
    frame, boxed, ratio = letterboxed(image)
    with torch.no_grad():
        expected = detections(nano(torch_input(boxed))[0].numpy(), frame, ratio, decode_boxes=False)
    detector = Detector(split_bundle, conf=0.3, iou=0.45)
    got, _ = detector.detect(frame)
    assert len(expected) >= 3 and match(got, expected, box_tol=0.05, score_tol=1e-4)


def test_exported_ap_equals_torch(split_bundle, tmp_path, capsys):
    results = {}
    for name, model in (("onnx", split_bundle), ("pth", nano_checkpoint())):
        out = tmp_path / f"{name}.json"
        assert main(["eval", "--model", str(model), "--data", str(coco128()), "--limit", "12", "--json", str(out),
                     "--no-progress"]) == 0
        results[name] = json.loads(out.read_text())
    assert results["onnx"]["AP"] > 0.2 and "onnxruntime" in results["onnx"]["model"]
    assert results["onnx"]["AP"] == pytest.approx(results["pth"]["AP"], abs=1e-3)


def test_single_layout_with_unshuffle_stem_equals_the_official_export(nano, tmp_path, nano_onnx_outputs):
    """Official [1, N, 85] layout; the pixel_unshuffle stem (no step-2 slices) changes nothing."""
    meta = base_meta("nano", 80, (416, 416), [str(i) for i in range(80)])
    out = export_onnx(nano, tmp_path / "single", meta, layout="single", stem="unshuffle")
    meta = read_bundle(out)
    assert meta.layout == "single" and meta.outputs == ["output"] and meta.extra["stem"] == "unshuffle"
    _, boxed, _ = letterboxed("dog.jpg")
    (ours,) = session_outputs(out / MODEL_NAME, torch_input(boxed).numpy())
    official = nano_onnx_outputs["dog.jpg"][0]
    assert ours.shape == official.shape == (1, 3549, 85) and np.abs(ours - official).max() < 1e-3
    import onnx

    ops = {node.op_type for node in onnx.load(str(out / MODEL_NAME)).graph.node}
    assert "Slice" not in ops  # the stem has no strided slices left


def test_dynamic_export_runs_at_other_sizes(nano, tmp_path):
    meta = base_meta("nano", 80, (416, 416), [str(i) for i in range(80)])
    out = export_onnx(nano, tmp_path / "dynamic", meta, dynamic=True)
    x = (torch.rand(1, 3, 320, 480) * 255).round()
    got = session_outputs(out / MODEL_NAME, x.numpy())
    with torch.no_grad():
        expected = ExportGraph(nano)(x)
    assert [g.shape for g in got] == [tuple(e.shape) for e in expected]
    assert got[0].shape[-2:] == (40, 60)
    assert max(float(np.abs(g - e.numpy()).max()) for g, e in zip(got, expected)) < 1e-3
    assert load_backend(out).meta.input_size == (416, 416)


def test_names_from_a_dataset_and_cli_errors(tmp_path, capsys):
    out = tmp_path / "named"
    assert main(["export", "--weights", str(nano_checkpoint()), "--out", str(out),
                 "--names", str(shared_path("coco128", "annotations", "instances.json")), "--img-size", "320"]) == 0
    meta = read_bundle(out)
    assert meta.class_names[3] == "motorcycle" and meta.input_size == (320, 320)
    capsys.readouterr()
    assert main(["export", "--weights", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge-yolox export:") and "missing.pth" in err and "\n" not in err
    names = tmp_path / "three.names"
    names.write_text("a\nb\nc\n")
    assert main(["export", "--weights", str(nano_checkpoint()), "--out", str(tmp_path / "y"), "--names",
                 str(names)]) == 2
    assert "3 names for a 80-class model" in capsys.readouterr().err
