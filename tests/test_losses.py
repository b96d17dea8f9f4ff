"""The YOLOX loss: equal to a plain per-image reference, to the official implementation's values on a recorded
case, and well-behaved on empty batches."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from edge_yolox.train.losses import yolox_loss  # noqa: E402

from tests.train_reference import reference_loss  # noqa: E402

KEYS = ("total_loss", "iou_loss", "conf_loss", "cls_loss", "l1_loss", "num_fg")


def random_case(batch, num_classes, size, gts_per_image, seed, scale=1.5, dtype=torch.float32):
    """Random raw head maps and targets (class, cx, cy, w, h), built exactly as in the official comparison."""
    g = torch.Generator().manual_seed(seed)
    outs = [torch.randn(batch, 5 + num_classes, size // s, size // s, generator=g) * scale for s in (8, 16, 32)]
    labels = torch.zeros(batch, 120, 5)
    for b, n in enumerate(gts_per_image):
        wh = torch.rand(n, 2, generator=g) * size * 0.5 + 4
        c = torch.rand(n, 2, generator=g) * size
        labels[b, :n, 0] = torch.randint(0, num_classes, (n,), generator=g).float()
        labels[b, :n, 1:3] = c
        labels[b, :n, 3:5] = wh
    return [o.to(dtype) for o in outs], labels.to(dtype)


@pytest.mark.parametrize("use_l1", [False, True])
def test_equals_the_per_image_reference(use_l1):
    outs, labels = random_case(3, 5, 160, [4, 0, 12], seed=7, dtype=torch.float64)
    mine = yolox_loss(outs, (8, 16, 32), labels, use_l1)
    ref = reference_loss(outs, (8, 16, 32), labels, use_l1)
    for key in KEYS:
        assert float(mine[key]) == pytest.approx(float(ref[key]), rel=1e-9, abs=1e-12), key


def test_equals_recorded_official_values():
    # Produced by running the official YOLOXHead.get_losses (github Megvii-BaseDetection/YOLOX @ 6ddff48, fetched
    # into /tmp, outside this repository) on exactly these inputs (random_case(4, 80, 416, [1, 7, 30, 0], seed=2),
    # use_l1=True), in float32 on CPU.
    official = {"total_loss": 418.503510, "iou_loss": 4.893836, "conf_loss": 332.442017, "cls_loss": 75.273163,
                "l1_loss": 5.894498, "num_fg": 1.052632}
    outs, labels = random_case(4, 80, 416, [1, 7, 30, 0], seed=2)
    mine = yolox_loss(outs, (8, 16, 32), labels, use_l1=True)
    for key, value in official.items():
        assert float(mine[key]) == pytest.approx(value, rel=1e-5), key


def test_gradients_reach_every_output_and_are_finite():
    outs, labels = random_case(2, 3, 96, [2, 1], seed=3)
    outs = [o.requires_grad_() for o in outs]
    yolox_loss(outs, (8, 16, 32), labels, use_l1=True)["total_loss"].backward()
    for o in outs:
        assert torch.isfinite(o.grad).all() and o.grad.abs().sum() > 0


def test_batch_without_objects_trains_objectness_only():
    outs, labels = random_case(2, 3, 96, [0, 0], seed=4)
    losses = yolox_loss(outs, (8, 16, 32), labels, use_l1=True)
    assert float(losses["num_fg"]) == 0 and float(losses["iou_loss"]) == 0 and float(losses["cls_loss"]) == 0
    assert float(losses["conf_loss"]) > 0 and torch.isfinite(losses["total_loss"])


def test_half_precision_outputs_are_computed_in_float32():
    outs, labels = random_case(1, 3, 96, [2], seed=5)
    full = yolox_loss(outs, (8, 16, 32), labels)
    half = yolox_loss([o.bfloat16() for o in outs], (8, 16, 32), labels)
    assert half["total_loss"].dtype == torch.float32
    assert float(half["total_loss"]) == pytest.approx(float(full["total_loss"]), rel=0.05)
