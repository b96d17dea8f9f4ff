"""Fine-tuning from weights whose BatchNorm was folded into the convolutions (as exported models ship): detect
the folding, then give BN real statistics and restore the conv weight scales, without changing the function."""

from __future__ import annotations

import math

import torch
import torch.nn as nn


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
