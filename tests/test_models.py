"""YOLOX models: official key/shape layout, the paper's parameter counts, eval/train/export outputs, and the real
official Nano weights reproducing the official ONNX model's outputs and detections."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from conftest import shared_path  # noqa: E402
from edge_yolox.train.models import (  # noqa: E402
    VARIANTS,
    BaseConv,
    Focus,
    UnshuffleFocus,
    build_model,
    count_flops,
    count_params,
)
from models_helpers import detections, letterboxed, load_nano, match, nano_checkpoint, torch_input  # noqa: E402

from edge_yolox.errors import ConfigError  # noqa: E402

# The YOLOX paper / official README table: params (M) and GFLOPs at 416 (Nano, Tiny) or 640 (S..X).
PAPER = {"nano": (0.91, 1.08), "tiny": (5.06, 6.45), "s": (9.0, 26.8), "m": (25.3, 73.8), "l": (54.2, 155.6),
         "x": (99.1, 281.9)}


@pytest.fixture(scope="module")
def nano():
    return load_nano()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_shapes_and_parameter_counts(name):
    model = build_model(name, num_classes=80)
    v = VARIANTS[name]
    sd = model.state_dict()
    base, hidden = int(64 * v.width), int(256 * v.width)
    assert sd["backbone.backbone.stem.conv.conv.weight"].shape == (base, 12, 3, 3)
    assert sd["backbone.backbone.dark5.1.conv2.conv.weight"].shape[0] == base * 16  # SPP
    for k in range(3):
        assert sd[f"head.cls_preds.{k}.weight"].shape == (80, hidden, 1, 1)
        assert sd[f"head.reg_preds.{k}.weight"].shape == (4, hidden, 1, 1)
        assert sd[f"head.obj_preds.{k}.weight"].shape == (1, hidden, 1, 1)
    assert ("backbone.backbone.dark2.0.dconv.conv.weight" in sd) == v.depthwise
    dark3 = {key.split(".")[5] for key in sd if key.startswith("backbone.backbone.dark3.1.m.")}
    assert len(dark3) == 3 * max(round(3 * v.depth), 1)
    assert round(count_params(model) / 1e6, 2 if name in ("nano", "tiny") else 1) == PAPER[name][0]


@pytest.mark.parametrize("name", ["nano", "tiny"])
def test_flops_at_416_close_to_the_paper(name):
    # conv/matmul FLOPs only; the paper's counter also counts BN and activations (a few % more)
    gflops = count_flops(build_model(name), 416) / 1e9
    assert 0.95 * PAPER[name][1] <= gflops <= PAPER[name][1]


def test_official_init_settings():
    model = build_model("tiny", num_classes=3)
    bns = [m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)]
    assert bns and all(m.eps == 1e-3 and m.momentum == 0.03 for m in bns)
    prior = -math.log((1 - 0.01) / 0.01)
    for conv in (*model.head.cls_preds, *model.head.obj_preds):
        assert torch.allclose(conv.bias, torch.full_like(conv.bias, prior))
    assert all(isinstance(m.act, torch.nn.SiLU) for m in model.modules() if isinstance(m, BaseConv))


def test_unknown_variant_and_bad_class_count():
    with pytest.raises(ConfigError, match="unknown YOLOX variant 'huge'"):
        build_model("huge")
    with pytest.raises(ConfigError, match="num_classes"):
        build_model("nano", 0)


def test_shared_checkpoint_keys_are_the_models():
    state = torch.load(nano_checkpoint(), map_location="cpu", weights_only=True)["model"]
    own = build_model("nano").state_dict()
    assert own.keys() == state.keys() and len(own) == 642
    assert all(own[k].shape == state[k].shape for k in own)
    assert "backbone.backbone.stem.conv.conv.weight" in own and "head.cls_preds.0.bias" in own


def test_matches_official_onnx_outputs(nano):
    """Undecoded outputs equal the official ONNX export of the same weights; eval mode decodes them."""
    ort = pytest.importorskip("onnxruntime")
    _, image, _ = letterboxed("dog.jpg")
    x = torch_input(image)
    session = ort.InferenceSession(str(shared_path("models", "yolox_nano.onnx")), providers=["CPUExecutionProvider"])
    reference = session.run(None, {"images": x.numpy()})[0]
    nano.head.decode_in_inference = False
    try:
        with torch.no_grad():
            raw = nano(x).numpy()
    finally:
        nano.head.decode_in_inference = True
    assert raw.shape == reference.shape == (1, 3549, 85)
    assert np.abs(raw - reference).max() < 1e-3
    with torch.no_grad():
        decoded = nano(x).numpy()
    # decoding in numpy: anchor grid stride by stride, row-major
    cells = [np.mgrid[0:416 // s, 0:416 // s] for s in (8, 16, 32)]  # (ys, xs) per stride
    grid = np.concatenate([np.stack((xs.ravel(), ys.ravel()), -1) for ys, xs in cells])
    stride = np.concatenate([np.full((ys.size, 1), s) for (ys, _), s in zip(cells, (8, 16, 32))])
    np.testing.assert_allclose(decoded[0, :, :2], (raw[0, :, :2] + grid) * stride, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(decoded[0, :, 2:4], np.exp(raw[0, :, 2:4]) * stride, rtol=1e-5, atol=1e-3)
    np.testing.assert_array_equal(decoded[0, :, 4:], raw[0, :, 4:])


@pytest.mark.parametrize("name", ["dog.jpg", "busstop.jpg"])
def test_reference_detections(nano, nano_onnx_outputs, name):
    """Through the C++ postprocess, the same detections as the official ONNX model (README reference settings)."""
    frame, image, ratio = letterboxed(name)
    with torch.no_grad():
        ours = detections(nano(torch_input(image))[0].numpy(), frame, ratio, class_agnostic=True, decode_boxes=False)
    onnx_out, onnx_ratio, _ = nano_onnx_outputs[name]
    reference = detections(onnx_out, frame, onnx_ratio, class_agnostic=True)
    assert len(reference) >= 3 and match(ours, reference, box_tol=0.1, score_tol=1e-3)


def test_dog_per_class_nms_keeps_the_truck(nano, coco_names):
    frame, image, ratio = letterboxed("dog.jpg")
    with torch.no_grad():
        dets = detections(nano(torch_input(image))[0].numpy(), frame, ratio, decode_boxes=False)
    labels = [coco_names[int(c)] for c in dets[:, 5]]
    assert labels == ["dog", "bicycle", "car", "truck"]  # the README's reference list; truck only per class
    assert dets[3, 4] == pytest.approx(0.306, abs=2e-3)


def test_split_outputs_are_the_eval_output(nano):
    _, image, _ = letterboxed("busstop.jpg")
    x = torch_input(image)
    with torch.no_grad():
        split = nano.head.split_outputs(nano.backbone(x))
        nano.head.decode_in_inference = False
        single = nano(x)
        nano.head.decode_in_inference = True
    assert [t.shape[1] for t in split] == [4, 1, 80] * 3
    assert [t.shape[-1] for t in split[::3]] == [52, 26, 13]
    per_stride = [torch.cat(split[i:i + 3], 1).flatten(2) for i in range(0, 9, 3)]
    assert torch.equal(torch.cat(per_stride, 2).transpose(1, 2), single)
    assert all(0 <= float(t.min()) and float(t.max()) <= 1 for i, t in enumerate(split) if i % 3)


def test_float64(nano):
    _, image, _ = letterboxed("dog.jpg")
    with torch.no_grad():
        out32 = nano(torch_input(image))
        out64 = nano.double()(torch_input(image, torch.float64))
    nano.float()
    assert out64.dtype == torch.float64
    assert torch.allclose(out64.float(), out32, atol=2e-2, rtol=1e-4)


def test_unshuffle_focus_is_exact():
    torch.manual_seed(0)
    focus = Focus(3, 16, ksize=3).double().eval()
    x = torch.rand(2, 3, 64, 96, dtype=torch.float64) * 255
    with torch.no_grad():
        assert torch.allclose(UnshuffleFocus(focus)(x), focus(x), rtol=0, atol=1e-9)


def test_train_mode_outputs_and_loss():
    torch.manual_seed(0)
    model = build_model("nano", num_classes=3).train()
    images = torch.rand(2, 3, 128, 160) * 255
    raw = model(images)
    assert [tuple(t.shape) for t in raw] == [(2, 8, 16, 20), (2, 8, 8, 10), (2, 8, 4, 5)]
    targets = torch.zeros(2, 120, 5)
    targets[0, 0] = torch.tensor([1, 60.0, 50.0, 40.0, 30.0])
    targets[1, :2] = torch.tensor([[0, 100.0, 64.0, 60.0, 90.0], [2, 30.0, 30.0, 20.0, 20.0]])
    model.head.use_l1 = True
    losses = model(images, targets)
    assert set(losses) == {"total_loss", "iou_loss", "conf_loss", "cls_loss", "l1_loss", "num_fg", "pss_loss"}
    assert float(losses["pss_loss"]) == 0  # no end-to-end selector
    assert all(torch.isfinite(v) for v in losses.values()) and float(losses["num_fg"].detach()) > 0
    assert float(losses["l1_loss"].detach()) > 0
    losses["total_loss"].backward()
    assert sum(float(p.weight.grad.abs().sum()) for p in model.head.cls_preds) > 0  # foreground classes learn
    assert float(model.backbone.backbone.stem.conv.conv.weight.grad.abs().sum()) > 0
