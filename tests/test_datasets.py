"""COCO-JSON, YOLO-txt and VOC datasets (synthetic scenes converted to each, and the real coco128), the synthetic
generator, and clear errors naming the file and record."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from edge_yolox.train.data.datasets import coco_dataset, open_dataset, voc_dataset, yolo_dataset
from edge_yolox.train.data.synthetic import CLASSES, generate_scenes

from edge_yolox.errors import ConfigError
from tests.conftest import shared_path


@pytest.fixture(scope="module")
def scenes(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("scenes")
    generate_scenes(out, 6, size=(160, 192), seed=5)
    return out


def write_yolo(coco, root: Path) -> Path:
    (root / "labels").mkdir(parents=True)
    (root / "images").symlink_to(coco.records[0].image.parent)
    for rec in coco.records:
        h, w = rec.size
        lines = [f"{c} {(b[0] + b[2]) / 2 / w} {(b[1] + b[3]) / 2 / h} {(b[2] - b[0]) / w} {(b[3] - b[1]) / h}"
                 for b, c in zip(rec.boxes.tolist(), rec.classes.tolist())]
        (root / "labels" / f"{rec.image.stem}.txt").write_text("\n".join(lines))
    (root / "data.yaml").write_text(f"path: .\ntrain: images\nval: images\nnames: {list(coco.names)}\n")
    return root / "data.yaml"


def write_voc(coco, root: Path) -> Path:
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").symlink_to(coco.records[0].image.parent)
    for rec in coco.records:
        objects = "".join(
            f"<object><name>{coco.names[c]}</name><difficult>0</difficult><bndbox><xmin>{b[0] + 1}</xmin>"
            f"<ymin>{b[1] + 1}</ymin><xmax>{b[2] + 1}</xmax><ymax>{b[3] + 1}</ymax></bndbox></object>"
            for b, c in zip(rec.boxes.tolist(), rec.classes.tolist()))
        (root / "Annotations" / f"{rec.image.stem}.xml").write_text(
            f"<annotation><filename>{rec.image.name}</filename><size><width>{rec.size[1]}</width>"
            f"<height>{rec.size[0]}</height><depth>3</depth></size>{objects}</annotation>")
    return root


def test_synthetic_scenes_are_deterministic_and_boxes_hold_the_shapes(scenes, tmp_path):
    again = generate_scenes(tmp_path, 6, size=(160, 192), seed=5)
    assert json.loads(again.read_text()) == json.loads((scenes / "annotations" / "instances.json").read_text())
    ds = open_dataset(scenes)
    assert ds.names == list(CLASSES) and len(ds) == 6
    image, labels = ds.load(0)
    assert image.shape == (160, 192, 3) and len(labels) >= 1
    for x1, y1, x2, y2, _ in labels:
        assert 0 <= x1 < x2 <= 192 and 0 <= y1 < y2 <= 160


def test_yolo_and_voc_layouts_give_the_same_records_as_coco(scenes, tmp_path):
    coco = open_dataset(scenes)
    for other in (yolo_dataset(write_yolo(coco, tmp_path / "yolo")), voc_dataset(write_voc(coco, tmp_path / "voc"),
                                                                                 names=coco.names)):
        assert other.names == coco.names and len(other) == len(coco)
        by_name = {r.image.name: r for r in other.records}
        for rec in coco.records:
            twin = by_name[rec.image.name]
            np.testing.assert_allclose(twin.boxes, rec.boxes, atol=0.05)
            assert twin.classes.tolist() == rec.classes.tolist()


def test_real_coco128_in_coco_and_yolo_form(tmp_path):
    root = shared_path("coco128")
    coco = open_dataset(root)  # the folder: annotations/instances.json is preferred over data.yaml
    assert len(coco) == 96 and coco.num_classes == 80 and coco.category_ids[-1] == 90
    gt = coco.to_coco()
    assert len(gt["annotations"]) == sum(len(r.boxes) for r in coco.records) > 500
    (tmp_path / "data.yaml").write_text((root / "data.yaml").read_text().replace("path: .", f"path: {root}")
                                        .replace("images/train2017", "images"))
    yolo = yolo_dataset(tmp_path / "data.yaml")
    assert len(yolo) == 96 and yolo.num_classes == 80
    image, labels = yolo.load(0)
    assert image.ndim == 3 and labels.shape[1] == 5


def test_broken_coco_annotation_names_file_and_record(scenes, tmp_path):
    data = json.loads((scenes / "annotations" / "instances.json").read_text())
    data["annotations"][3]["bbox"] = "oops"
    path = tmp_path / "broken.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"broken\.json: annotations\[3\] \(id 4\)"):
        coco_dataset(path, scenes / "images")
    path.write_text("{not json")
    with pytest.raises(ConfigError, match="invalid JSON"):
        coco_dataset(path)


def test_broken_yolo_label_names_file_and_line(scenes, tmp_path):
    yaml_path = write_yolo(open_dataset(scenes), tmp_path / "yolo")
    label = sorted((tmp_path / "yolo" / "labels").glob("*.txt"))[1]
    label.write_text("0 0.5 0.5 0.1 0.1\n7 0.5 0.5 0.1\n")
    with pytest.raises(ConfigError, match=rf"{label.name}:2: bad label line"):
        yolo_dataset(yaml_path)


def test_missing_split_and_unknown_layout_are_clear(tmp_path):
    (tmp_path / "data.yaml").write_text("train: nowhere\nnames: [a]\n")
    with pytest.raises(ConfigError, match="nowhere does not exist"):
        open_dataset(tmp_path / "data.yaml")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a dataset"):
        open_dataset(tmp_path / "empty")
    with pytest.raises(ConfigError, match="does not exist"):
        open_dataset(tmp_path / "missing")


def test_broken_voc_xml_names_the_file(tmp_path):
    (tmp_path / "Annotations").mkdir()
    (tmp_path / "Annotations" / "a.xml").write_text("<annotation><object><name>cat</name></object>")
    with pytest.raises(ConfigError, match=r"a\.xml: not a valid VOC annotation"):
        open_dataset(tmp_path)
