"""YOLOX networks with the official module layout (official checkpoints load with strict=True)."""

from .blocks import BaseConv, Bottleneck, CSPLayer, DWConv, Focus, SPPBottleneck, UnshuffleFocus
from .yolox import (
    PAFPN,
    STRIDES,
    VARIANTS,
    YOLOX,
    CSPDarknet,
    Variant,
    YOLOXHead,
    build_model,
    count_flops,
    count_params,
)

__all__ = [
    "BaseConv", "Bottleneck", "CSPLayer", "CSPDarknet", "DWConv", "Focus", "PAFPN", "SPPBottleneck", "STRIDES",
    "UnshuffleFocus", "VARIANTS", "Variant", "YOLOX", "YOLOXHead", "build_model", "count_flops", "count_params",
]
