"""The YOLOX training loop: SGD (Nesterov, 3 parameter groups), warmup-cosine schedule, EMA, multi-scale,
no-augmentation tail with L1, periodic COCO evaluation, official-layout checkpoints, exact resume, DDP.

`edge-yolox train --variant nano --data D [...]` lands in `main(argv)`; under `torchrun` each process trains
one shard (DistributedDataParallel, gloo on CPU / nccl on GPU) and rank 0 logs, evaluates and saves. The pieces
it drives live beside it: config.py (TrainConfig, flags), optimizer.py, ema.py, surgery.py (folded-BN weights),
checkpoint.py (save, resume) and runlog.py.
"""

from __future__ import annotations

import os
import random
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from edge_yolox.errors import ConfigError, EdgeYoloxError, one_line

from .checkpoint import CLS_PREFIX, LoadReport, load_checkpoint, load_training_state, save_checkpoint
from .config import TrainConfig, parse_args
from .data.augment import AugmentConfig
from .data.datasets import DetectionDataset, open_dataset
from .data.loader import EpochSampler, TrainDataset, make_loader, resize_batch
from .data.synthetic import generate_scenes
from .distributed import unwrap
from .ema import ModelEMA
from .losses import LOSS_KEYS
from .models import build_model
from .optimizer import build_optimizer, warmcos_lr
from .runlog import RunLog
from .surgery import balance_conv_scales, bn_is_folded, unfold_batchnorm


def resolve_data(spec: str, out: Path) -> str:
    """`synthetic[:N]` generates N synthetic scenes (default 2000) into OUT/synthetic once; else a path."""
    if not spec.startswith("synthetic"):
        return spec
    count = int(spec.split(":", 1)[1]) if ":" in spec else 2000
    target = out / f"synthetic-{count}"
    if not (target / "annotations" / "instances.json").exists():
        generate_scenes(target, count, seed=1234)
    return str(target)


def evaluate_ap(model: nn.Module, dataset: DetectionDataset, img_size: int) -> tuple[float, float]:
    """(AP50:95, AP50) of a model on a dataset through the shared evaluator."""
    from .evaluate import evaluate_dataset

    stats = evaluate_dataset(model, dataset, (img_size, img_size))
    return float(stats["AP"]), float(stats["AP50"])


@torch.no_grad()
def validation_loss(model: nn.Module, dataset: DetectionDataset, img_size: int, batch: int = 8) -> float:
    """Mean total loss (without L1) over a dataset letterboxed to img_size with no augmentation, in eval mode.

    Unlike the training loss, which moves with each epoch's mosaics and jumps when the no-aug tail adds L1,
    this is the same measurement every epoch: it shows whether the model is learning."""
    data = TrainDataset(dataset, (img_size, img_size), AugmentConfig(mosaic_prob=0, mixup_prob=0, hsv_prob=0,
                                                                    flip_prob=0))
    data.set_epoch(0, strong=False)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    try:
        for images, targets in torch.utils.data.DataLoader(data, batch_size=batch):
            loss = model.head.loss(model.backbone(images.to(device)), targets.to(device))["total_loss"]
            total += float(loss) * len(images)
            count += len(images)
    finally:
        model.train(was_training)
    return total / max(count, 1)


class Trainer:
    def __init__(self, cfg: TrainConfig):
        self.cfg = cfg
        self.rank, self.world = int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))
        self.device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}" if torch.cuda.is_available()
                                   else "cpu")
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
        self.out = Path(cfg.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.use_amp = cfg.amp and self.device.type == "cuda"
        if cfg.batch % self.world:
            raise ConfigError(f"--batch {cfg.batch} is not divisible by the {self.world} processes")

        random.seed(cfg.seed)
        np.random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        data_path = resolve_data(cfg.data, self.out) if self.rank == 0 else None
        if self.world > 1:
            holder = [data_path]
            dist.broadcast_object_list(holder, 0)
            data_path = holder[0]
        self.dataset = open_dataset(data_path, "train")
        self.val_dataset = open_dataset(resolve_data(cfg.val_data, self.out), "val") if cfg.val_data \
            else self.dataset
        self.train_data = TrainDataset(self.dataset, (cfg.img_size, cfg.img_size), cfg.aug, cfg.seed)
        self.sampler = EpochSampler(len(self.dataset), cfg.seed, self.rank, self.world)
        self.loader = make_loader(self.train_data, cfg.batch // self.world, cfg.workers, self.sampler)
        self.iters_per_epoch = len(self.loader) if not cfg.max_iters else min(cfg.max_iters, len(self.loader))

        self.model = self.build_model().to(self.device)
        if cfg.sync_bn and self.world > 1:
            self.model = nn.SyncBatchNorm.convert_sync_batchnorm(self.model)
        self.optimizer = build_optimizer(self.model, cfg)
        self.ema = ModelEMA(self.model) if cfg.ema else None
        self.start_epoch, self.best_ap = 0, 0.0
        if cfg.resume:
            self.resume(cfg.resume)
        if self.world > 1:
            self.model = nn.parallel.DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None)
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp)
        self.log = RunLog(self.out, bool(cfg.resume)) if self.rank == 0 else None

    def build_model(self) -> nn.Module:
        cfg = self.cfg
        model = build_model(cfg.variant, self.dataset.num_classes, e2e=cfg.e2e)
        model.head.assign_mode = cfg.assign_mode
        if cfg.weights and not cfg.resume:
            report = self.load_weights(model)
            if cfg.selector_only and any(k.startswith(CLS_PREFIX) for k in report.reinitialized):
                raise ConfigError(f"{cfg.weights}: has another class count than {cfg.data}: selector_only would "
                                  "train a selector over untrained, frozen class predictions (train without it)")
        if cfg.selector_only:  # the stop-gradient makes this what the selector would learn beside a training model
            model.freeze_all_but_pss()
        return model

    def load_weights(self, model: nn.Module) -> LoadReport:
        report = load_checkpoint(model, self.cfg.weights)
        if bn_is_folded(model):
            self.say("the weights have BatchNorm folded: measuring BN statistics on up to 8 training batches and "
                     "restoring conv weight scales")
            batches = self.calibration_batches(8)
            unfold_batchnorm(model, (images for images, _ in batches))
            balance_conv_scales(model, *batches[0])
        return report

    def calibration_batches(self, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        plain = TrainDataset(self.dataset, self.train_data.size, AugmentConfig(0, 0, 0, 0), self.cfg.seed)
        loader = torch.utils.data.DataLoader(plain, batch_size=min(self.cfg.batch, 16), shuffle=False)
        return [batch for _, batch in zip(range(count), loader)]

    def resume(self, path: str) -> None:
        self.start_epoch, self.best_ap = load_training_state(path, self.model, self.optimizer, self.ema)
        self.say(f"resumed from {path} at epoch {self.start_epoch}")

    def say(self, message: str) -> None:
        if self.rank == 0:
            print(message, file=sys.stderr, flush=True)

    def input_size(self, epoch: int, it: int) -> tuple[int, int]:
        """Multi-scale: a size from the range, drawn every `multiscale_every` iterations from a generator seeded
        by (seed, epoch, block), so every rank picks the same size without a broadcast."""
        cfg = self.cfg
        block = it // cfg.multiscale_every
        if not cfg.multiscale or block == 0 and epoch == 0:
            return cfg.img_size, cfg.img_size
        lo, hi = (v // 32 for v in cfg.multiscale)
        s = 32 * int(np.random.default_rng([cfg.seed, epoch, block]).integers(lo, hi + 1))
        return s, s

    def train_step(self, images: torch.Tensor, targets: torch.Tensor, lr: float) -> dict[str, float]:
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        with torch.autocast(self.device.type, enabled=self.use_amp):
            losses = self.model(images, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(losses["total_loss"]).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()
        if self.ema:
            self.ema.update(self.model)
        return {k: float(losses[k].detach()) if torch.is_tensor(losses[k]) else float(losses[k]) for k in LOSS_KEYS}

    def train(self) -> float:
        from tqdm import tqdm

        cfg = self.cfg
        for epoch in range(self.start_epoch, cfg.epochs):
            tail = epoch >= cfg.epochs - cfg.no_aug_epochs
            unwrap(self.model).head.use_l1 = tail
            self.train_data.set_epoch(epoch, strong=not tail)
            self.sampler.set_epoch(epoch)
            self.model.train()
            bar = tqdm(total=self.iters_per_epoch, desc=f"epoch {epoch + 1}/{cfg.epochs}", disable=self.rank != 0,
                       dynamic_ncols=True, file=sys.stderr)
            shown = [k for k in LOSS_KEYS if k != "num_fg" and (k != "pss_loss" or cfg.e2e)]  # in the progress bar
            start = time.perf_counter()
            for it, (images, targets) in enumerate(self.loader):
                if it == self.iters_per_epoch:
                    break
                step = epoch * self.iters_per_epoch + it
                images, targets = resize_batch(images.to(self.device), targets.to(self.device),
                                               self.input_size(epoch, it))
                lr = warmcos_lr(cfg, step + 1, self.iters_per_epoch)
                values = self.train_step(images, targets, lr)
                img_s = (it + 1) * cfg.batch / (time.perf_counter() - start)
                bar.set_postfix_str(" ".join(f"{k.split('_')[0]} {values[k]:.2f}" for k in shown)
                                    + f" lr {lr:.2e} {img_s:.1f} img/s {images.shape[-1]}px")
                bar.update()
                if self.log and (it % 10 == 0 or it == self.iters_per_epoch - 1):
                    self.log.write({"epoch": epoch, "iter": it / self.iters_per_epoch, "lr": lr, **values,
                                    "img_s": img_s}, step)
            bar.close()
            self.end_epoch(epoch, tail)
        if self.log:
            self.log.plot()
            self.log.close()
        return self.best_ap

    def end_epoch(self, epoch: int, tail: bool) -> None:
        """Rank 0 evaluates (every eval_interval epochs, every epoch in the tail, and at the end) and saves."""
        last = epoch == self.cfg.epochs - 1
        interval = self.cfg.eval_interval
        should_eval = interval > 0 and (tail or last or (epoch + 1) % interval == 0)
        if self.rank == 0:
            ap = None
            if should_eval:
                model = self.ema.model if self.ema else unwrap(self.model)
                ap, ap50 = evaluate_ap(model, self.val_dataset, self.cfg.img_size)
                val_loss = validation_loss(model, self.val_dataset, self.cfg.img_size)
                self.say(f"epoch {epoch + 1}: AP50:95 {ap:.4f} AP50 {ap50:.4f} validation loss {val_loss:.3f}")
                self.log.write({"epoch": epoch + 1, "iter": 0, "ap": ap, "ap50": ap50, "val_loss": val_loss},
                               (epoch + 1) * self.iters_per_epoch)
                self.log.plot()
            save = dict(model=self.model, ema=self.ema, optimizer=self.optimizer, epoch=epoch, cfg=self.cfg,
                        num_classes=self.dataset.num_classes)
            if ap is not None and ap >= self.best_ap:
                self.best_ap = ap
                save_checkpoint(self.out / "best_ckpt.pth", best_ap=self.best_ap, curr_ap=ap, **save)
            save_checkpoint(self.out / "last_ckpt.pth", best_ap=self.best_ap, curr_ap=ap or 0.0, **save)
        if self.world > 1:
            dist.barrier()


def main(argv: list[str] | None = None) -> int:
    try:
        cfg = parse_args(argv)
        trainer = Trainer(cfg)
        best = trainer.train()
    except EdgeYoloxError as exc:
        print(f"edge-yolox train: {one_line(exc)}", file=sys.stderr)
        return 2
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    if trainer.rank == 0:
        print(f"best AP50:95 {best:.4f}; checkpoints in {cfg.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
