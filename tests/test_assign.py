"""SimOTA: hand-made cases (dynamic k, conflicts, no ground truth, many ground truths) and agreement with the
plain per-image reference in tests/train_reference.py."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edge_yolox.train.assign import candidate_regions, simota_assign  # noqa: E402

from tests.train_reference import anchors, assign_image  # noqa: E402


def batch_inputs(size, gts_per_image, num_classes=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    grid, stride = anchors(size, dtype=dtype)
    b, a = len(gts_per_image), len(grid)
    raw = torch.randn(b, a, 4, generator=g, dtype=dtype)
    boxes = torch.cat([(raw[..., :2] + grid) * stride[:, None], raw[..., 2:].exp() * stride[:, None] * 2], -1)
    obj = torch.randn(b, a, generator=g, dtype=dtype)
    cls = torch.randn(b, a, num_classes, generator=g, dtype=dtype)
    g_max = max(max(gts_per_image), 1)
    gt_boxes = torch.zeros(b, g_max, 4, dtype=dtype)
    gt_cls = torch.zeros(b, g_max, dtype=torch.long)
    valid = torch.zeros(b, g_max, dtype=torch.bool)
    for i, n in enumerate(gts_per_image):
        gt_boxes[i, :n, :2] = torch.rand(n, 2, generator=g, dtype=dtype) * size
        gt_boxes[i, :n, 2:] = torch.rand(n, 2, generator=g, dtype=dtype) * size / 3 + 3
        gt_cls[i, :n] = torch.randint(0, num_classes, (n,), generator=g)
        valid[i, :n] = True
    return boxes, obj, cls, (grid + 0.5) * stride[:, None], stride, gt_boxes, gt_cls, valid


def check_against_reference(inputs, mode="center", **kw):
    boxes, obj, cls, centers, stride, gt_boxes, gt_cls, valid = inputs
    result = simota_assign(*inputs, mode=mode, **kw)
    for b in range(len(boxes)):
        n = int(valid[b].sum())
        fg, gi, iou = assign_image(boxes[b], obj[b], cls[b], centers, stride, gt_boxes[b, :n], gt_cls[b, :n], mode)
        assert torch.equal(result.fg[b], fg)
        assert torch.equal(result.gt_index[b][fg], gi[fg])
        assert torch.allclose(result.iou[b], iou)
    return result


@pytest.mark.parametrize("mode", ["center", "legacy"])
def test_random_batches_match_the_per_image_reference(mode):
    result = check_against_reference(batch_inputs(160, [3, 0, 9, 1], seed=1), mode)
    assert result.num_fg > 0
    assert not result.fg[1].any()  # the image without ground truth has no foreground


def test_many_ground_truths_and_bounded_chunks_give_the_same_answer():
    inputs = batch_inputs(320, [120, 40], seed=2)
    whole = check_against_reference(inputs)
    chunked = simota_assign(*inputs, max_elements=1)  # one image per chunk
    assert torch.equal(whole.fg, chunked.fg) and torch.equal(whole.gt_index, chunked.gt_index)
    assert len(torch.unique(whole.gt_index[0][whole.fg[0]])) > 60  # most of the 120 objects got anchors


def perfect_case(iou_scale: float):
    """One 40x40 ground truth at (100, 100) of a 224 input; every prediction is the box scaled in width so its
    IoU with the ground truth is `iou_scale`. Radius 1.5 gives 3x3 candidates per level = 27."""
    grid, stride = anchors(224, dtype=torch.float64)
    a = len(grid)
    gt = torch.tensor([[[100.0, 100.0, 40.0, 40.0]]], dtype=torch.float64)
    boxes = torch.tensor([100.0, 100.0, 40.0 * iou_scale, 40.0], dtype=torch.float64).expand(1, a, 4)
    obj, cls = torch.zeros(1, a, dtype=torch.float64), torch.zeros(1, a, 2, dtype=torch.float64)
    return boxes, obj, cls, (grid + 0.5) * stride[:, None], stride, gt, torch.zeros(1, 1, dtype=torch.long), \
        torch.ones(1, 1, dtype=torch.bool)


@pytest.mark.parametrize("iou, expected_k", [(1.0, 10), (0.35, 3), (0.05, 1)])
def test_dynamic_k_is_the_truncated_sum_of_the_top_10_ious(iou, expected_k):
    result = simota_assign(*perfect_case(iou))
    assert result.num_fg == expected_k
    assert torch.allclose(result.iou[result.fg], torch.tensor(iou, dtype=torch.float64))


def test_anchor_wanted_by_two_ground_truths_goes_to_the_cheaper_one():
    boxes, obj, cls, centers, stride, gt, _, _ = perfect_case(1.0)
    gt = gt.expand(1, 2, 4).clone()  # the same box twice, class 0 and class 1
    gt_cls = torch.tensor([[0, 1]])
    cls = cls.clone()
    cls[..., 1] = 5.0  # predictions say class 1: cheaper for the second ground truth
    result = simota_assign(boxes, obj, cls, centers, stride, gt, gt_cls, torch.ones(1, 2, dtype=torch.bool))
    assert result.num_fg == 10  # both wanted the same 10 anchors; each is kept once
    assert torch.all(result.gt_index[result.fg] == 1)


def test_no_ground_truth_anywhere():
    inputs = batch_inputs(96, [0, 0], seed=3)
    result = simota_assign(*inputs)
    assert result.num_fg == 0 and not result.iou.any()


def test_padding_rows_anywhere_keep_their_row_index():
    boxes, obj, cls, centers, stride, gt, gt_cls, valid = perfect_case(1.0)
    gt = torch.cat([torch.zeros(1, 2, 4, dtype=gt.dtype), gt], 1)  # valid row is row 2
    valid = torch.tensor([[False, False, True]])
    result = simota_assign(boxes, obj, cls, centers, stride, gt, torch.zeros(1, 3, dtype=torch.long), valid)
    assert result.num_fg == 10 and torch.all(result.gt_index[result.fg] == 2)


def test_legacy_mode_takes_in_box_anchors_beyond_the_radius():
    # A 200x200 box: the legacy rule (in box or within 2.5 strides) offers many more candidates than the current
    # one (within 1.5 strides); both agree with the reference.
    boxes, obj, cls, centers, stride, _, gt_cls, valid = perfect_case(1.0)
    gt = torch.tensor([[[112.0, 112.0, 200.0, 200.0]]], dtype=torch.float64)
    legacy_candidates, _ = candidate_regions(gt, centers, stride, "legacy")
    center_candidates, _ = candidate_regions(gt, centers, stride, "center")
    assert legacy_candidates.sum() > 4 * center_candidates.sum()
    for mode in ("legacy", "center"):
        check_against_reference((gt.expand_as(boxes), obj, cls, centers, stride, gt, gt_cls, valid), mode)


def test_unknown_mode_is_rejected():
    with pytest.raises(ValueError, match="unknown SimOTA mode"):
        simota_assign(*perfect_case(1.0), mode="atss")
