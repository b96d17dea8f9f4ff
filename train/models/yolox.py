"""YOLOX: CSPDarknet backbone, PAFPN neck and the decoupled head, built as the official exps define them.

Module names mirror the official code, so `model.state_dict()` has the official keys and shapes
(`backbone.backbone.stem.conv.conv.weight`, ..., `head.cls_preds.0.bias`) and official checkpoints load
with strict=True.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from edge_yolox.errors import ConfigError
from edge_yolox.postprocess import STRIDES

from ..anchors import anchor_grid, decode_boxes
from .blocks import BaseConv, CSPLayer, Focus, SPPBottleneck, conv_type

IN_CHANNELS = (256, 512, 1024)  # of dark3/4/5 at width 1.0
PRIOR_PROB = 0.01
PSS_PRIOR = 0.5  # the positive-sample selector starts neutral: every anchor's score is halved, none is favoured
# The selector's 3x3 convs per stride. With one, it saw too little around an anchor to tell it from its neighbours.
# Held-out synthetic scenes, the selector trained alone on the frozen detector (bench/e2e.py's cached features;
# NMS model 0.693 AP): 1 / 2 / 3 / 4 convs gave 0.635 / 0.655 / 0.658 / 0.659 AP without NMS and 0.091 / 0.047 /
# 0.024 / 0.013 duplicates per object at conf 0.3. Wider convs (128) and score cues (each anchor's score against
# its 3x3 and the neighbouring strides' maxima) did not help. The cost: on 48 training images (coco128, 2-fold) three
# overfit where one did not (0.220 vs 0.258 AP, NMS model 0.332), and 10-15% more latency at one thread.
PSS_CONVS = 3
PSS_PREFIXES = ("head.pss_convs.", "head.pss_preds.")  # the end-to-end branch's state_dict keys


@dataclass(frozen=True)
class Variant:
    depth: float
    width: float
    depthwise: bool = False
    input_size: int = 640  # the official test size


VARIANTS: dict[str, Variant] = {
    "nano": Variant(0.33, 0.25, True, 416),
    "tiny": Variant(0.33, 0.375, False, 416),
    "s": Variant(0.33, 0.50),
    "m": Variant(0.67, 0.75),
    "l": Variant(1.0, 1.0),
    "x": Variant(1.33, 1.25),
}


def default_size(name: str) -> tuple[int, int]:
    """The variant's official test size (h, w): what eval and export use unless told otherwise."""
    return (VARIANTS[name].input_size,) * 2


class CSPDarknet(nn.Module):
    """Focus stem and four stages (dark2..dark5, the last with SPP); returns dark3, dark4, dark5."""

    def __init__(self, depth: float, width: float, depthwise: bool = False):
        super().__init__()
        Conv = conv_type(depthwise)
        c = int(width * 64)
        n = max(round(depth * 3), 1)
        self.stem = Focus(3, c, ksize=3)
        self.dark2 = nn.Sequential(Conv(c, c * 2, 3, 2), CSPLayer(c * 2, c * 2, n, depthwise=depthwise))
        self.dark3 = nn.Sequential(Conv(c * 2, c * 4, 3, 2), CSPLayer(c * 4, c * 4, n * 3, depthwise=depthwise))
        self.dark4 = nn.Sequential(Conv(c * 4, c * 8, 3, 2), CSPLayer(c * 8, c * 8, n * 3, depthwise=depthwise))
        self.dark5 = nn.Sequential(Conv(c * 8, c * 16, 3, 2), SPPBottleneck(c * 16, c * 16),
                                   CSPLayer(c * 16, c * 16, n, shortcut=False, depthwise=depthwise))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        c3 = self.dark3(self.dark2(self.stem(x)))
        c4 = self.dark4(c3)
        return c3, c4, self.dark5(c4)


class PAFPN(nn.Module):
    """Top-down then bottom-up path aggregation over dark3/4/5 (the official YOLOPAFPN)."""

    def __init__(self, depth: float, width: float, depthwise: bool = False):
        super().__init__()
        Conv = conv_type(depthwise)
        c3, c4, c5 = (int(c * width) for c in IN_CHANNELS)
        n = round(3 * depth)
        self.backbone = CSPDarknet(depth, width, depthwise)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.lateral_conv0 = BaseConv(c5, c4, 1)
        self.C3_p4 = CSPLayer(2 * c4, c4, n, False, depthwise)
        self.reduce_conv1 = BaseConv(c4, c3, 1)
        self.C3_p3 = CSPLayer(2 * c3, c3, n, False, depthwise)
        self.bu_conv2 = Conv(c3, c3, 3, 2)
        self.C3_n3 = CSPLayer(2 * c3, c4, n, False, depthwise)
        self.bu_conv1 = Conv(c4, c4, 3, 2)
        self.C3_n4 = CSPLayer(2 * c4, c5, n, False, depthwise)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        x3, x4, x5 = self.backbone(x)
        top5 = self.lateral_conv0(x5)
        p4 = self.C3_p4(torch.cat((self.upsample(top5), x4), 1))
        top4 = self.reduce_conv1(p4)
        out3 = self.C3_p3(torch.cat((self.upsample(top4), x3), 1))
        out4 = self.C3_n3(torch.cat((self.bu_conv2(out3), top4), 1))
        out5 = self.C3_n4(torch.cat((self.bu_conv1(out4), top5), 1))
        return out3, out4, out5


class YOLOXHead(nn.Module):
    """Decoupled head per stride: 1×1 stem, then a class branch and a regression branch of two 3×3 convs each;
    objectness is predicted from the regression branch.

    Outputs, by mode:
    - eval: [B, N, 5+C] rows (cx, cy, w, h in input pixels, obj, cls...) with sigmoided scores, anchors stride by
      stride, row-major (undecoded boxes when `decode_in_inference` is False, like the official ONNX export);
    - `split_outputs(features)`: [reg, obj, cls] per stride, NCHW, reg raw, obj/cls sigmoided (for export);
    - train with targets: the loss dict of `edge_yolox.train.losses.yolox_loss`, called as
      `yolox_loss(outputs, strides, targets, use_l1, assign_mode=..., pss=...)` with `outputs` the raw per-stride
      maps [B, 5+C, H, W] and `targets` [B, max_labels, 5] = (class, cx, cy, w, h) in input pixels, zero rows
      padding;
    - train without targets: the raw per-stride maps [B, 5+C, H, W].

    End to end (`e2e=True`, the YOLOX paper's §2.2 after PSS, Zhou et al. 2021): a positive-sample selector per
    stride — PSS_CONVS 3×3 convs (+BN+SiLU; depthwise-separable in the depthwise variants, like the head's own convs)
    and a 1×1 conv to one logit — reads the regression branch's features (the branch objectness reads; PSS found the
    classification branch worse) through a stop-gradient, so its loss reaches no weight but its own. Its
    probability multiplies the objectness everywhere the head gives scores (eval output, `split_outputs`): the
    final score is obj·cls·pss, the outputs keep their layout, and the runtime's decode needs no change. The loss
    trains it to keep one anchor per object (losses.pss_loss). `use_pss = False` gives the plain head's scores.
    """

    def __init__(self, num_classes: int, width: float = 1.0, depthwise: bool = False,
                 strides: Sequence[int] = STRIDES, e2e: bool = False):
        super().__init__()
        Conv = conv_type(depthwise)
        hidden = int(256 * width)
        self.num_classes = num_classes
        self.strides = tuple(strides)
        self.decode_in_inference = True
        self.use_l1 = False  # the trainer switches it on for the no-augmentation tail
        self.assign_mode = "center"  # SimOTA variant; "legacy" = YOLOX 0.1.1
        self.cls_convs = nn.ModuleList(nn.Sequential(Conv(hidden, hidden, 3), Conv(hidden, hidden, 3))
                                       for _ in strides)
        self.reg_convs = nn.ModuleList(nn.Sequential(Conv(hidden, hidden, 3), Conv(hidden, hidden, 3))
                                       for _ in strides)
        self.cls_preds = nn.ModuleList(nn.Conv2d(hidden, num_classes, 1) for _ in strides)
        self.reg_preds = nn.ModuleList(nn.Conv2d(hidden, 4, 1) for _ in strides)
        self.obj_preds = nn.ModuleList(nn.Conv2d(hidden, 1, 1) for _ in strides)
        self.stems = nn.ModuleList(BaseConv(int(c * width), hidden, 1) for c in IN_CHANNELS)
        self.use_pss = e2e
        if e2e:
            self.pss_convs = nn.ModuleList(nn.Sequential(*(Conv(hidden, hidden, 3) for _ in range(PSS_CONVS)))
                                           for _ in strides)
            self.pss_preds = nn.ModuleList(nn.Conv2d(hidden, 1, 1) for _ in strides)
        else:
            self.pss_convs = self.pss_preds = None
        self.initialize_biases(PRIOR_PROB)

    @property
    def e2e(self) -> bool:
        """Whether the head has the positive-sample selector (end-to-end, NMS-free)."""
        return self.pss_preds is not None

    def initialize_biases(self, prior_prob: float) -> None:
        """Score biases so that every anchor starts at probability `prior_prob` (stable early training)."""
        for conv in (*self.cls_preds, *self.obj_preds):
            nn.init.constant_(conv.bias, -math.log((1 - prior_prob) / prior_prob))
        self.initialize_pss()

    def initialize_pss(self) -> None:
        """The selector's prediction bias at PSS_PRIOR (its convs keep PyTorch's initialisation)."""
        for conv in self.pss_preds or ():
            nn.init.constant_(conv.bias, -math.log((1 - PSS_PRIOR) / PSS_PRIOR))

    def reset_classes(self, num_classes: int) -> None:
        """New class prediction layers (fresh init, prior bias); everything else is kept."""
        device, dtype = self.cls_preds[0].weight.device, self.cls_preds[0].weight.dtype
        self.num_classes = num_classes
        self.cls_preds = nn.ModuleList(nn.Conv2d(p.in_channels, num_classes, 1) for p in self.cls_preds)
        self.cls_preds.to(device, dtype)
        for conv in self.cls_preds:
            nn.init.constant_(conv.bias, -math.log((1 - PRIOR_PROB) / PRIOR_PROB))

    def _levels(self, features: Sequence[torch.Tensor], pss: bool):
        """(reg, obj logit, cls logits, pss logit or None) per stride, each [B, ch, H, W]."""
        levels = []
        for k, x in enumerate(features):
            x = self.stems[k](x)
            reg_feature = self.reg_convs[k](x)
            selector = self.selector_logit(k, reg_feature) if pss else None
            levels.append((self.reg_preds[k](reg_feature), self.obj_preds[k](reg_feature),
                           self.cls_preds[k](self.cls_convs[k](x)), selector))
        return levels

    def selector_logit(self, level: int, reg_feature: torch.Tensor) -> torch.Tensor:
        """The selector's logit [B, 1, H, W] at one stride from that stride's regression-branch features. The
        stop-gradient: it learns from the features and never changes them."""
        return self.pss_preds[level](self.pss_convs[level](reg_feature.detach()))

    def level_logits(self, features: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(reg, obj logit, cls logits) per stride, each [B, ch, H, W] (the plain head's, without the selector)."""
        return [level[:3] for level in self._levels(features, pss=False)]

    def level_scores(self, features: Sequence[torch.Tensor]) -> list[tuple[torch.Tensor, torch.Tensor, torch.Tensor]]:
        """(reg raw, obj probability, cls probabilities) per stride; with the selector in use, obj is obj·pss."""
        pss = self.e2e and self.use_pss
        return [(reg, obj.sigmoid() * selector.sigmoid() if pss else obj.sigmoid(), cls.sigmoid())
                for reg, obj, cls, selector in self._levels(features, pss)]

    def split_outputs(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """[reg8, obj8, cls8, reg16, ...]: reg raw, obj/cls sigmoided (obj·pss end to end) — the export layout."""
        return [t for level in self.level_scores(features) for t in level]

    def loss(self, features: Sequence[torch.Tensor], targets: torch.Tensor,
             use_l1: bool = False) -> dict[str, torch.Tensor]:
        """The training loss terms (see `yolox_loss`) of these features against `targets`, in any mode; end to end,
        with the selector's term."""
        from ..losses import yolox_loss  # the training side; only needed for training

        levels = self._levels(features, self.e2e)
        return yolox_loss([torch.cat(level[:3], 1) for level in levels], self.strides, targets, use_l1,
                          assign_mode=self.assign_mode, pss=[level[3] for level in levels] if self.e2e else None)

    def raw_outputs(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Per stride [B, 5+C, H, W]: raw regression, objectness and class logits (what the loss takes)."""
        return [torch.cat(level, 1) for level in self.level_logits(features)]

    def forward(self, features: Sequence[torch.Tensor], targets: torch.Tensor | None = None):
        if self.training:
            return self.raw_outputs(features) if targets is None else self.loss(features, targets, self.use_l1)
        maps = [torch.cat(level, 1) for level in self.level_scores(features)]
        flat = torch.cat([m.flatten(2) for m in maps], 2).transpose(1, 2)
        if not self.decode_in_inference:
            return flat
        grid, stride = anchor_grid([m.shape[-2:] for m in maps], self.strides, flat)
        return torch.cat((decode_boxes(flat[..., :4], grid, stride), flat[..., 4:]), -1)


class YOLOX(nn.Module):
    """`model(images)` in eval mode: decoded [B, N, 5+C]; `model(images, targets)` in train mode: the loss dict.
    Images are float [B, 3, H, W], BGR 0-255 (no normalisation), H and W multiples of 32."""

    def __init__(self, backbone: PAFPN, head: YOLOXHead):
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.pss_only = False  # freeze_all_but_pss()

    def forward(self, x: torch.Tensor, targets: torch.Tensor | None = None):
        return self.head(self.backbone(x), targets)

    def pss_modules(self) -> list[nn.Module]:
        """The end-to-end selector's modules (none without it)."""
        return [self.head.pss_convs, self.head.pss_preds] if self.head.e2e else []

    def freeze_all_but_pss(self) -> None:
        """Train only the selector: every other parameter stops requiring gradients and every other module stays in
        eval mode (BatchNorm keeps its statistics) when the model is put in train mode. Thanks to the stop-gradient
        the selector learns what it would learn beside a training detector, on a fixed one."""
        if not self.head.e2e:
            raise ConfigError("only an end-to-end model (e2e) has a selector to train alone")
        self.requires_grad_(False)
        for module in self.pss_modules():
            module.requires_grad_(True)
        self.pss_only = True
        self.train(self.training)

    def train(self, mode: bool = True) -> YOLOX:
        super().train(mode)
        if mode and self.pss_only:
            self.backbone.eval()
            selector = {id(m) for m in self.pss_modules()}
            for module in self.head.children():
                if id(module) not in selector:
                    module.eval()
        return self


def build_model(name: str, num_classes: int = 80, e2e: bool = False) -> YOLOX:
    """The YOLOX variant `name` (nano, tiny, s, m, l, x) as the official exps/default build it; `e2e` adds the
    end-to-end positive-sample selector (YOLOXHead), whose keys are the only ones official checkpoints lack."""
    variant = VARIANTS.get(name)
    if variant is None:
        raise ConfigError(f"unknown YOLOX variant {name!r}; choose one of {', '.join(VARIANTS)}")
    if num_classes < 1:
        raise ConfigError(f"num_classes must be at least 1, got {num_classes}")
    return YOLOX(PAFPN(variant.depth, variant.width, variant.depthwise),
                 YOLOXHead(num_classes, variant.width, variant.depthwise, e2e=e2e))


def needs_nms(model: nn.Module) -> bool:
    """Whether a model's detections need NMS: every model but an end-to-end one scoring with its selector (any
    module with a `head` answers: YOLOX, the export graph, a QAT model)."""
    head = getattr(model, "head", None)
    return not (getattr(head, "e2e", False) and getattr(head, "use_pss", False))


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, size: int | tuple[int, int]) -> int:
    """FLOPs (2 per multiply-add, convolutions and matmuls) of one eval-mode forward pass at `size`; the measure
    the YOLOX paper's GFLOPs column uses."""
    from torch.utils.flop_counter import FlopCounterMode

    h, w = (size, size) if isinstance(size, int) else size
    param = next(model.parameters())
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(torch.zeros(1, 3, h, w, dtype=param.dtype, device=param.device))
    finally:
        model.train(was_training)
    return counter.get_total_flops()
