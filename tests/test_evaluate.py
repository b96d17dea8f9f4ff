"""COCO evaluation on real data: the official Nano weights on coco128 (the acceptance figure), torch vs the official
ONNX through the runtime, COCO-JSON vs YOLO-txt ground truth, and the `edge-yolox eval` command."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

import yaml  # noqa: E402
from conftest import shared_path  # noqa: E402
from edge_yolox.train.cli import main  # noqa: E402
from edge_yolox.train.data.datasets import open_dataset  # noqa: E402
from edge_yolox.train.evaluate import METRICS, detector_detect_fn, evaluate, evaluate_dataset  # noqa: E402
from edge_yolox.train.models import build_model  # noqa: E402
from models_helpers import coco128, load_nano, nano_checkpoint  # noqa: E402

from edge_yolox.detector import Detector  # noqa: E402

SUBSET = 12


@pytest.fixture(scope="module")
def nano():
    return load_nano()


@pytest.fixture(scope="module")
def coco():
    return open_dataset(coco128(), "val")


@pytest.fixture(scope="module")
def subset_metrics(nano, coco):
    return evaluate_dataset(nano, coco, (416, 416), limit=SUBSET, progress=False)


def yolo_copy(root: Path, count: int) -> Path:
    """The first `count` coco128 images as a YOLO-txt dataset (images linked, labels copied, data.yaml)."""
    src = coco128()
    (root / "images").mkdir()
    (root / "labels").mkdir()
    for image in sorted((src / "images").glob("*.jpg"))[:count]:
        os.symlink(image.resolve(), root / "images" / image.name)
        label = src / "labels" / f"{image.stem}.txt"
        if label.exists():
            shutil.copy(label, root / "labels" / label.name)
    names = yaml.safe_load((src / "data.yaml").read_text())["names"]
    (root / "data.yaml").write_text(yaml.safe_dump({"path": ".", "val": "images", "names": names}))
    return root / "data.yaml"


def test_official_nano_on_coco128_matches_the_reference(nano, coco):
    """Acceptance: the ONNX reference's AP50:95 0.333 (shared/data/README.md) within 0.003."""
    metrics = evaluate_dataset(nano, coco, (416, 416), progress=False)
    assert metrics["images"] == 96
    assert metrics["AP"] == pytest.approx(0.333, abs=0.003)
    assert metrics["AP50"] == pytest.approx(0.532, abs=0.003)


def test_torch_and_official_onnx_agree(subset_metrics, coco):
    detector = Detector(shared_path("models", "yolox_nano.onnx"), conf=0.01, iou=0.65)
    onnx_metrics = evaluate(detector_detect_fn(detector), coco, limit=SUBSET, progress=False)
    assert subset_metrics["images"] == onnx_metrics["images"] == SUBSET and subset_metrics["AP"] > 0.2
    for key in METRICS:
        assert subset_metrics[key] == pytest.approx(onnx_metrics[key], abs=1e-3), key


def test_yolo_txt_ground_truth_gives_the_same_ap(nano, subset_metrics, tmp_path):
    yolo = open_dataset(yolo_copy(tmp_path, SUBSET), "val")
    metrics = evaluate_dataset(nano, yolo, (416, 416), progress=False)
    # same boxes: same AP; APs/m/l may differ since COCO areas come from masks and YOLO areas from boxes
    for key in ("AP", "AP50", "AP75"):
        assert metrics[key] == pytest.approx(subset_metrics[key], abs=1e-3), key


def test_no_detections_scores_zero_and_mode_is_restored(nano, coco):
    nano.train()
    try:
        metrics = evaluate_dataset(nano, coco, (416, 416), conf=1.01, limit=2, per_class=True, progress=False)
        assert nano.training
    finally:
        nano.eval()
    assert metrics["detections"] == 0 and all(metrics[k] == 0 for k in METRICS)
    assert set(metrics["per_class"]) == set(coco.names)


def test_eval_cli_json_and_per_class(tmp_path, capsys):
    out = tmp_path / "metrics.json"
    rc = main(["eval", "--model", str(nano_checkpoint()), "--data", str(coco128()), "--limit", "4", "--per-class",
               "--json", str(out), "--no-progress"])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    record = json.loads(out.read_text())
    assert 0 < record["AP"] <= 1 and all(record[k] == -1 or 0 <= record[k] <= 1 for k in METRICS)  # -1: no such GT
    assert record["images"] == 4
    assert "YOLOX-nano PyTorch" in record["model"] and record["input_size"] == [416, 416]
    assert "inferred YOLOX-nano with 80 classes" in captured.err
    assert 0 <= record["per_class"]["person"] <= 1 and record["per_class"]["toaster"] is None  # none in 4 images
    assert "AP50:95" in captured.out


def test_eval_cli_errors_are_one_line(tmp_path, capsys):
    assert main(["eval", "--model", str(nano_checkpoint()), "--data", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edge-yolox eval:") and "nope" in err and "\n" not in err
    three = tmp_path / "three.pth"
    torch.save({"model": build_model("nano", 3).state_dict()}, three)
    assert main(["eval", "--model", str(three), "--data", str(coco128()), "--no-progress"]) == 2
    assert "predicts 3 classes" in capsys.readouterr().err
