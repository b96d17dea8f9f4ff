"""What a training run is told: `TrainConfig`, each variant's official recipe, and `edge-yolox train`'s flags.

The flags, a `--config` YAML and the recipe are merged into one dict and validated together against the
TrainConfig schema (edge_yolox.schema), so every bad value names where it came from.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

from edge_yolox.arguments import Parser
from edge_yolox.errors import ConfigError
from edge_yolox.files import load_yaml
from edge_yolox.schema import bounded, build, choice

from .data.augment import AugmentConfig
from .models import VARIANTS


@dataclass
class TrainConfig:
    variant: str = choice(*VARIANTS, default="nano")
    data: str = ""
    val_data: str = ""  # default: the training data
    out: str = ""  # default runs/train/<variant>
    epochs: int = bounded(1, 100_000, default=300)
    batch: int = bounded(1, 4096, default=16)  # total over all processes
    img_size: int = bounded(32, 4096, default=416)
    multiscale: tuple[int, int] | None = field(  # a new size every `multiscale_every` iterations
        default=(320, 640), metadata={"length": 2, "range": (32, 4096)})
    multiscale_every: int = bounded(1, default=10)
    warmup_epochs: int = bounded(0, default=5)
    no_aug_epochs: int = bounded(0, default=15)
    lr_per_img: float = bounded(0, 1, default=0.01 / 64)
    warmup_lr: float = bounded(0, 1, default=0.0)
    min_lr_ratio: float = bounded(0, 1, default=0.05)
    momentum: float = bounded(0, 1, default=0.9)
    weight_decay: float = bounded(0, 1, default=5e-4)
    ema: bool = True
    eval_interval: int = bounded(0, default=10)  # epochs; 0 = never evaluate
    workers: int = bounded(0, 256, default=4)
    seed: int = bounded(0, default=0)
    amp: bool = True  # used only where the device supports it (CUDA)
    sync_bn: bool = False
    assign_mode: str = choice("center", "legacy", default="center")  # legacy: YOLOX 0.1.1, radius 2.5 + in-box
    weights: str = ""
    resume: str = ""
    max_iters: int = bounded(0, default=0)  # stop after this many iterations per epoch (smoke runs); 0 = full
    e2e: bool = False  # the end-to-end (NMS-free) head: YOLOX with the positive-sample selector
    selector_only: bool = False  # with e2e: train only the selector, the rest frozen as --weights has it
    aug: AugmentConfig = field(default_factory=AugmentConfig)

    @property
    def base_lr(self) -> float:
        return self.lr_per_img * self.batch


def recipe(variant: str) -> TrainConfig:
    """The official exps/default values for each variant (Nano/Tiny: 416, scale 0.5-1.5, no mixup)."""
    cfg = TrainConfig(variant=variant)
    if variant in ("nano", "tiny"):
        cfg.aug.mosaic_scale = (0.5, 1.5)
        cfg.aug.mixup_prob = 0.0
        if variant == "nano":
            cfg.aug.mosaic_prob = 0.5
    else:
        cfg.img_size, cfg.multiscale = 640, (448, 832)
    return cfg


def _size_range(text: str) -> tuple[int, int] | None:
    """'320-640' -> (320, 640); 'off' -> None (one fixed size)."""
    if text.lower() in ("none", "off", "0"):
        return None
    try:
        lo, hi = (int(v) for v in text.replace(",", "-").split("-"))
    except ValueError:
        raise ConfigError(f"--multiscale {text!r}: expected a range like 320-640, or 'off'") from None
    if lo % 32 or hi % 32 or lo > hi:
        raise ConfigError(f"--multiscale {text!r}: both ends must be multiples of 32, low <= high")
    return lo, hi


def parse_args(argv: list[str] | None) -> TrainConfig:
    p = Parser(prog="edge-yolox train", description="Train YOLOX with the official recipe.")
    p.add_argument("--variant", default="nano", help="nano, tiny, s, m, l, x (default nano)")
    p.add_argument("--data", required=True,
                   help="COCO .json / folder with annotations/, YOLO data.yaml, VOC folder, or synthetic[:N]")
    p.add_argument("--val-data", help="evaluation dataset (default: the training data)")
    p.add_argument("--config", help="YAML of TrainConfig fields (and an `aug:` mapping) applied before the flags")
    p.add_argument("--epochs", type=int)
    p.add_argument("--batch", type=int, help="total batch size (lr = 0.01 * batch / 64)")
    p.add_argument("--img-size", type=int)
    p.add_argument("--multiscale", help="training size range, e.g. 320-640, or 'off'")
    p.add_argument("--weights", help="initial weights (official checkpoint); another class count is fine")
    p.add_argument("--resume", help="a last_ckpt.pth to continue exactly")
    p.add_argument("--out", help="output folder (checkpoints, log.csv, training_curves.png)")
    p.add_argument("--workers", type=int)
    p.add_argument("--eval-interval", type=int)
    p.add_argument("--no-aug-epochs", type=int)
    p.add_argument("--warmup-epochs", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--assign", dest="assign_mode", choices=("center", "legacy"))
    p.add_argument("--sync-bn", action="store_true", default=None)
    p.add_argument("--max-iters", type=int, help="iterations per epoch cap (smoke runs)")
    p.add_argument("--e2e", action="store_true", default=None,
                   help="end-to-end head: adds the positive-sample selector; its bundles run without NMS")
    p.add_argument("--selector-only", action="store_true", default=None,
                   help="with --e2e: train only the selector on the frozen --weights (the rest stays unchanged)")
    args = p.parse_args(argv)

    # The variant's recipe, then the --config YAML, then the flags; validated together against the schema.
    values = dataclasses.asdict(recipe(args.variant if args.variant in VARIANTS else "nano"))
    origins: dict[str, str] = {}
    if args.config:
        layer = load_yaml(args.config, "training config") or {}
        if not isinstance(layer, dict):
            raise ConfigError(f"{args.config}: must be a mapping of training options")
        for key, value in layer.items():
            if key == "aug" and isinstance(value, dict):
                values["aug"] = {**values["aug"], **value}
                origins.update({f"aug.{k}": args.config for k in value})
            else:
                values[key] = value
                origins[key] = args.config
    for key, value in vars(args).items():
        if value is not None and key not in ("config", "multiscale"):
            values[key], origins[key] = value, "command line"
    if args.multiscale is not None:
        values["multiscale"], origins["multiscale"] = _size_range(args.multiscale), "command line"
    cfg = build(TrainConfig, values, lambda key: origins.get(key, "built-in defaults"))
    cfg.out = cfg.out or f"runs/train/{cfg.variant}"
    if cfg.selector_only and not (cfg.e2e and (cfg.weights or cfg.resume)):
        raise ConfigError(f"{origins.get('selector_only')}: selector_only trains the end-to-end selector on a trained "
                          "model: it needs e2e and weights")
    if cfg.img_size % 32:
        raise ConfigError(f"{origins.get('img_size', 'built-in defaults')}: img_size {cfg.img_size}: "
                          "must be a multiple of 32")
    return cfg
