"""The exponential moving average of the weights that YOLOX evaluates and deploys."""

from __future__ import annotations

import copy
import math

import torch
import torch.nn as nn

from .distributed import unwrap


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
