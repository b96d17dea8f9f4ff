"""Class names: official COCO spellings everywhere, the darknet/VOC spellings still accepted in --classes."""

from __future__ import annotations

import pytest
from conftest import shared_path
from runtime_helpers import cli, onnx_model, records

from edge_yolox.classes import ALIASES, COCO_NAMES, class_index, default_names


def test_names_are_cocos_own(coco_names):
    assert list(COCO_NAMES) == coco_names  # ../shared/data/models/coco.names: COCO's annotation spellings
    assert default_names(80) == coco_names and default_names(3) == ["0", "1", "2"]


@pytest.mark.parametrize("old, new", sorted(ALIASES.items()))
def test_old_spellings_are_aliases(old, new):
    assert class_index(old, COCO_NAMES) == class_index(new, COCO_NAMES) == COCO_NAMES.index(new)
    assert class_index(new, [old]) == 0  # a bundle written with the old names still matches the new one


@pytest.mark.parametrize("wanted", ["dog,tv", "dog,tvmonitor"])
def test_classes_flag_on_a_coco_model(wanted):
    result = cli("-q", "run", "--board", "x86", "--model", onnx_model(), "--classes", wanted,
                 "--source", shared_path("images", "dog.jpg"))
    assert result.returncode == 0, result.stderr
    (record,) = records(result.stdout)
    assert {d["label"] for d in record["detections"]} == {"dog"}
