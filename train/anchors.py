"""YOLOX's anchor points (one per feature-map cell, level by level, row-major: the official order) and the box
decode around them; the head's inference output and the loss both use these."""

from __future__ import annotations

from collections.abc import Sequence

import torch


def anchor_grid(sizes: Sequence[tuple[int, int]], strides: Sequence[int], like: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """(grid [A, 2] of (x, y) cell indices, stride [A]) for feature maps of `sizes` (h, w), in `like`'s dtype and
    device."""
    grids, anchor_strides = [], []
    for (h, w), stride in zip(sizes, strides):
        ys, xs = torch.meshgrid(torch.arange(h, device=like.device), torch.arange(w, device=like.device),
                                indexing="ij")
        grids.append(torch.stack((xs, ys), -1).reshape(-1, 2))
        anchor_strides.append(torch.full((h * w,), float(stride), device=like.device))
    return torch.cat(grids).to(like.dtype), torch.cat(anchor_strides).to(like.dtype)


def decode_boxes(raw_reg: torch.Tensor, grid: torch.Tensor, stride: torch.Tensor) -> torch.Tensor:
    """Raw regression [..., A, 4] (tx, ty, tw, th) -> (cx, cy, w, h) in input pixels: xy = (t + grid)·s,
    wh = exp(t)·s."""
    s = stride.unsqueeze(-1)
    return torch.cat(((raw_reg[..., :2] + grid) * s, raw_reg[..., 2:4].exp() * s), -1)
