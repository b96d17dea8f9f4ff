"""The training input pipeline: a torch Dataset applying the YOLOX augmentations and a seeded epoch sampler.

Each sample's randomness is seeded by (seed, epoch, index) and each epoch's order by (seed, epoch), so a run is
reproducible for any number of workers and a resumed run continues exactly.
"""

from __future__ import annotations

import numpy as np
import torch

from . import augment as A
from .datasets import DetectionDataset


class TrainDataset(torch.utils.data.Dataset):
    def __init__(self, dataset: DetectionDataset, size: tuple[int, int], cfg: A.AugmentConfig, seed: int = 0,
                 max_labels: int = A.MAX_LABELS):
        self.dataset, self.size, self.cfg, self.seed, self.max_labels = dataset, tuple(size), cfg, seed, max_labels
        self.epoch = 0
        self.strong = True  # mosaic/mixup on; off in the no-aug tail
        self.with_labels = [i for i, r in enumerate(dataset.records) if len(r.boxes)] or list(range(len(dataset)))

    def set_epoch(self, epoch: int, strong: bool) -> None:
        self.epoch, self.strong = epoch, strong

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self, index: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        """(BGR uint8 image of self.size, labels [N, 5] xyxy+class) after all augmentations."""
        cfg, size = self.cfg, self.size
        if self.strong and rng.random() < cfg.mosaic_prob:
            picks = [index] + [int(i) for i in rng.integers(0, len(self.dataset), 3)]
            image, labels = A.mosaic([self.dataset.load(i) for i in picks], rng, size)
            image, labels = A.random_affine(image, labels, rng, size, cfg)
            if len(labels) and rng.random() < cfg.mixup_prob:
                other = self.with_labels[int(rng.integers(0, len(self.with_labels)))]
                image, labels = A.mixup(image, labels, *self.dataset.load(other), rng, cfg.mixup_scale)
        else:
            image, labels = A.resize_to_fit(*self.dataset.load(index), size)
        if rng.random() < cfg.hsv_prob:
            image = A.hsv_jitter(image, rng, cfg.hsv_gains)
        if rng.random() < cfg.flip_prob:
            image, labels = A.hflip(image, labels)
        image, labels = A.resize_to_fit(image, labels, size)
        return A.pad_to(image, size), labels

    def __getitem__(self, index: int):
        rng = np.random.default_rng([self.seed, self.epoch, index])
        image, labels = self.sample(index, rng)
        chw = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))).float()
        return chw, torch.from_numpy(A.pack_targets(labels, self.max_labels))


class EpochSampler(torch.utils.data.Sampler):
    """A permutation of the dataset seeded by (seed, epoch), split across DDP ranks (padded to equal length)."""

    def __init__(self, length: int, seed: int = 0, rank: int = 0, world: int = 1):
        self.length, self.seed, self.rank, self.world = length, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed * 100003 + self.epoch)
        order = torch.randperm(self.length, generator=g).tolist()
        per_rank = -(-self.length // self.world)
        order += order[:per_rank * self.world - len(order)]
        return iter(order[self.rank::self.world])

    def __len__(self) -> int:
        return -(-self.length // self.world)


def make_loader(dataset: TrainDataset, batch_size: int, workers: int, sampler: EpochSampler):
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, sampler=sampler, num_workers=workers,
                                       pin_memory=torch.cuda.is_available(), drop_last=len(sampler) >= batch_size,
                                       persistent_workers=False)


def resize_batch(images: torch.Tensor, targets: torch.Tensor, size: tuple[int, int]):
    """Multi-scale: bilinear-resize a batch and scale its target boxes (padding rows stay zero)."""
    if tuple(images.shape[-2:]) == tuple(size):
        return images, targets
    sy, sx = size[0] / images.shape[-2], size[1] / images.shape[-1]
    images = torch.nn.functional.interpolate(images, size=size, mode="bilinear", align_corners=False)
    targets = targets.clone()
    targets[..., [1, 3]] *= sx
    targets[..., [2, 4]] *= sy
    return images, targets
