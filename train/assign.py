"""SimOTA label assignment (YOLOX), vectorised across the batch.

The official implementation loops over images and, inside each image, over ground truths. Here one pass
handles a whole chunk of images: ground truths are padded to the batch maximum, candidate anchors are
compacted per image (only anchors near some ground truth take part), and the dynamic-k selection is one
`topk`. Chunks are sized so that no [images, gts, anchors] tensor exceeds `max_elements`, which bounds
memory for crowded images without any device fallback.

Two candidate rules:
- "center" (current official): anchors whose centre lies within 1.5 strides of a ground-truth centre;
  anchors outside the ground truth's own region cost +1e6.
- "legacy" (YOLOX 0.1.1, the released weights): anchors inside the box or within 2.5 strides of its centre;
  pairs not inside both cost +1e5.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

CANDIDATE_TOPK = 10  # dynamic k = int(sum of the best 10 candidate IoUs), at least 1
IOU_COST_WEIGHT = 3.0
BCE_LOG_CLAMP = -100.0  # torch's binary_cross_entropy clamps each log term here; the cost must match it
MODES = {"center": (1.5, 1e6), "legacy": (2.5, 1e5)}  # centre radius (strides), outside-region penalty


@dataclass
class Assignment:
    """Per anchor of each image: foreground flag, matched ground-truth index (into the image's target rows)
    and IoU between the prediction and that ground truth (the class target)."""

    fg: torch.Tensor  # [B, A] bool
    gt_index: torch.Tensor  # [B, A] long, 0 where not foreground
    iou: torch.Tensor  # [B, A] float, 0 where not foreground
    cost: torch.Tensor  # [B, A] float: the SimOTA cost of the anchor for its ground truth, 0 where not foreground

    @property
    def num_fg(self) -> int:
        return int(self.fg.sum())

    def one_to_one(self, num_gt: int, rank: torch.Tensor | None = None) -> torch.Tensor:
        """[B, A] bool: for each ground truth (of `num_gt` target rows per image), the one of its SimOTA positives
        that costs least (ties: the lowest anchor index) — the end-to-end head's single positive. `rank` [B, A], if
        given, is the cost compared instead of the SimOTA cost. A ground truth that lost every positive to cheaper
        claims of other ground truths gets none."""
        batch, num_anchors = self.fg.shape
        key = (torch.arange(batch, device=self.fg.device).unsqueeze(1) * num_gt + self.gt_index)[self.fg]
        cost = (self.cost if rank is None else rank)[self.fg]
        least = torch.full((batch * num_gt,), float("inf"), dtype=cost.dtype, device=cost.device)
        least = least.scatter_reduce(0, key, cost, "amin")
        anchor = torch.arange(num_anchors, device=self.fg.device).expand(batch, -1)[self.fg]
        cheapest = cost == least[key]
        first = torch.full((batch * num_gt,), num_anchors, dtype=torch.long, device=cost.device)
        first = first.scatter_reduce(0, key[cheapest], anchor[cheapest], "amin")
        chosen = torch.zeros_like(self.fg)
        chosen[self.fg] = cheapest & (anchor == first[key])
        return chosen


def pairwise_iou(gt: torch.Tensor, pred: torch.Tensor) -> torch.Tensor:
    """IoU of cxcywh boxes: gt [..., G, 4] x pred [..., K, 4] -> [..., G, K]."""
    gt_lt, gt_rb = gt[..., :2] - gt[..., 2:] / 2, gt[..., :2] + gt[..., 2:] / 2
    pr_lt, pr_rb = pred[..., :2] - pred[..., 2:] / 2, pred[..., :2] + pred[..., 2:] / 2
    lt = torch.maximum(gt_lt.unsqueeze(-2), pr_lt.unsqueeze(-3))
    rb = torch.minimum(gt_rb.unsqueeze(-2), pr_rb.unsqueeze(-3))
    inter = (rb - lt).clamp(min=0).prod(-1)
    area_gt = gt[..., 2:].prod(-1).unsqueeze(-1)
    area_pr = pred[..., 2:].prod(-1).unsqueeze(-2)
    return inter / (area_gt + area_pr - inter)


def candidate_regions(gt: torch.Tensor, centers: torch.Tensor, strides: torch.Tensor, mode: str):
    """(candidate [b, G, A], in_region [b, G, A]): which anchors a ground truth may take at all (their union
    per image is the candidate set) and which are inside its own region (the rest pay the penalty)."""
    # Written as (x - left > 0) & (right - x > 0), like the official code, so boundary cases agree exactly.
    x, y = centers[:, 0], centers[:, 1]
    gx, gy = gt[..., 0:1], gt[..., 1:2]  # [b, G, 1]
    radius = MODES[mode][0] * strides  # [A]
    in_center = (x - (gx - radius) > 0) & ((gx + radius) - x > 0) & (y - (gy - radius) > 0) & ((gy + radius) - y > 0)
    if mode == "center":
        return in_center, in_center
    half_w, half_h = 0.5 * gt[..., 2:3], 0.5 * gt[..., 3:4]
    in_box = (x - (gx - half_w) > 0) & ((gx + half_w) - x > 0) & (y - (gy - half_h) > 0) & ((gy + half_h) - y > 0)
    return in_box | in_center, in_box & in_center


def bce_class_cost(cls_logits: torch.Tensor, obj_logits: torch.Tensor, gt_classes: torch.Tensor) -> torch.Tensor:
    """Sum over classes of BCE(sqrt(cls * obj), one-hot(gt class)) -> [b, G, K], without a [b, G, K, C] tensor:
    BCE against a one-hot is the all-negative sum with the true class's term swapped."""
    p = (cls_logits.sigmoid() * obj_logits.sigmoid().unsqueeze(-1)).sqrt()  # [b, K, C]
    log_p = p.log().clamp(min=BCE_LOG_CLAMP)
    log_not_p = (1 - p).log().clamp(min=BCE_LOG_CLAMP)
    all_negative = -log_not_p.sum(-1)  # [b, K]
    index = gt_classes.unsqueeze(-1).expand(-1, -1, p.shape[1])  # [b, G, K]
    true_log_p = log_p.transpose(1, 2).gather(1, index)
    true_log_not_p = log_not_p.transpose(1, 2).gather(1, index)
    return all_negative.unsqueeze(1) - true_log_p + true_log_not_p


def _assign_chunk(boxes, obj_logits, cls_logits, centers, strides, gt_boxes, gt_classes, gt_valid, mode):
    b, num_anchors = boxes.shape[:2]
    candidate, in_region = candidate_regions(gt_boxes, centers, strides, mode)
    candidate &= gt_valid.unsqueeze(-1)
    in_region &= candidate
    union = candidate.any(1)  # [b, A]
    counts = union.sum(1)
    k_slots = max(int(counts.max()), 1)
    # Compact: each image's candidate anchors first (in anchor order), padding slots after them.
    slots = torch.argsort((~union).to(torch.uint8), dim=1, stable=True)[:, :k_slots]  # [b, K]
    slot_valid = torch.arange(k_slots, device=boxes.device) < counts.unsqueeze(1)

    def take(t):
        return t.gather(1, slots.view(b, k_slots, *([1] * (t.dim() - 2))).expand(-1, -1, *t.shape[2:]))

    pred = take(boxes)
    region = in_region.gather(2, slots.unsqueeze(1).expand(-1, gt_boxes.shape[1], -1))
    pair_valid = gt_valid.unsqueeze(-1) & slot_valid.unsqueeze(1)  # [b, G, K]

    iou = pairwise_iou(gt_boxes, pred).masked_fill(~pair_valid, 0)
    cost = (bce_class_cost(take(cls_logits), take(obj_logits), gt_classes)
            + IOU_COST_WEIGHT * -(iou + 1e-8).log()
            + MODES[mode][1] * (~region))
    cost = cost.masked_fill(~pair_valid, float("inf"))

    top_k = min(CANDIDATE_TOPK, k_slots)
    dynamic_k = iou.topk(top_k, dim=2).values.sum(2).int().clamp(min=1)  # [b, G]
    best = cost.topk(top_k, dim=2, largest=False).indices  # [b, G, k]
    chosen = (torch.arange(top_k, device=boxes.device) < dynamic_k.unsqueeze(-1)) & gt_valid.unsqueeze(-1)
    matching = torch.zeros_like(cost, dtype=torch.bool).scatter_(2, best, chosen)

    # An anchor taken by several ground truths goes to the one it costs least (over all of the image's gts).
    cheapest = cost.argmin(1)  # [b, K]
    conflict = matching.sum(1) > 1
    one_hot = torch.arange(gt_boxes.shape[1], device=boxes.device).view(1, -1, 1) == cheapest.unsqueeze(1)
    matching = torch.where(conflict.unsqueeze(1), one_hot, matching)

    fg_slot = matching.any(1) & slot_valid
    gt_slot = matching.to(torch.uint8).argmax(1)
    iou_slot = (iou * matching).sum(1)
    cost_slot = torch.where(matching, cost, 0).sum(1)
    fg = torch.zeros(b, num_anchors, dtype=torch.bool, device=boxes.device).scatter_(1, slots, fg_slot)
    gt_index = torch.zeros(b, num_anchors, dtype=torch.long, device=boxes.device)
    gt_index.scatter_(1, slots, torch.where(fg_slot, gt_slot, 0))
    matched_iou = torch.zeros(b, num_anchors, dtype=iou.dtype, device=boxes.device)
    matched_iou.scatter_(1, slots, torch.where(fg_slot, iou_slot, 0))
    matched_cost = torch.zeros(b, num_anchors, dtype=cost.dtype, device=boxes.device)
    matched_cost.scatter_(1, slots, torch.where(fg_slot, cost_slot, 0))
    return fg, gt_index, matched_iou, matched_cost


@torch.no_grad()
def simota_assign(boxes: torch.Tensor, obj_logits: torch.Tensor, cls_logits: torch.Tensor,
                  centers: torch.Tensor, strides: torch.Tensor, gt_boxes: torch.Tensor, gt_classes: torch.Tensor,
                  gt_valid: torch.Tensor, *, mode: str = "center", max_elements: int = 1 << 24) -> Assignment:
    """Assign anchors to ground truths for a batch.

    boxes [B, A, 4] decoded predictions (cx, cy, w, h, input pixels); obj_logits [B, A]; cls_logits [B, A, C];
    centers [A, 2] anchor centres ((grid + 0.5) * stride); strides [A]; gt_boxes [B, G, 4] cxcywh;
    gt_classes [B, G] long; gt_valid [B, G] bool. `max_elements` caps each [b, G, A] intermediate.
    """
    if mode not in MODES:
        raise ValueError(f"unknown SimOTA mode {mode!r}; expected one of {sorted(MODES)}")
    work = torch.float64 if boxes.dtype == torch.float64 else torch.float32
    batch, num_anchors = boxes.shape[:2]
    num_gt = max(int(gt_valid.sum(1).max()) if batch else 0, 1)
    # Ground truths may sit anywhere in the padded rows: move valid ones first, keep the original row index.
    order = torch.argsort((~gt_valid).to(torch.uint8), dim=1, stable=True)[:, :num_gt]
    gt_boxes = gt_boxes.gather(1, order.unsqueeze(-1).expand(-1, -1, 4)).to(work)
    gt_classes = gt_classes.gather(1, order).long()
    gt_valid = gt_valid.gather(1, order)

    chunk = max(1, max_elements // (num_gt * num_anchors))
    parts = [
        _assign_chunk(boxes[i:i + chunk].to(work), obj_logits[i:i + chunk].to(work),
                      cls_logits[i:i + chunk].to(work), centers.to(work), strides.to(work),
                      gt_boxes[i:i + chunk], gt_classes[i:i + chunk], gt_valid[i:i + chunk], mode)
        for i in range(0, batch, chunk)
    ]
    fg, gt_index, iou, cost = (torch.cat(t) for t in zip(*parts))
    return Assignment(fg=fg, gt_index=order.gather(1, gt_index) * fg, iou=iou, cost=cost)
