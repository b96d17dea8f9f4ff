"""YOLOX building blocks. Attribute names follow the official implementation so that state_dict keys match
its checkpoints (e.g. `conv.conv.weight`, `dconv.bn.running_var`, `m.0.conv2.pconv.conv.weight`)."""

from __future__ import annotations

import copy

import torch
from torch import nn

# The official exps set these on every BatchNorm (init_yolo).
BN_EPS = 1e-3
BN_MOMENTUM = 0.03


class BaseConv(nn.Module):
    """Conv (no bias, 'same' padding) -> BatchNorm -> SiLU."""

    def __init__(self, in_ch: int, out_ch: int, ksize: int, stride: int = 1, groups: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, ksize, stride, (ksize - 1) // 2, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(out_ch, eps=BN_EPS, momentum=BN_MOMENTUM)
        self.act = nn.SiLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class DWConv(nn.Module):
    """Depthwise k×k conv, then pointwise 1×1 conv (the Nano's cheap replacement for BaseConv)."""

    def __init__(self, in_ch: int, out_ch: int, ksize: int, stride: int = 1):
        super().__init__()
        self.dconv = BaseConv(in_ch, in_ch, ksize, stride, groups=in_ch)
        self.pconv = BaseConv(in_ch, out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pconv(self.dconv(x))


def conv_type(depthwise: bool) -> type[nn.Module]:
    return DWConv if depthwise else BaseConv


class Bottleneck(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, shortcut: bool = True, expansion: float = 0.5,
                 depthwise: bool = False):
        super().__init__()
        hidden = int(out_ch * expansion)
        self.conv1 = BaseConv(in_ch, hidden, 1)
        self.conv2 = conv_type(depthwise)(hidden, out_ch, 3)
        self.use_add = shortcut and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv2(self.conv1(x))
        return y + x if self.use_add else y


class SPPBottleneck(nn.Module):
    """1×1 conv, max pools 5/9/13 (stride 1) concatenated with their input, 1×1 conv."""

    def __init__(self, in_ch: int, out_ch: int, kernel_sizes: tuple[int, ...] = (5, 9, 13)):
        super().__init__()
        hidden = in_ch // 2
        self.conv1 = BaseConv(in_ch, hidden, 1)
        self.m = nn.ModuleList(nn.MaxPool2d(k, 1, k // 2) for k in kernel_sizes)
        self.conv2 = BaseConv(hidden * (len(kernel_sizes) + 1), out_ch, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv1(x)
        return self.conv2(torch.cat([x, *(pool(x) for pool in self.m)], 1))


class CSPLayer(nn.Module):
    """CSP bottleneck with 3 convs (YOLOv5's C3): two 1×1 branches, n bottlenecks on the first, 1×1 fuse."""

    def __init__(self, in_ch: int, out_ch: int, n: int = 1, shortcut: bool = True, depthwise: bool = False):
        super().__init__()
        hidden = int(out_ch * 0.5)
        self.conv1 = BaseConv(in_ch, hidden, 1)
        self.conv2 = BaseConv(in_ch, hidden, 1)
        self.conv3 = BaseConv(2 * hidden, out_ch, 1)
        self.m = nn.Sequential(*(Bottleneck(hidden, hidden, shortcut, 1.0, depthwise) for _ in range(n)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv3(torch.cat((self.m(self.conv1(x)), self.conv2(x)), 1))


class Focus(nn.Module):
    """Space-to-depth, then a conv. The four pixel phases are stacked (top-left, bottom-left, top-right,
    bottom-right) — the official order, which the pretrained stem weights depend on."""

    def __init__(self, in_ch: int, out_ch: int, ksize: int = 1, stride: int = 1):
        super().__init__()
        self.conv = BaseConv(in_ch * 4, out_ch, ksize, stride)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        phases = (x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2])
        return self.conv(torch.cat(phases, 1))


class UnshuffleFocus(nn.Module):
    """An exact export-time replacement for Focus without step-2 slices (which pnnx rejects).

    pixel_unshuffle(x, 2) orders channels c·4 + 2·dy + dx (channel-major); Focus orders them
    (dy + 2·dx)·C + c (phase-major). Permuting the stem conv's input channels once makes them equal.
    """

    def __init__(self, focus: Focus):
        super().__init__()
        self.conv = copy.deepcopy(focus.conv)
        weight = focus.conv.conv.weight.detach()
        c = weight.shape[1] // 4
        index = [(dy + 2 * dx) * c + ch for ch in range(c) for dy in (0, 1) for dx in (0, 1)]
        with torch.no_grad():
            self.conv.conv.weight.copy_(weight[:, index])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(nn.functional.pixel_unshuffle(x, 2))
