"""Straightforward per-image, per-ground-truth SimOTA and YOLOX loss, written from the YOLOX paper/recipe
description as plain loops. The batched implementation in edge_yolox.train must agree with it."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def iou_matrix(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    out = torch.zeros(len(a), len(b), dtype=a.dtype)
    for i, (ax, ay, aw, ah) in enumerate(a.tolist()):
        for j, (bx, by, bw, bh) in enumerate(b.tolist()):
            iw = min(ax + aw / 2, bx + bw / 2) - max(ax - aw / 2, bx - bw / 2)
            ih = min(ay + ah / 2, by + bh / 2) - max(ay - ah / 2, by - bh / 2)
            inter = max(iw, 0) * max(ih, 0)
            out[i, j] = inter / (aw * ah + bw * bh - inter)
    return out


def assign_image(boxes, obj, cls, centers, strides, gts, gt_cls, mode="center"):
    """One image: returns (fg [A] bool, gt index [A], iou [A])."""
    radius, penalty = (1.5, 1e6) if mode == "center" else (2.5, 1e5)
    num_anchors = len(boxes)
    fg = torch.zeros(num_anchors, dtype=torch.bool)
    gt_index = torch.zeros(num_anchors, dtype=torch.long)
    matched_iou = torch.zeros(num_anchors, dtype=boxes.dtype)
    if len(gts) == 0:
        return fg, gt_index, matched_iou
    x, y, r = centers[:, 0], centers[:, 1], radius * strides
    in_center = torch.stack([(x - (g[0] - r) > 0) & ((g[0] + r) - x > 0) & (y - (g[1] - r) > 0)
                             & ((g[1] + r) - y > 0) for g in gts])
    in_box = torch.stack([(x - (g[0] - g[2] / 2) > 0) & ((g[0] + g[2] / 2) - x > 0) & (y - (g[1] - g[3] / 2) > 0)
                          & ((g[1] + g[3] / 2) - y > 0) for g in gts])
    if mode == "center":
        candidates, region = in_center.any(0), in_center
    else:
        candidates, region = (in_box | in_center).any(0), in_box & in_center
    cand = candidates.nonzero()[:, 0]
    if len(cand) == 0:
        return fg, gt_index, matched_iou
    ious = iou_matrix(gts, boxes[cand])
    p = (cls[cand].sigmoid() * obj[cand].sigmoid()[:, None]).sqrt()
    cost = torch.zeros(len(gts), len(cand), dtype=boxes.dtype)
    for g in range(len(gts)):
        onehot = F.one_hot(gt_cls[g], cls.shape[1]).to(p.dtype).expand_as(p)
        cost[g] = (F.binary_cross_entropy(p, onehot, reduction="none").sum(1) - 3.0 * torch.log(ious[g] + 1e-8)
                   + penalty * (~region[g, cand]))
    matching = torch.zeros_like(cost, dtype=torch.bool)
    for g in range(len(gts)):
        k = max(1, int(ious[g].topk(min(10, len(cand))).values.sum()))
        matching[g, cost[g].topk(k, largest=False).indices] = True
    for j in range(len(cand)):
        if matching[:, j].sum() > 1:
            matching[:, j] = False
            matching[cost[:, j].argmin(), j] = True
    for j, a in enumerate(cand.tolist()):
        if matching[:, j].any():
            g = int(matching[:, j].nonzero()[0])
            fg[a], gt_index[a], matched_iou[a] = True, g, ious[g, j]
    return fg, gt_index, matched_iou


def anchors(size: int, strides=(8, 16, 32), dtype=torch.float32):
    grids, anchor_strides = [], []
    for s in strides:
        n = size // s
        ys, xs = torch.meshgrid(torch.arange(n), torch.arange(n), indexing="ij")
        grids.append(torch.stack([xs, ys], -1).reshape(-1, 2))
        anchor_strides.append(torch.full((n * n,), float(s)))
    grid, stride = torch.cat(grids).to(dtype), torch.cat(anchor_strides).to(dtype)
    return grid, stride


def reference_loss(outputs, strides, targets, use_l1=False):
    """The loss, one image at a time, from the per-image assignment above."""
    size = outputs[0].shape[-1] * strides[0]
    grid, stride = anchors(size, strides, outputs[0].dtype)
    raw = torch.cat([o.flatten(2).transpose(1, 2) for o in outputs], 1)
    boxes = torch.cat([(raw[..., :2] + grid) * stride[:, None], raw[..., 2:4].exp() * stride[:, None]], -1)
    num_classes = raw.shape[-1] - 5
    iou_sum = obj_sum = cls_sum = l1_sum = 0.0
    num_fg = num_gt = 0
    for b in range(raw.shape[0]):
        rows = targets[b][targets[b].sum(1) > 0]
        num_gt += len(rows)
        fg, gi, miou = assign_image(boxes[b].detach(), raw[b, :, 4].detach(), raw[b, :, 5:].detach(),
                                    (grid + 0.5) * stride[:, None], stride, rows[:, 1:5], rows[:, 0].long())
        num_fg += int(fg.sum())
        obj_sum = obj_sum + F.binary_cross_entropy_with_logits(raw[b, :, 4], fg.to(raw.dtype), reduction="sum")
        if fg.any():
            gt = rows[gi[fg], 1:5]
            ious = torch.diagonal(iou_matrix(boxes[b][fg].detach(), gt))  # for the value only
            pred = boxes[b][fg]
            lt = torch.maximum(pred[:, :2] - pred[:, 2:] / 2, gt[:, :2] - gt[:, 2:] / 2)
            rb = torch.minimum(pred[:, :2] + pred[:, 2:] / 2, gt[:, :2] + gt[:, 2:] / 2)
            inter = (rb - lt).clamp(min=0).prod(1)
            iou = inter / (pred[:, 2:].prod(1) + gt[:, 2:].prod(1) - inter + 1e-16)
            assert torch.allclose(iou.detach(), ious, atol=1e-5)
            iou_sum = iou_sum + (1 - iou ** 2).sum()
            target = F.one_hot(rows[gi[fg], 0].long(), num_classes).to(raw.dtype) * miou[fg, None]
            cls_sum = cls_sum + F.binary_cross_entropy_with_logits(raw[b, fg, 5:], target, reduction="sum")
            if use_l1:
                s = stride[fg, None]
                l1_t = torch.cat([gt[:, :2] / s - grid[fg], torch.log(gt[:, 2:] / s + 1e-8)], 1)
                l1_sum = l1_sum + (raw[b, fg, :4] - l1_t).abs().sum()
    n = max(num_fg, 1)
    losses = {"iou_loss": 5.0 * iou_sum / n, "conf_loss": obj_sum / n, "cls_loss": cls_sum / n, "l1_loss": l1_sum / n}
    losses["total_loss"] = sum(losses.values())
    losses["num_fg"] = num_fg / max(num_gt, 1)
    return losses
