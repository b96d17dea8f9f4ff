"""The YOLOX training loop: SGD (Nesterov, 3 parameter groups), warmup-cosine schedule, EMA, multi-scale,
no-augmentation tail with L1, periodic COCO evaluation, official-layout checkpoints, exact resume, DDP.

`edge-yolox train --variant nano --data D [...]` lands in `main(argv)`; under `torchrun` each process trains
one shard (DistributedDataParallel, gloo on CPU / nccl on GPU) and rank 0 logs, evaluates and saves.
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import math
import os
import random
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn

from edge_yolox.arguments import Parser
from edge_yolox.errors import ConfigError, EdgeYoloxError, one_line
from edge_yolox.files import load_yaml
from edge_yolox.schema import bounded, build, choice

from .data.augment import AugmentConfig
from .data.datasets import DetectionDataset, open_dataset
from .data.loader import EpochSampler, TrainDataset, make_loader, resize_batch
from .data.synthetic import generate_scenes
from .models import VARIANTS

LOSS_KEYS = ("total_loss", "iou_loss", "conf_loss", "cls_loss", "l1_loss", "num_fg")


@dataclass
class TrainConfig:
    variant: str = choice(*VARIANTS, default="nano")
    data: str = ""
    val_data: str = ""  # default: the training data
    out: str = ""  # default runs/train/<variant>
    epochs: int = bounded(1, 100_000, default=300)
    batch: int = bounded(1, 4096, default=16)  # total over all processes
    img_size: int = bounded(32, 4096, default=416)
    multiscale: tuple[int, int] | None = field(  # a new size every `multiscale_every` iterations
        default=(320, 640), metadata={"length": 2, "range": (32, 4096)})
    multiscale_every: int = bounded(1, default=10)
    warmup_epochs: int = bounded(0, default=5)
    no_aug_epochs: int = bounded(0, default=15)
    lr_per_img: float = bounded(0, 1, default=0.01 / 64)
    warmup_lr: float = bounded(0, 1, default=0.0)
    min_lr_ratio: float = bounded(0, 1, default=0.05)
    momentum: float = bounded(0, 1, default=0.9)
    weight_decay: float = bounded(0, 1, default=5e-4)
    ema: bool = True
    eval_interval: int = bounded(0, default=10)  # epochs; 0 = never evaluate
    workers: int = bounded(0, 256, default=4)
    seed: int = bounded(0, default=0)
    amp: bool = True  # used only where the device supports it (CUDA)
    sync_bn: bool = False
    assign_mode: str = choice("center", "legacy", default="center")  # legacy: YOLOX 0.1.1, radius 2.5 + in-box
    weights: str = ""
    resume: str = ""
    max_iters: int = bounded(0, default=0)  # stop after this many iterations per epoch (smoke runs); 0 = full
    aug: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def base_lr(self) -> float:
        return self.lr_per_img * self.batch


def recipe(variant: str) -> TrainConfig:
    """The official exps/default values for each variant (Nano/Tiny: 416, scale 0.5-1.5, no mixup)."""
    cfg = TrainConfig(variant=variant)
    if variant in ("nano", "tiny"):
        cfg.aug.mosaic_scale = (0.5, 1.5)
        cfg.aug.mixup_prob = 0.0
        if variant == "nano":
            cfg.aug.mosaic_prob = 0.5
    else:
        cfg.img_size, cfg.multiscale = 640, (448, 832)
    return cfg


# ----------------------------------------------------------------------------- schedule, optimizer, EMA


def warmcos_lr(cfg: TrainConfig, iteration: int, iters_per_epoch: int) -> float:
    """YOLOX "warmcos": quadratic warmup, cosine to min_lr, then flat min_lr for the no-aug tail."""
    lr, min_lr = cfg.base_lr, cfg.base_lr * cfg.min_lr_ratio
    total = cfg.epochs * iters_per_epoch
    warmup = cfg.warmup_epochs * iters_per_epoch
    tail = cfg.no_aug_epochs * iters_per_epoch
    if iteration <= warmup:
        return (lr - cfg.warmup_lr) * (iteration / max(warmup, 1)) ** 2 + cfg.warmup_lr
    if iteration >= total - tail:
        return min_lr
    return min_lr + 0.5 * (lr - min_lr) * (1 + math.cos(math.pi * (iteration - warmup) / max(total - warmup - tail, 1)))


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD Nesterov with the official groups: BN weights (no decay), other weights (decay), biases (no decay)."""
    bn_weights, weights, biases = [], [], []
    for module in model.modules():
        if isinstance(getattr(module, "bias", None), nn.Parameter):
            biases.append(module.bias)
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            bn_weights.append(module.weight)
        elif isinstance(getattr(module, "weight", None), nn.Parameter):
            weights.append(module.weight)
    opt = torch.optim.SGD(bn_weights, lr=cfg.base_lr, momentum=cfg.momentum, nesterov=True)
    opt.add_param_group({"params": weights, "weight_decay": cfg.weight_decay})
    opt.add_param_group({"params": biases})
    return opt


class ModelEMA:
    """Exponential moving average of weights and buffers, decay 0.9998 * (1 - exp(-updates / 2000))."""

    def __init__(self, model: nn.Module, decay: float = 0.9998, updates: int = 0):
        self.model = copy.deepcopy(unwrap(model)).eval()
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.decay, self.updates = decay, updates

    def current_decay(self) -> float:
        return self.decay * (1 - math.exp(-self.updates / 2000))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        self.updates += 1
        d = self.current_decay()
        source = unwrap(model).state_dict()
        for name, value in self.model.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(d).add_(source[name].detach(), alpha=1 - d)


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model


# ----------------------------------------------------------------------------- folded BatchNorm


def bn_is_folded(model: nn.Module) -> bool:
    """True when every BN is the identity-plus-bias left by folding (weight 1, mean 0, var 1 - eps)."""
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    return bool(bns) and all(
        torch.all(m.weight == 1) and torch.all(m.running_mean == 0)
        and torch.allclose(m.running_var, torch.full_like(m.running_var, 1 - m.eps)) for m in bns)


def conv_bn_pairs(model: nn.Module) -> list[tuple[nn.Conv2d, nn.BatchNorm2d]]:
    """(conv, bn) for each BatchNorm fed directly by a convolution (modules registered in forward order)."""
    pairs, previous = [], None
    for module in model.modules():
        if isinstance(module, nn.BatchNorm2d) and isinstance(previous, nn.Conv2d):
            pairs.append((previous, module))
        previous = module
    return pairs


@torch.no_grad()
def unfold_batchnorm(model: nn.Module, batches) -> None:
    """Give folded BN layers real statistics without changing the eval-mode function.

    A folded BN computes y = x + b. Measuring each BN input's per-channel mean m and variance v on real images
    and setting running (m, v), weight sqrt(v + eps), bias b + m keeps eval mode exactly y = x + b, while
    train mode (batch statistics) now starts close to it instead of normalising every channel to unit scale.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    sums = {id(m): [0.0, 0.0, 0] for m in bns}

    def hook(module, inputs, _output):
        x = inputs[0].double().transpose(0, 1).flatten(1)
        acc = sums[id(module)]
        acc[0], acc[1], acc[2] = acc[0] + x.sum(1), acc[1] + (x * x).sum(1), acc[2] + x.shape[1]

    handles = [m.register_forward_hook(hook) for m in bns]
    was_training = model.training
    model.eval()
    try:
        for images in batches:
            model(images)
    finally:
        for h in handles:
            h.remove()
        model.train(was_training)
    for m in bns:
        s, sq, n = sums[id(m)]
        mean = s / n
        var = (sq / n - mean * mean).clamp(min=0)
        m.running_mean.copy_(mean)
        m.running_var.copy_(var)
        m.bias.add_(mean.to(m.bias.dtype))
        m.weight.copy_((var + m.eps).sqrt())


def balance_conv_scales(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> None:
    """Restore weight norms that folding shrank, so SGD steps stay as small as in the original training.

    A conv followed by train-mode BN is scale-invariant: only its weight norm sets the relative size of an SGD
    step (|g| / |w| shrinks as |w|^-2). Folding divided each conv by its BN's std, most of all the stem, whose
    input is 0-255: there one step at the fine-tuning lr is several times the weights themselves. Each conv whose
    relative step exceeds the median layer's is scaled up by k (running mean x k, running var k^2 (v + eps) - eps),
    which changes neither the train- nor the eval-mode function.
    """
    pairs = conv_bn_pairs(model)
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [m.momentum for m in bns]
    was_training = model.training
    model.train()
    for m in bns:
        m.momentum = 0.0  # measure gradients without moving the running statistics
    model.zero_grad(set_to_none=True)
    model(images, targets)["total_loss"].backward()
    for m, momentum in zip(bns, momenta):
        m.momentum = momentum
    ratios = torch.tensor([float(c.weight.grad.norm() / c.weight.detach().norm()) for c, _ in pairs])
    target = float(ratios.median())
    with torch.no_grad():
        for (conv, bn), ratio in zip(pairs, ratios.tolist()):
            if ratio > target:
                k = math.sqrt(ratio / target)
                conv.weight.mul_(k)
                bn.running_mean.mul_(k)
                bn.running_var.copy_(k * k * (bn.running_var + bn.eps) - bn.eps)
    model.zero_grad(set_to_none=True)
    model.train(was_training)


# ----------------------------------------------------------------------------- checkpoints


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: Path, model, ema: ModelEMA | None, optimizer, epoch: int, best_ap: float,
                    curr_ap: float, cfg: TrainConfig, num_classes: int) -> None:
    """Official layout: "model" is what to deploy (the EMA weights when EMA is on); the raw training weights,
    EMA counter and RNG ride along so that a resume continues exactly."""
    state = {
        "model": (ema.model if ema else unwrap(model)).state_dict(),
        "train_model": unwrap(model).state_dict(),
        "ema_updates": ema.updates if ema else 0,
        "optimizer": optimizer.state_dict(),
        "start_epoch": epoch + 1,
        "best_ap": best_ap,
        "curr_ap": curr_ap,
        "rng": rng_state(),
        "variant": cfg.variant,
        "num_classes": num_classes,
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "aug"},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- logging


class RunLog:
    """CSV of every logged step, TensorBoard when installed, and training_curves.png on demand (rank 0 only)."""

    FIELDS = ("epoch", "iter", "lr", *LOSS_KEYS, "img_s", "ap", "ap50", "val_loss")

    def __init__(self, out: Path, resume: bool):
        self.out = out
        self.csv_path = out / "log.csv"
        new = not (resume and self.csv_path.exists())
        self.file = open(self.csv_path, "w" if new else "a", newline="")
        self.writer = csv.DictWriter(self.file, self.FIELDS)
        if new:
            self.writer.writeheader()
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(out / "tensorboard"))
        except ImportError:  # tensorboard is optional; the CSV and the PNG always exist
            self.tb = None

    def write(self, row: dict, step: int) -> None:
        self.writer.writerow({k: row.get(k, "") for k in self.FIELDS})
        self.file.flush()
        if self.tb:
            for k, v in row.items():
                if k not in ("epoch", "iter") and v != "":
                    self.tb.add_scalar(k, v, step)

    def plot(self) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        with open(self.csv_path) as f:
            rows = list(csv.DictReader(f))
        steps = [r for r in rows if r["total_loss"]]
        evals = [r for r in rows if r["ap"]]
        x = [float(r["epoch"]) + float(r["iter"]) for r in steps]
        fig, axes = plt.subplots(1, 3, figsize=(15, 4))
        for key in LOSS_KEYS[:5]:
            axes[0].plot(x, [float(r[key]) for r in steps], label=key)
        validated = [r for r in evals if r.get("val_loss")]  # a log resumed from before it was measured has none
        axes[0].plot([float(r["epoch"]) for r in validated], [float(r["val_loss"]) for r in validated], "ko-",
                     label="validation loss (no aug, no L1)")
        axes[0].set(title="losses", xlabel="epoch", yscale="log")
        axes[0].legend()
        axes[1].plot(x, [float(r["lr"]) for r in steps])
        axes[1].set(title="learning rate", xlabel="epoch")
        axes[2].plot([float(r["epoch"]) for r in evals], [float(r["ap"]) for r in evals], "o-", label="AP50:95")
        axes[2].plot([float(r["epoch"]) for r in evals], [float(r["ap50"]) for r in evals], "o-", label="AP50")
        axes[2].set(title="COCO AP (EMA model)", xlabel="epoch")
        axes[2].legend()
        fig.tight_layout()
        fig.savefig(self.out / "training_curves.png", dpi=80)
        plt.close(fig)

    def close(self) -> None:
        self.file.close()
        if self.tb:
            self.tb.close()


# ----------------------------------------------------------------------------- the loop


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
        from .models import build_model

        model = build_model(self.cfg.variant, self.dataset.num_classes)
        model.head.assign_mode = self.cfg.assign_mode
        if self.cfg.weights and not self.cfg.resume:
            self.load_weights(model)
        return model

    def load_weights(self, model: nn.Module) -> None:
        from .checkpoint import load_checkpoint

        load_checkpoint(model, self.cfg.weights)
        if bn_is_folded(model):
            self.say("the weights have BatchNorm folded: measuring BN statistics on up to 8 training batches and "
                     "restoring conv weight scales")
            batches = self.calibration_batches(8)
            unfold_batchnorm(model, (images for images, _ in batches))
            balance_conv_scales(model, *batches[0])

    def calibration_batches(self, count: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        plain = TrainDataset(self.dataset, self.train_data.size, AugmentConfig(0, 0, 0, 0), self.cfg.seed)
        loader = torch.utils.data.DataLoader(plain, batch_size=min(self.cfg.batch, 16), shuffle=False)
        return [batch for _, batch in zip(range(count), loader)]

    def resume(self, path: str) -> None:
        from .checkpoint import read_checkpoint

        state = read_checkpoint(path)  # the same allow-list as every checkpoint: RNG states are tuples and arrays
        try:
            self.model.load_state_dict(state["train_model"])
            self.optimizer.load_state_dict(state["optimizer"])
            if self.ema:
                self.ema.model.load_state_dict(state["model"])
                self.ema.updates = state["ema_updates"]
            self.start_epoch, self.best_ap = state["start_epoch"], state.get("best_ap", 0.0)
            set_rng_state(state["rng"])
        except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
            raise ConfigError(f"{path}: not a checkpoint this trainer can resume ({type(exc).__name__}: "
                              f"{str(exc)[:200]})") from None
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
                bar.set_postfix_str(" ".join(f"{k.split('_')[0]} {values[k]:.2f}" for k in LOSS_KEYS[:5])
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


# ----------------------------------------------------------------------------- CLI


def _size_range(text: str) -> tuple[int, int] | None:
    """'320-640' -> (320, 640); 'off' -> None (one fixed size)."""
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        lo, hi = (int(v) for v in text.replace(",", "-").split("-"))
    except ValueError:
        raise ConfigError(f"--multiscale {text!r}: expected a range like 320-640, or 'off'") from None
    if lo % 32 or hi % 32 or lo > hi:
        raise ConfigError(f"--multiscale {text!r}: both ends must be multiples of 32, low <= high")
    return lo, hi


def parse_args(argv: list[str] | None) -> TrainConfig:
    p = Parser(prog="edge-yolox train", description="Train YOLOX with the official recipe.")
    p.add_argument("--variant", default="nano", help="nano, tiny, s, m, l, x (default nano)")
    p.add_argument("--data", required=True,
                   help="COCO .json / folder with annotations/, YOLO data.yaml, VOC folder, or synthetic[:N]")
    p.add_argument("--val-data", help="evaluation dataset (default: the training data)")
    p.add_argument("--config", help="YAML of TrainConfig fields (and an `aug:` mapping) applied before the flags")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch", type=int, help="total batch size (lr = 0.01 * batch / 64)")
    p.add_argument("--img-size", type=int)
    p.add_argument("--multiscale", help="training size range, e.g. 320-640, or 'off'")
    p.add_argument("--weights", help="initial weights (official checkpoint); another class count is fine")
    p.add_argument("--resume", help="a last_ckpt.pth to continue exactly")
    p.add_argument("--out", help="output folder (checkpoints, log.csv, training_curves.png)")
    p.add_argument("--workers", type=int)
    p.add_argument("--eval-interval", type=int)
    p.add_argument("--no-aug-epochs", type=int)
    p.add_argument("--warmup-epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--assign", dest="assign_mode", choices=("center", "legacy"))
    p.add_argument("--sync-bn", action="store_true", default=None)
    p.add_argument("--max-iters", type=int, help="iterations per epoch cap (smoke runs)")
    args = p.parse_args(argv)

    # The variant's recipe, then the --config YAML, then the flags; validated together against the schema.
    values = dataclasses.asdict(recipe(args.variant if args.variant in VARIANTS else "nano"))
    origins: dict[str, str] = {}
    if args.config:
        layer = load_yaml(args.config, "training config") or {}
        if not isinstance(layer, dict):
            raise ConfigError(f"{args.config}: must be a mapping of training options")
        for key, value in layer.items():
            if key == "aug" and isinstance(value, dict):
                values["aug"] = {**values["aug"], **value}
                origins.update({f"aug.{k}": args.config for k in value})
            else:
                values[key] = value
                origins[key] = args.config
    for key, value in vars(args).items():
        if value is not None and key not in ("config", "multiscale"):
            values[key], origins[key] = value, "command line"
    if args.multiscale is not None:
        values["multiscale"], origins["multiscale"] = _size_range(args.multiscale), "command line"
    cfg = build(TrainConfig, values, lambda key: origins.get(key, "built-in defaults"))
    cfg.out = cfg.out or f"runs/train/{cfg.variant}"
    if cfg.img_size % 32:
        raise ConfigError(f"{origins.get('img_size', 'built-in defaults')}: img_size {cfg.img_size}: "
                          "must be a multiple of 32")
    return cfg


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
