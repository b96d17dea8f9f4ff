"""YOLOX training loss: SimOTA assignment, then IoU, objectness, class and (no-aug tail) L1 terms,
each normalised by the number of foreground anchors, as the official head computes them; end to end, the
positive-sample selector's term on top (`pss_loss`)."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

from .anchors import anchor_grid, decode_boxes
from .assign import simota_assign

IOU_WEIGHT = 5.0
PSS_WEIGHT = 1.0
# The one-to-one positive is the SimOTA positive of least cost - PSS_RANK_WEIGHT * log(pss): by cost alone, nearly
# tied neighbours take turns as the detector moves (an overfit run switched targets in 90 of 100 iterations), a
# target the selector cannot learn, so it splits its score among them; crediting its own preference lets it commit
# to one. Held-out synthetic scenes (README): 0.580 -> 0.653 AP without NMS (NMS model 0.695). One held-out coco128
# fold, 30 epochs: gap 5.5 AP by cost alone, 4.0 / 3.3 / 2.6 / 3.7 at weights 1 / 3 / 10 / 100; bench/e2e.py's
# 2-fold, 40 epochs: unchanged (0.262 -> 0.258).
PSS_RANK_WEIGHT = 10.0
LOG_CLAMP = -100.0  # as torch's binary_cross_entropy clamps its log terms
# what yolox_loss returns (pss_loss 0 without the end-to-end selector)
LOSS_KEYS = ("total_loss", "iou_loss", "conf_loss", "cls_loss", "l1_loss", "num_fg", "pss_loss")


def flatten_outputs(outputs: Sequence[torch.Tensor], strides: Sequence[int]):
    """Per-level raw head maps [B, 5+C, H, W] -> (raw [B, A, 5+C], grid [A, 2], stride [A]) in the official
    anchor order (level by level, row-major)."""
    raw = torch.cat([out.flatten(2).transpose(1, 2) for out in outputs], 1)
    grid, stride = anchor_grid([out.shape[-2:] for out in outputs], strides, raw)
    return raw, grid, stride


def iou_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - IoU^2 per pair of cxcywh boxes (the official "iou" loss type)."""
    lt = torch.maximum(pred[:, :2] - pred[:, 2:] / 2, target[:, :2] - target[:, 2:] / 2)
    rb = torch.minimum(pred[:, :2] + pred[:, 2:] / 2, target[:, :2] + target[:, 2:] / 2)
    inter = (rb - lt).clamp(min=0).prod(1)
    union = pred[:, 2:].prod(1) + target[:, 2:].prod(1) - inter
    return 1 - (inter / (union + 1e-16)) ** 2


def l1_target(gt: torch.Tensor, grid: torch.Tensor, stride: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """The raw regression that would decode exactly to `gt` (cxcywh) at these anchors."""
    s = stride.unsqueeze(-1)
    return torch.cat((gt[:, :2] / s - grid, torch.log(gt[:, 2:] / s + eps)), 1)


def pss_loss(pss_logits: torch.Tensor, obj_logits: torch.Tensor, cls_logits: torch.Tensor, positive: torch.Tensor,
             positive_classes: torch.Tensor) -> torch.Tensor:
    """The end-to-end selector's loss, summed: binary cross-entropy of the final score obj·cls·pss of every anchor
    and class against 1 at the one-to-one positives (their ground truth's class) and 0 everywhere else, with obj
    and cls detached (PSS's formulation: the selector learns to pass the one anchor per object and silence its
    duplicates, in proportion to how strongly each duplicate scores; a background anchor that obj·cls already
    silences costs it almost nothing).

    pss_logits, obj_logits [B, A]; cls_logits [B, A, C]; positive [B, A] bool; positive_classes [P] long, the
    classes of positive's True entries in order.
    """
    log_p = (F.logsigmoid(obj_logits.detach()).unsqueeze(-1) + F.logsigmoid(cls_logits.detach())
             + F.logsigmoid(pss_logits).unsqueeze(-1))  # log(obj·cls·pss) [B, A, C]
    # log(1 - score) from log(score); a score within 1e-6 of 1 stops there (the gradient of log1p(-x) diverges).
    log_not_p = torch.log(-torch.expm1(log_p.clamp(max=-1e-6)))
    target = torch.zeros_like(log_p, dtype=torch.bool)
    target[positive] = F.one_hot(positive_classes, log_p.shape[-1]).bool()
    return -torch.where(target, log_p, log_not_p).clamp(min=LOG_CLAMP).sum()


def yolox_loss(outputs: Sequence[torch.Tensor], strides: Sequence[int], targets: torch.Tensor, use_l1: bool = False,
               *, assign_mode: str = "center", pss: Sequence[torch.Tensor] | None = None) -> dict[str, torch.Tensor]:
    """The official YOLOX loss for raw per-level head outputs.

    outputs: [B, 5+C, H, W] per stride, channels (reg 4 raw, obj logit, cls logits);
    targets: [B, max_labels, 5] rows (class, cx, cy, w, h) in input pixels, all-zero rows are padding;
    pss: the end-to-end selector's logits [B, 1, H, W] per stride, or None.
    Returns total_loss, iou_loss (already x5), conf_loss, cls_loss, l1_loss, num_fg (foreground anchors per
    ground truth, as the official head reports it) and pss_loss: `pss_loss` over the one-to-one positives (each
    ground truth's SimOTA positive cheapest once the selector's own preference is credited, see PSS_RANK_WEIGHT)
    per ground truth, x PSS_WEIGHT; 0 without `pss`. The selector's term adds to the total but, with its detached
    inputs, trains only the selector.
    """
    raw, grid, stride = flatten_outputs(outputs, strides)
    raw = raw.float() if raw.dtype == torch.float16 or raw.dtype == torch.bfloat16 else raw
    num_classes = raw.shape[-1] - 5
    boxes = decode_boxes(raw[..., :4], grid, stride)
    obj_logits, cls_logits = raw[..., 4], raw[..., 5:]

    targets = targets.to(raw.dtype)
    gt_valid = targets.sum(-1) > 0
    gt_classes, gt_boxes = targets[..., 0].long(), targets[..., 1:5]
    a = simota_assign(boxes.detach(), obj_logits.detach(), cls_logits.detach(), (grid + 0.5) * stride.unsqueeze(-1),
                      stride, gt_boxes, gt_classes, gt_valid, mode=assign_mode)

    num_fg = max(a.num_fg, 1)
    batch_index = torch.arange(raw.shape[0], device=raw.device).unsqueeze(1).expand_as(a.fg)[a.fg]
    matched_boxes = gt_boxes[batch_index, a.gt_index[a.fg]]
    matched_classes = gt_classes[batch_index, a.gt_index[a.fg]]

    loss_iou = IOU_WEIGHT * iou_loss(boxes[a.fg], matched_boxes).sum() / num_fg
    loss_obj = F.binary_cross_entropy_with_logits(obj_logits, a.fg.to(raw.dtype), reduction="sum") / num_fg
    cls_target = F.one_hot(matched_classes, num_classes).to(raw.dtype) * a.iou[a.fg].unsqueeze(-1)
    loss_cls = F.binary_cross_entropy_with_logits(cls_logits[a.fg], cls_target, reduction="sum") / num_fg
    if use_l1:
        anchor_index = a.fg.nonzero()[:, 1]
        l1 = l1_target(matched_boxes, grid[anchor_index], stride[anchor_index])
        loss_l1 = (raw[..., :4][a.fg] - l1).abs().sum() / num_fg
    else:
        loss_l1 = raw.new_zeros(())
    num_gt = max(int(gt_valid.sum()), 1)
    if pss is not None:
        pss_logits = torch.cat([p.flatten(1) for p in pss], 1).to(raw.dtype)
        rank = a.cost - PSS_RANK_WEIGHT * F.logsigmoid(pss_logits.detach())
        positive = a.one_to_one(targets.shape[1], rank)
        positive_classes = gt_classes[torch.arange(raw.shape[0], device=raw.device).unsqueeze(1).expand_as(positive)
                                      [positive], a.gt_index[positive]]
        loss_pss = PSS_WEIGHT * pss_loss(pss_logits, obj_logits, cls_logits, positive, positive_classes) / num_gt
    else:
        loss_pss = raw.new_zeros(())
    total = loss_iou + loss_obj + loss_cls + loss_l1 + loss_pss
    return {"total_loss": total, "iou_loss": loss_iou, "conf_loss": loss_obj, "cls_loss": loss_cls,
            "l1_loss": loss_l1, "num_fg": raw.new_tensor(a.num_fg / num_gt), "pss_loss": loss_pss}
