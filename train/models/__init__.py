"""YOLOX networks with the official module layout (official checkpoints load with strict=True)."""

from .blocks import BaseConv, Bottleneck, CSPLayer, DWConv, Focus, SPPBottleneck, UnshuffleFocus
from .yolox import (
    PAFPN,
    PSS_PREFIXES,
    VARIANTS,
    YOLOX,
    CSPDarknet,
    Variant,
    YOLOXHead,
    build_model,
    count_flops,
    count_params,
    default_size,
    needs_nms,
)

__all__ = [
    "BaseConv", "Bottleneck", "CSPLayer", "CSPDarknet", "DWConv", "Focus", "PAFPN", "PSS_PREFIXES", "SPPBottleneck",
    "UnshuffleFocus", "VARIANTS", "Variant", "YOLOX", "YOLOXHead", "build_model", "count_flops", "count_params",
    "default_size", "needs_nms",
]
