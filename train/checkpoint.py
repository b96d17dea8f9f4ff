"""Checkpoints: safe loading of official-layout (`{"model": state_dict, ...}`) and bare state_dicts into YOLOX, and
the trainer's own save and exact resume.

Files are unpickled with `weights_only=True`. The only non-tensor globals allowed are numpy's scalar, dtype
and array reconstruction, which official training checkpoints carry (`best_ap` is a numpy float64) as do
this package's own (numpy RNG state) — never a blanket `weights_only=False`.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import random
import sys
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, Union

import numpy as np
import torch

from edge_yolox.errors import ConfigError, ModelError

from .distributed import unwrap
from .models import PSS_PREFIXES, VARIANTS, YOLOX, build_model

if TYPE_CHECKING:  # annotations only: loading a checkpoint needs no training machinery
    from .config import TrainConfig
    from .ema import ModelEMA

StateDict = dict[str, torch.Tensor]
CLS_PREFIX = "head.cls_preds."
STEM_KEY = "backbone.backbone.stem.conv.conv.weight"
REPORT_LIMIT = 8  # keys listed per problem in a report


def numpy_safe_globals() -> list:
    """numpy scalars, dtypes and plain arrays, under both the numpy 1 (`numpy.core`) and 2 (`numpy._core`)
    module names a pickle may use."""
    multiarray = np._core.multiarray if hasattr(np, "_core") else np.core.multiarray
    allowed: list = [np.dtype, np.ndarray]
    for name in ("scalar", "_reconstruct"):
        for module in ("numpy.core.multiarray", "numpy._core.multiarray"):
            allowed.append((getattr(multiarray, name), f"{module}.{name}"))
    allowed += sorted({type(np.dtype(c)) for c in "?bBhHiIlLqQefdgFD"}, key=lambda t: t.__name__)
    return allowed


def read_checkpoint(path: Union[str, Path]) -> dict:
    """The unpickled checkpoint (weights_only, numpy scalars allowed); a ModelError says why it cannot be read."""
    path = Path(path)
    if not path.is_file():
        raise ModelError(f"{path}: checkpoint not found")
    try:
        with torch.serialization.safe_globals(numpy_safe_globals()):
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:
        raise ModelError(f"{path}: refused to unpickle {', '.join(_unsafe_globals(path))}: a checkpoint should hold "
                         "only tensors, numbers and numpy scalars (only load files you trust)") from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise ModelError(f"{path}: not a readable PyTorch checkpoint, truncated or corrupt? ({type(exc).__name__}: "
                         f"{str(exc).strip()[:200]})") from None
    if not isinstance(data, Mapping):
        raise ModelError(f"{path}: holds a {type(data).__name__}, not a checkpoint dict or state_dict")
    return dict(data)


def _unsafe_globals(path: Path) -> list[str]:
    allowed = {f"{g.__module__}.{g.__qualname__}" if not isinstance(g, tuple) else g[1] for g in numpy_safe_globals()}
    try:
        found = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # noqa: BLE001 - only used to word the message
        return ["objects it does not allow"]
    return [g for g in found if g not in allowed] or ["objects it does not allow"]


def state_dict_of(checkpoint: Mapping, source: str = "checkpoint") -> StateDict:
    """The model weights of an official-layout checkpoint ("model") or a bare state_dict; a DDP `module.` prefix
    is removed."""
    state = checkpoint.get("model", checkpoint)
    if not isinstance(state, Mapping) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError(f"{source}: no state_dict found (expected {{'model': state_dict}} or a bare state_dict; "
                         f"top-level keys: {', '.join(map(str, list(checkpoint)[:10]))})")
    state = dict(state)
    if all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def is_e2e(state: Mapping[str, torch.Tensor]) -> bool:
    """Whether a state_dict is an end-to-end YOLOX's (it has the positive-sample selector)."""
    return any(k.startswith(PSS_PREFIXES) for k in state)


def _num_classes(state: Mapping[str, torch.Tensor], source: str) -> int:
    weight = state.get(CLS_PREFIX + "0.weight")
    if weight is None or weight.ndim != 4:
        raise ModelError(f"{source}: not a YOLOX state_dict (no {CLS_PREFIX}0.weight)")
    return int(weight.shape[0])


def infer_variant(state: Mapping[str, torch.Tensor], source: str = "checkpoint") -> tuple[str, int]:
    """(variant, num_classes) from tensor shapes: width from the stem's output channels, depthwise from the
    dark2 downsampling conv, depth from the number of dark3 bottlenecks."""
    try:
        width = state[STEM_KEY].shape[0] / 64
        depthwise = "backbone.backbone.dark2.0.dconv.conv.weight" in state
        blocks = {k.split(".")[5] for k in state if k.startswith("backbone.backbone.dark3.1.m.")}
    except (KeyError, IndexError, AttributeError):
        raise ModelError(f"{source}: not a YOLOX state_dict (no {STEM_KEY})") from None
    num_classes = _num_classes(state, source)
    for name, v in VARIANTS.items():
        if v.width == width and v.depthwise == depthwise and max(round(v.depth * 3), 1) * 3 == len(blocks):
            return name, num_classes
    raise ModelError(f"{source}: no YOLOX variant has width {width:g}, {len(blocks)} dark3 bottlenecks, "
                     f"{'depthwise' if depthwise else 'dense'} convs; pass the variant explicitly")


@dataclass
class LoadReport:
    loaded: int = 0
    reinitialized: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


def _summarize(keys: list[str]) -> str:
    """A few keys and a count per module, instead of hundreds of lines."""
    groups = Counter(".".join(k.split(".")[:3]) for k in keys)
    shown = ", ".join(f"{g} ({n})" for g, n in groups.most_common(REPORT_LIMIT))
    more = f", and {len(groups) - REPORT_LIMIT} more modules" if len(groups) > REPORT_LIMIT else ""
    return f"{len(keys)} keys in {shown}{more}"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_state(model: YOLOX, state: Mapping[str, torch.Tensor], source: str = "checkpoint",
               say: Callable[[str], None] = _say) -> LoadReport:
    """Load `state` into `model` strictly, except that a different class count re-initialises only the class
    prediction layers and a plain checkpoint leaves an end-to-end model's selector as initialised (each said).
    Anything else that does not fit raises a ModelError with a short report
    before the model is touched."""
    own = model.state_dict()
    theirs = state.get(CLS_PREFIX + "0.weight")
    new_classes = theirs is not None and theirs.shape[0] != model.head.num_classes
    kept = {k: v for k, v in state.items() if not (new_classes and k.startswith(CLS_PREFIX))}
    # An end-to-end model takes a plain checkpoint: its selector keeps its initialisation (said below).
    selector = [k for k in own if k.startswith(PSS_PREFIXES)] if model.head.e2e and not is_e2e(state) else []
    expected = {k for k in own if not (new_classes and k.startswith(CLS_PREFIX))} - set(selector)
    missing = sorted(expected - kept.keys())
    unexpected = sorted(kept.keys() - own.keys())
    mismatched = [f"{k} {list(kept[k].shape)} vs model {list(own[k].shape)}"
                  for k in sorted(kept.keys() & own.keys()) if kept[k].shape != own[k].shape]
    if missing or unexpected or mismatched:
        problems = []
        if missing:
            problems.append(f"missing {_summarize(missing)}")
        if unexpected:
            problems.append(f"unexpected {_summarize(unexpected)}")
        if mismatched:
            problems.append(f"{len(mismatched)} shape mismatches: {'; '.join(mismatched[:REPORT_LIMIT])}")
        raise ModelError(f"{source} does not fit this model{_looks_like(state, source)}: " + "; ".join(problems))
    report = LoadReport(loaded=len(kept))
    if new_classes:
        model.head.reset_classes(model.head.num_classes)
        report.reinitialized = sorted(state.keys() - kept.keys())
        report.messages.append(f"{source}: has {theirs.shape[0]} classes, the model {model.head.num_classes}: "
                               f"re-initialised the class predictions ({CLS_PREFIX}*), loaded everything else")
    if selector:
        report.reinitialized += selector
        report.messages.append(f"{source}: has no end-to-end selector: initialised its {len(selector)} keys "
                               f"({', '.join(PSS_PREFIXES)}*), loaded everything else")
    model.load_state_dict(kept, strict=not (new_classes or selector))
    for message in report.messages:
        say(message)
    return report


def _looks_like(state: Mapping[str, torch.Tensor], source: str) -> str:
    try:
        name, classes = infer_variant(state, source)
    except ModelError:
        return ""
    return f" (the checkpoint looks like YOLOX-{name} with {classes} classes)"


def load_checkpoint(model: YOLOX, path: Union[str, Path], say: Callable[[str], None] = _say) -> LoadReport:
    """Load an official-layout or bare-state_dict checkpoint file into `model` (see `load_state`)."""
    return load_state(model, state_dict_of(read_checkpoint(path), str(path)), str(path), say)


@dataclass
class LoadedModel:
    model: YOLOX  # in eval mode
    variant: str
    class_names: Optional[list[str]]  # when the checkpoint records them ("class_names")


def model_from_checkpoint(path: Union[str, Path], variant: Optional[str] = None,
                          say: Callable[[str], None] = _say) -> LoadedModel:
    """The YOLOX that fits a checkpoint file; the variant is inferred from tensor shapes (and said) unless given."""
    checkpoint = read_checkpoint(path)
    state = state_dict_of(checkpoint, str(path))
    if variant is None:
        variant, num_classes = infer_variant(state, str(path))
        say(f"{path}: inferred YOLOX-{variant} with {num_classes} classes from the tensor shapes "
            "(--variant overrides)")
    else:
        num_classes = _num_classes(state, str(path))
    model = build_model(variant, num_classes, e2e=is_e2e(state))
    load_state(model, state, str(path), say)
    names = checkpoint.get("class_names")
    valid = isinstance(names, (list, tuple)) and len(names) == num_classes and all(isinstance(n, str) for n in names)
    return LoadedModel(model.eval(), variant, list(names) if valid else None)


def rng_state() -> dict:
    return {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])


def save_checkpoint(path: Path, model, ema: ModelEMA | None, optimizer, epoch: int, best_ap: float,
                    curr_ap: float, cfg: TrainConfig, num_classes: int) -> None:
    """Official layout: "model" is what to deploy (the EMA weights when EMA is on); the raw training weights,
    EMA counter and RNG ride along so that a resume continues exactly."""
    state = {
        "model": (ema.model if ema else unwrap(model)).state_dict(),
        "train_model": unwrap(model).state_dict(),
        "ema_updates": ema.updates if ema else 0,
        "optimizer": optimizer.state_dict(),
        "start_epoch": epoch + 1,
        "best_ap": best_ap,
        "curr_ap": curr_ap,
        "rng": rng_state(),
        "variant": cfg.variant,
        "num_classes": num_classes,
        "config": {k: v for k, v in dataclasses.asdict(cfg).items() if k != "aug"},
    }
    tmp = path.with_suffix(".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_training_state(path: Union[str, Path], model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                        ema: ModelEMA | None) -> tuple[int, float]:
    """Put a `save_checkpoint` file back into the training objects and the RNGs; (start_epoch, best_ap)."""
    state = read_checkpoint(path)  # the same allow-list as every checkpoint: RNG states are tuples and arrays
    try:
        model.load_state_dict(state["train_model"])
        optimizer.load_state_dict(state["optimizer"])
        if ema:
            ema.model.load_state_dict(state["model"])
            ema.updates = state["ema_updates"]
        start_epoch, best_ap = state["start_epoch"], state.get("best_ap", 0.0)
        set_rng_state(state["rng"])
    except (KeyError, RuntimeError, ValueError, TypeError, IndexError) as exc:
        raise ConfigError(f"{path}: not a checkpoint this trainer can resume ({type(exc).__name__}: "
                          f"{str(exc)[:200]})") from None
    return start_epoch, best_ap
