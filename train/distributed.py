"""DistributedDataParallel helpers shared by the loop, the EMA and checkpoint saving."""

from __future__ import annotations

import torch.nn as nn


def unwrap(model: nn.Module) -> nn.Module:
    return model.module if isinstance(model, nn.parallel.DistributedDataParallel) else model
