"""Every augmentation keeps boxes consistent with pixels.

Method: each ground-truth box k is drawn white on black, alone, and the same seeded augmentation is replayed once
per box (the random draws do not depend on pixel values). The bright pixels of run k must then fill the box
labelled k in the output."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from edge_yolox.train.data import augment as A  # noqa: E402
from edge_yolox.train.data.datasets import DetectionDataset, Record  # noqa: E402
from edge_yolox.train.data.loader import TrainDataset  # noqa: E402

SOURCE_SHAPE = (96, 128)  # h, w: not square, so letterbox/fit maths is exercised
INPUT = (128, 128)
# Per source image: boxes xyxy; class id = global box index (0..11).
BOXES = [
    [[10, 8, 50, 40], [70, 20, 120, 60], [20, 55, 60, 90]],
    [[5, 5, 60, 45], [80, 50, 125, 92], [30, 60, 55, 85]],
    [[40, 10, 90, 50], [5, 60, 45, 94], [95, 5, 126, 40]],
    [[8, 8, 120, 30], [15, 45, 70, 90], [85, 45, 120, 90]],
]


class ShownDataset(DetectionDataset):
    """The four source images, with only box `shown` painted (white on black)."""

    shown: int = -1

    def load(self, index):
        image = np.zeros((*SOURCE_SHAPE, 3), np.uint8)
        rec = self.records[index]
        for box, cls in zip(rec.boxes.astype(int), rec.classes):
            if cls == self.shown:
                image[box[1]:box[3], box[0]:box[2]] = 255
        labels = np.concatenate([rec.boxes, rec.classes[:, None].astype(np.float32)], 1)
        return image, labels


def make_dataset() -> ShownDataset:
    records, k = [], 0
    for i, boxes in enumerate(BOXES):
        records.append(Record(Path(f"{i}.png"), np.asarray(boxes, np.float32), np.arange(k, k + len(boxes)), i + 1,
                              SOURCE_SHAPE))
        k += len(boxes)
    return ShownDataset([f"c{i}" for i in range(k)], records, "memory")


def replay(augment, threshold: float):
    """Run `augment(dataset, rng) -> (image, labels)` once per shown box with the same seed; return the labels
    and, per class, the bounding box of the bright pixels."""
    dataset = make_dataset()
    bright, labels = {}, None
    for k in range(dataset.num_classes):
        dataset.shown = k
        image, labels_k = augment(dataset, np.random.default_rng(1234))
        assert labels is None or np.array_equal(labels, labels_k)
        labels = labels_k
        ys, xs = np.nonzero(image.max(-1) > threshold)
        if len(xs):
            bright[k] = np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], np.float32)
    return labels, bright


def assert_boxes_match_pixels(labels, bright, tol=2.5, size=INPUT):
    """Each label encloses its pixels; it fits them tightly unless it was clipped at the border (a rotated box
    cut by the border keeps the clipped hull of its corners, as in the official augmentation)."""
    assert len(labels), "the augmentation dropped every box"
    for k in np.unique(labels[:, 4]).astype(int):
        rows = labels[labels[:, 4] == k]
        union = np.concatenate([rows[:, :2].min(0), rows[:, 2:4].max(0)])
        assert k in bright, f"box {k} is labelled but none of its pixels are visible"
        pixels = bright[k]
        assert np.all(union[:2] <= pixels[:2] + tol) and np.all(union[2:] >= pixels[2:] - tol), (k, union, pixels)
        clipped = union[0] <= 0 or union[1] <= 0 or union[2] >= size[1] or union[3] >= size[0]
        if not clipped:
            np.testing.assert_allclose(union, pixels, atol=tol, err_msg=f"box {k}")


def single(dataset, index=0):
    return dataset.load(index)


def test_flip():
    labels, bright = replay(lambda d, rng: A.hflip(*single(d)), 128)
    assert_boxes_match_pixels(labels, bright, tol=0)


def test_resize_to_fit_and_pad():
    def aug(d, rng):
        image, labels = A.resize_to_fit(*single(d), INPUT)
        return A.pad_to(image, INPUT), labels

    labels, bright = replay(aug, 185)
    assert_boxes_match_pixels(labels, bright, tol=1.5)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_affine_rotation_scale_shear_translate(seed):
    cfg = A.AugmentConfig(degrees=25.0, translate=0.1, mosaic_scale=(0.6, 1.4), shear=8.0)

    def aug(d, rng):
        rng = np.random.default_rng(seed)
        image, labels = A.resize_to_fit(*single(d, seed % 4), INPUT)
        return A.random_affine(A.pad_to(image, INPUT), labels, rng, INPUT, cfg)

    labels, bright = replay(aug, 185)
    assert_boxes_match_pixels(labels, bright, tol=3)


def test_mosaic():
    labels, bright = replay(lambda d, rng: A.mosaic([d.load(i) for i in range(4)], rng, INPUT), 185)
    assert len(labels) > 4  # boxes from several source images survive
    assert_boxes_match_pixels(labels, bright, tol=1.5)


def test_mixup_keeps_both_label_sets():
    def aug(d, rng):
        image, labels = A.resize_to_fit(*single(d, 0), INPUT)
        return A.mixup(A.pad_to(image, INPUT), labels, *single(d, 2), rng)

    labels, bright = replay(aug, 120)  # a white box blended 50/50 is >= 127
    classes = set(labels[:, 4].astype(int))
    assert {0, 1, 2} <= classes and classes & {6, 7, 8}
    assert_boxes_match_pixels(labels, bright, tol=3)


@pytest.mark.parametrize("mosaic_prob, mixup_prob", [(1.0, 0.0), (1.0, 1.0), (0.0, 0.0)])
def test_full_training_pipeline(mosaic_prob, mixup_prob):
    cfg = A.AugmentConfig(mosaic_prob=mosaic_prob, mixup_prob=mixup_prob, hsv_prob=0.0, flip_prob=0.5,
                          degrees=10.0, mosaic_scale=(0.5, 1.5), shear=2.0)

    def aug(d, rng):
        return TrainDataset(d, INPUT, cfg).sample(1, rng)

    labels, bright = replay(aug, 120 if mixup_prob else 185)
    assert_boxes_match_pixels(labels, bright, tol=3)


def test_hsv_jitter_changes_colour_not_geometry():
    image = np.zeros((32, 32, 3), np.uint8)
    image[8:24, 8:24] = (30, 160, 220)
    changed = [A.hsv_jitter(image, np.random.default_rng(s)) for s in range(8)]
    assert any(not np.array_equal(c, image) for c in changed)
    for c in changed:
        assert c.shape == image.shape and not c[:8].any() and not c[24:].any()  # black stays black


def test_pack_targets_drops_tiny_boxes_caps_and_converts():
    labels = np.array([[10, 10, 30, 50, 3], [5, 5, 5.9, 40, 1], [0, 0, 100, 1.0, 2]], np.float32)
    packed = A.pack_targets(labels)
    assert packed.shape == (A.MAX_LABELS, 5)
    np.testing.assert_allclose(packed[0], [3, 20, 30, 20, 40])
    assert not packed[1:].any()  # both 1-px-or-thinner boxes dropped, the rest is padding
    many = np.tile(labels[:1], (200, 1))
    assert (A.pack_targets(many).sum(1) > 0).sum() == A.MAX_LABELS
