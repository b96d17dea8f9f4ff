"""The official optimizer and learning-rate schedule: SGD Nesterov over three parameter groups, "warmcos"."""

from __future__ import annotations

import math

import torch
import torch.nn as nn

from .config import TrainConfig


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
