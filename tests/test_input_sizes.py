"""Model inputs that are not multiples of 32, end to end: the grid of a stride is ceil(size / stride), what the
model's stride-2 convolutions produce, in the C++ decode and in the Python that matches a bare model's outputs to
a head (it once floored there, so a dynamic model at 410x346 was refused). Exported with a dynamic input, run
through the runtime and the CLI, compared with torch at the same size."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")

from conftest import shared_path  # noqa: E402
from edge_yolox.train.cli import main  # noqa: E402
from models_helpers import load_nano, match, nano_checkpoint, torch_input  # noqa: E402
from runtime_helpers import cli, records  # noqa: E402

from edge_yolox.detector import Detector  # noqa: E402
from edge_yolox.postprocess import grid_shapes, postprocess  # noqa: E402
from edge_yolox.preprocess import letterbox  # noqa: E402

# YOLOX runs at an even size whose stride-8 grid is a multiple of 4 (the PAFPN's 2x upsampling must meet the
# lateral maps): 410 and 346 are such sizes, 384x320 is a multiple of 32 for comparison.
SIZES = [(410, 346), (346, 410), (384, 320)]


@pytest.fixture(scope="module")
def nano():
    return load_nano()


@pytest.fixture(scope="module")
def dynamic(tmp_path_factory) -> dict[str, str]:
    """`edge-yolox export --dynamic` in both head layouts; the .onnx inside is loaded as a bare model."""
    models = {}
    for layout in ("split", "single"):
        out = tmp_path_factory.mktemp("export") / f"nano-{layout}"
        assert main(["export", "--weights", str(nano_checkpoint()), "--format", "onnx", "--layout", layout,
                     "--dynamic", "--out", str(out)]) == 0
        models[layout] = str(out / "model.onnx")
    return models


def torch_detections(nano, frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The torch model's own decode (its grids come from its feature maps), then NMS and the letterbox undo."""
    image, ratio = letterbox(frame, size)
    with torch.no_grad():
        rows = nano(torch_input(image))[0].numpy()
    return postprocess(rows, size, conf=0.3, iou=0.45, ratio=ratio, frame_size=frame.shape[:2], decode_boxes=False)


@pytest.mark.parametrize("size", SIZES)
def test_grid_rule_is_the_models_own(nano, size):
    with torch.no_grad():
        features = nano.backbone(torch.zeros(1, 3, *size))
    assert [tuple(f.shape[-2:]) for f in features] == grid_shapes(size)
    assert grid_shapes((410, 346)) == [(52, 44), (26, 22), (13, 11)]  # floor would give (51, 43), (25, 21), (12, 10)


@pytest.mark.parametrize("layout", ["split", "single"])
@pytest.mark.parametrize("size", SIZES)
def test_bare_dynamic_model_matches_torch(dynamic, nano, layout, size):
    frame = cv2.imread(str(shared_path("images", "dog.jpg")))
    expected = torch_detections(nano, frame, size)
    detector = Detector(dynamic[layout], conf=0.3, iou=0.45, input_size=size)
    got, _ = detector.detect(frame)
    detector.close()
    assert detector.meta.input_size == size and len(expected) >= 3
    assert match(got, expected, box_tol=0.05, score_tol=1e-4)


def test_run_at_a_size_not_a_multiple_of_32(dynamic, nano):
    image = shared_path("images", "dog.jpg")
    result = cli("-q", "run", "--board", "x86", "--model", dynamic["split"], "--img-size", "410", "346",
                 "--source", image, "--conf", "0.3")
    assert result.returncode == 0, result.stderr
    (record,) = records(result.stdout)
    got = np.array([[*d["box"], d["score"], d["class_id"]] for d in record["detections"]], np.float32)
    expected = torch_detections(nano, cv2.imread(str(image)), (410, 346))
    assert len(expected) >= 3 and match(got, expected, box_tol=0.06, score_tol=1e-4)  # records round to 0.1 px


def test_a_size_the_model_cannot_take_is_one_line(dynamic):
    """400 is a valid config value but not a YOLOX size (its stride-16 map, 25, cannot meet the upsampled 13)."""
    result = cli("-q", "run", "--board", "x86", "--model", dynamic["split"], "--img-size", "400", "352",
                 "--source", "synthetic", "--limit", "1")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert lines[0].startswith("edge-yolox: error: ") and "[1, 3, 400, 352]" in lines[0]
