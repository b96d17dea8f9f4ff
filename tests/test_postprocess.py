"""The C++ decode/NMS core: real model outputs, both head layouts, every option, against the numpy reference."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import edge_yolox
from edge_yolox.postprocess import box_iou
from tests import reference

# ../shared/data/README.md: yolox_nano.onnx, conf 0.3, NMS 0.45, letterbox 416, boxes in source pixels.
DOG = [("dog", 0.855, [132.8, 206.6, 325.7, 543.1]), ("bicycle", 0.803, [51.7, 137.2, 572.3, 423.6]),
       ("car", 0.798, [466.3, 78.4, 692.5, 171.3])]
DOG_TRUCK = ("truck", 0.306, [464.2, 77.6, 682.8, 172.7])  # only survives per-class NMS: it overlaps the car
BUSSTOP_PERSONS = 7


def to_split(rows: np.ndarray, size=(416, 416), strides=(8, 16, 32), channels_last=False, batch=False):
    """The official rows of one image → per-stride reg/obj/cls maps, as a split-head export writes them."""
    maps, start = [], 0
    for s in strides:
        h, w = -(-size[0] // s), -(-size[1] // s)
        level = rows[start : start + h * w].reshape(h, w, -1)
        start += h * w
        for part in (level[..., :4], level[..., 4:5], level[..., 5:]):
            m = part if channels_last else part.transpose(2, 0, 1)
            maps.append(np.ascontiguousarray(m[None] if batch else m))
    return maps


def labelled(dets, names):
    return [(names[int(d[5])], float(d[4]), d[:4].tolist()) for d in dets]


def assert_same(a: np.ndarray, b: np.ndarray, atol=1e-3):
    assert a.shape == b.shape, f"{a.shape} != {b.shape}"
    np.testing.assert_allclose(a, b, atol=atol, rtol=1e-5)


@pytest.mark.parametrize("agnostic", [True, False])
def test_dog_reference_detections(nano_onnx_outputs, coco_names, agnostic):
    rows, ratio, frame = nano_onnx_outputs["dog.jpg"]
    dets = edge_yolox.postprocess(rows, (416, 416), conf=0.3, iou=0.45, class_agnostic=agnostic, ratio=ratio,
                                  frame_size=frame)
    expected = DOG if agnostic else [*DOG, DOG_TRUCK]
    got = labelled(dets, coco_names)
    assert [g[0] for g in got] == [e[0] for e in expected]
    for (_, score, box), (_, ref_score, ref_box) in zip(got, expected):
        assert score == pytest.approx(ref_score, abs=0.002)
        np.testing.assert_allclose(box, ref_box, atol=2.0)
    assert dets.dtype == np.float32 and dets.shape[1] == 6


def test_busstop_people(nano_onnx_outputs, coco_names):
    rows, ratio, frame = nano_onnx_outputs["busstop.jpg"]
    dets = edge_yolox.postprocess(rows, (416, 416), conf=0.3, iou=0.45, class_agnostic=True, ratio=ratio,
                                  frame_size=frame)
    names = [coco_names[int(c)] for c in dets[:, 5]]
    assert names.count("person") == BUSSTOP_PERSONS and names.count("bicycle") == 1
    assert dets[0, 4] == pytest.approx(0.837, abs=0.002)
    np.testing.assert_allclose(dets[0, :4], [687.3, 166.5, 788.8, 447.3], atol=2.0)


@pytest.mark.parametrize("conf,iou,agnostic", [(0.3, 0.45, True), (0.01, 0.65, False), (0.001, 0.5, False)])
@pytest.mark.parametrize("image", ["dog.jpg", "busstop.jpg"])
def test_matches_reference_on_real_outputs(nano_onnx_outputs, image, conf, iou, agnostic):
    rows, ratio, frame = nano_onnx_outputs[image]
    kw = dict(conf=conf, iou=iou, class_agnostic=agnostic, ratio=ratio, frame_size=frame)
    assert_same(edge_yolox.postprocess(rows, (416, 416), **kw), reference.postprocess(rows, (416, 416), **kw))


@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("batch", [False, True])
def test_split_layout_equals_single(nano_onnx_outputs, channels_last, batch):
    rows, ratio, frame = nano_onnx_outputs["busstop.jpg"]
    kw = dict(conf=0.01, iou=0.65, ratio=ratio, frame_size=frame)
    single = edge_yolox.postprocess(rows, (416, 416), **kw)
    split = edge_yolox.postprocess(to_split(rows[0], channels_last=channels_last, batch=batch), (416, 416), **kw)
    assert len(single) > 50
    np.testing.assert_array_equal(split, single)


def test_split_layout_can_be_forced():
    # 2 classes on a 64×64 input: the stride-32 cls map is [2, 2, 2], which fits NCHW and NHWC alike.
    rng = np.random.default_rng(0)
    rows = rng.uniform(0, 1, (64 + 16 + 4, 7)).astype(np.float32)
    maps = to_split(rows, size=(64, 64), channels_last=True)
    auto = edge_yolox.postprocess(maps, (64, 64), conf=0.1)
    forced = edge_yolox.postprocess(maps, (64, 64), conf=0.1, layout="nhwc")
    ref = reference.postprocess(rows, (64, 64), conf=0.1)
    assert_same(forced, ref)
    assert not np.array_equal(auto, forced)  # auto reads the ambiguous map as NCHW, as documented
    with pytest.raises(ValueError, match="not nchw"):
        edge_yolox.postprocess(to_split(rows, size=(64, 64), channels_last=True)[:1] * 9, (64, 64), layout="nchw")


def test_logits_and_decoded_boxes(nano_onnx_outputs):
    rows, ratio, frame = nano_onnx_outputs["dog.jpg"]
    kw = dict(conf=0.05, iou=0.65, ratio=ratio, frame_size=frame)
    expected = edge_yolox.postprocess(rows, (416, 416), **kw)

    logits = rows.copy()
    p = np.clip(rows[..., 4:], 1e-7, 1 - 1e-7)
    logits[..., 4:] = np.log(p / (1 - p))
    assert_same(edge_yolox.postprocess(logits, (416, 416), apply_sigmoid=True, **kw), expected, atol=1e-3)

    decoded = rows.copy()
    g = reference.grids((416, 416), (8, 16, 32))
    decoded[0, :, :2] = (rows[0, :, :2] + g[:, :2]) * g[:, 2:]
    decoded[0, :, 2:4] = np.exp(rows[0, :, 2:4]) * g[:, 2:]
    assert_same(edge_yolox.postprocess(decoded, (416, 416), decode_boxes=False, **kw), expected, atol=1e-2)


def test_multi_label_matches_reference(nano_onnx_outputs):
    rows, ratio, frame = nano_onnx_outputs["dog.jpg"]
    kw = dict(conf=0.05, iou=0.45, multi_label=True, ratio=ratio, frame_size=frame)
    multi = edge_yolox.postprocess(rows, (416, 416), **kw)
    assert_same(multi, reference.postprocess(rows, (416, 416), **kw))
    # Without suppression, one anchor reporting several classes is what multi-label adds.
    multi = edge_yolox.postprocess(rows, (416, 416), **{**kw, "iou": 1.0})
    best = edge_yolox.postprocess(rows, (416, 416), **{**kw, "iou": 1.0, "multi_label": False})
    assert len({tuple(d[:4]) for d in multi}) < len(multi)
    assert len({tuple(d[:4]) for d in best}) == len(best) < len(multi)


def test_batch_in_one_call(nano_onnx_outputs):
    (dog, r1, f1), (bus, r2, f2) = nano_onnx_outputs["dog.jpg"], nano_onnx_outputs["busstop.jpg"]
    batch = np.concatenate([dog, bus])
    results = edge_yolox.postprocess_batch(batch, (416, 416), conf=0.1, ratio=[r1, r2], frame_size=[f1, f2])
    assert len(results) == 2
    np.testing.assert_array_equal(results[0], edge_yolox.postprocess(dog, (416, 416), conf=0.1, ratio=r1,
                                                                     frame_size=f1))
    np.testing.assert_array_equal(results[1], edge_yolox.postprocess(bus, (416, 416), conf=0.1, ratio=r2,
                                                                     frame_size=f2))
    split = [np.concatenate([a, b]) for a, b in zip(to_split(dog[0], batch=True), to_split(bus[0], batch=True))]
    for got, want in zip(edge_yolox.postprocess_batch(split, (416, 416), conf=0.1, ratio=[r1, r2],
                                                      frame_size=[f1, f2]), results):
        np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="batch of 2"):
        edge_yolox.postprocess(batch, (416, 416))
    with pytest.raises(ValueError, match="one per image"):
        edge_yolox.postprocess_batch(batch, (416, 416), ratio=[1.0, 1.0, 1.0])


def test_max_det_is_top_k_after_nms(nano_onnx_outputs):
    rows, *_ = nano_onnx_outputs["busstop.jpg"]
    full = edge_yolox.postprocess(rows, (416, 416), conf=0.01, iou=0.65)
    top = edge_yolox.postprocess(rows, (416, 416), conf=0.01, iou=0.65, max_det=5)
    np.testing.assert_array_equal(top, full[:5])
    assert np.all(np.diff(full[:, 4]) <= 0)
    assert edge_yolox.postprocess(rows, (416, 416), conf=0.01, max_det=0).shape == (0, 6)


def test_letterbox_undo_and_clip():
    # One confident anchor at stride 8, cell (2, 3): centre (28, 20), 16×16 px in input pixels.
    rows = np.zeros((3549, 6), np.float32)
    rows[2 * 52 + 3] = [0.5, 0.5, np.log(2), np.log(2), 0.9, 1.0]
    dets = edge_yolox.postprocess(rows, (416, 416), ratio=0.5, pad=(4, 10))
    np.testing.assert_allclose(dets[0, :4], [(20 - 4) / 0.5, (12 - 10) / 0.5, (36 - 4) / 0.5, (28 - 10) / 0.5])
    clipped = edge_yolox.postprocess(rows, (416, 416), ratio=0.5, pad=(4, 10), frame_size=(20, 50))
    np.testing.assert_allclose(clipped[0, :4], [32, 4, 50, 20])


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 2**32 - 1),
    size=st.sampled_from([(32, 32), (64, 96), (96, 64), (160, 128)]),
    num_classes=st.integers(1, 12),
    conf=st.floats(0.0, 0.9),
    iou=st.floats(0.05, 0.95),
    agnostic=st.booleans(),
    multi_label=st.booleans(),
    apply_sigmoid=st.booleans(),
    max_det=st.integers(0, 60),
    ratio=st.floats(0.1, 4.0),
    clip=st.booleans(),
)
def test_property_cpp_equals_reference(seed, size, num_classes, conf, iou, agnostic, multi_label, apply_sigmoid,
                                       max_det, ratio, clip):
    rng = np.random.default_rng(seed)
    n = sum(-(-size[0] // s) * -(-size[1] // s) for s in (8, 16, 32))
    rows = np.empty((n, 5 + num_classes), np.float32)
    rows[:, :2] = rng.uniform(-1, 2, (n, 2))
    rows[:, 2:4] = rng.uniform(-1.5, 2.5, (n, 2))
    rows[:, 4:] = rng.uniform(-6, 6, (n, 1 + num_classes)) if apply_sigmoid else rng.uniform(0, 1, (n, 1 + num_classes))
    kw = dict(conf=conf, iou=iou, class_agnostic=agnostic, multi_label=multi_label, apply_sigmoid=apply_sigmoid,
              max_det=max_det, ratio=ratio, pad=tuple(rng.uniform(0, 8, 2)),
              frame_size=(size[0] * 2, size[1] * 2) if clip else None)
    got = edge_yolox.postprocess(rows, size, **kw)
    want = reference.postprocess(rows, size, **kw)
    assert_same(got, want, atol=1e-3 / ratio + 1e-4)
    split = edge_yolox.postprocess(to_split(rows, size=size, channels_last=bool(seed % 2)), size,
                                   layout="nhwc" if seed % 2 else "nchw", **kw)
    np.testing.assert_array_equal(split, got)


def test_nan_and_inf_rows_are_dropped(nano_onnx_outputs):
    rows, *_ = nano_onnx_outputs["dog.jpg"]
    clean = edge_yolox.postprocess(rows, (416, 416), conf=0.3)
    broken = rows.copy()
    broken[0, :100, 0] = np.nan  # boxes
    broken[0, 100:200, 4] = np.nan  # objectness
    broken[0, 200:300, 5:] = np.inf  # class scores
    broken[0, 300:400, 2] = 1e30  # exp overflows to inf
    dets = edge_yolox.postprocess(broken, (416, 416), conf=0.3)
    assert np.all(np.isfinite(dets))
    assert_same(dets, reference.postprocess(broken, (416, 416), conf=0.3))
    assert len(dets) <= len(clean) + 1
    all_nan = np.full_like(rows, np.nan)
    assert edge_yolox.postprocess(all_nan, (416, 416)).shape == (0, 6)


def test_other_dtypes_and_non_contiguous_arrays(nano_onnx_outputs):
    rows, ratio, frame = nano_onnx_outputs["dog.jpg"]
    expected = edge_yolox.postprocess(rows, (416, 416), conf=0.3)
    assert_same(edge_yolox.postprocess(rows.astype(np.float64), (416, 416), conf=0.3), expected)
    assert_same(edge_yolox.postprocess(rows.astype(np.float16), (416, 416), conf=0.3), expected, atol=0.6)
    fortran = np.asfortranarray(rows[0])
    strided = np.zeros((3549, 170), np.float32)
    strided[:, ::2] = rows[0]
    for view in (fortran, strided[:, ::2], rows[0][::1]):
        np.testing.assert_array_equal(edge_yolox.postprocess(view, (416, 416), conf=0.3), expected)


@pytest.mark.parametrize(
    "outputs,kwargs,error,match",
    [
        (np.full((3549, 85), "x", object), {}, TypeError, "not a numeric array"),
        ({"a": 1}, {}, TypeError, "not a numeric array"),
        (np.array(["a", "b"]), {}, TypeError, "not a numeric array"),
        (np.zeros(85, np.float32), {}, ValueError, r"\[N, 5\+C\]"),
        (np.zeros((1, 1, 3549, 85), np.float32), {}, ValueError, r"\[N, 5\+C\]"),
        (np.zeros((3549, 5), np.float32), {}, ValueError, "num_classes"),
        (np.zeros((3548, 85), np.float32), {}, ValueError, "3548 anchors .* needs 3549"),
        (np.zeros((0, 85), np.float32), {}, ValueError, "0 anchors"),
        (np.zeros((3549, 85), np.float32), {"input_size": (0, 416)}, ValueError, "input_size"),
        (np.zeros((3549, 85), np.float32), {"strides": ()}, ValueError, "strides"),
        (np.zeros((3549, 85), np.float32), {"strides": (8, 0, 32)}, ValueError, "strides"),
        (np.zeros((3549, 85), np.float32), {"ratio": 0.0}, ValueError, "ratio"),
        (np.zeros((3549, 85), np.float32), {"ratio": float("nan")}, ValueError, "ratio"),
        (np.zeros((3549, 85), np.float32), {"max_det": -1}, ValueError, "max_det"),
        (np.zeros((3549, 85), np.float32), {"layout": "nchwc"}, ValueError, "layout"),
        (np.zeros((3549, 85), np.float32), {"pad": 3}, ValueError, "pad"),
        ([np.zeros((4, 52, 52), np.float32)] * 2, {}, ValueError, "3 arrays"),
        ([np.zeros((4, 52, 52), np.float32)] * 9, {}, ValueError, "channels, expected 1"),
        ([np.zeros((4, 50, 52), np.float32)] * 9, {}, ValueError, "fits neither"),
        ([np.zeros((2, 4, 52, 52), np.float32)] + [np.zeros((4, 52, 52), np.float32)] * 8, {}, ValueError,
         "inconsistent"),
        ([], {}, ValueError, "no outputs"),
    ],
)
def test_bad_input_raises_clear_errors(outputs, kwargs, error, match):
    kwargs = {"input_size": (416, 416), **kwargs}
    with pytest.raises(error, match=match):
        edge_yolox.postprocess(outputs, **kwargs)


def test_empty_decoded_rows_give_no_detections():
    assert edge_yolox.postprocess(np.zeros((0, 85), np.float32), (416, 416), decode_boxes=False).shape == (0, 6)


def test_gil_is_released_while_computing():
    # Tens of thousands of overlapping candidates make NMS take a while; a Python thread must keep running.
    rng = np.random.default_rng(1)
    rows = np.ones((60000, 6), np.float32)
    rows[:, :2] = rng.uniform(0, 4000, (60000, 2))
    rows[:, 2:4] = 4.0
    rows[:, 4] = rng.uniform(0.5, 1, 60000)
    ticks, done = [], threading.Event()

    def count():
        while not done.is_set():
            ticks.append(1)

    worker = threading.Thread(target=count)
    worker.start()
    try:
        for _ in range(3):
            before = len(ticks)
            edge_yolox.postprocess(rows, (416, 416), conf=0.01, decode_boxes=False, max_det=100000)
            during = len(ticks) - before
            if during > 0:
                break
    finally:
        done.set()
        worker.join()
    assert during > 0, "a Python thread made no progress while postprocess ran: the GIL was held"



def test_box_iou_of_one_box_with_many():
    box = np.array([0.0, 0.0, 10.0, 10.0])
    boxes = np.array([[0, 0, 10, 10, 0.9, 1], [5, 0, 15, 10, 0.8, 1], [20, 20, 30, 30, 0.7, 0], [0, 0, 5, 5, 0.6, 2]])
    np.testing.assert_allclose(box_iou(box, boxes), [1.0, 50 / 150, 0.0, 25 / 100])
    assert box_iou(box, np.zeros((0, 6))).shape == (0,)
