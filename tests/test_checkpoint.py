"""Checkpoints: official layout and bare state_dicts round-trip; safe loading (weights_only with the numpy allow-list,
anything else refused); class-count changes re-initialise only the class predictions; readable reports."""

from __future__ import annotations

import argparse
import numbers

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_yolox.train.checkpoint import (  # noqa: E402
    infer_variant,
    load_checkpoint,
    load_state,
    model_from_checkpoint,
    read_checkpoint,
)
from edge_yolox.train.models import VARIANTS, build_model  # noqa: E402
from models_helpers import nano_checkpoint  # noqa: E402

from edge_yolox.errors import ModelError  # noqa: E402


@pytest.fixture
def tiny3():
    torch.manual_seed(1)
    return build_model("tiny", num_classes=3).eval()


def same_weights(a: torch.nn.Module, b: torch.nn.Module, skip: str = "-") -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return all(torch.equal(sa[k], sb[k]) for k in sa if not k.startswith(skip))


def official_training_checkpoint(model: torch.nn.Module) -> dict:
    """What the official trainer saves: numpy scalars from COCOeval ride along with the weights."""
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    return {"start_epoch": 12, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
            "best_ap": np.float64(0.4123), "curr_ap": np.float32(0.40), "iters": np.int64(300)}


@pytest.mark.parametrize("layout", ["official", "bare", "ddp"])
def test_round_trip(tiny3, tmp_path, layout):
    state = {"official": official_training_checkpoint(tiny3), "bare": tiny3.state_dict(),
             "ddp": {f"module.{k}": v for k, v in tiny3.state_dict().items()}}[layout]
    path = tmp_path / "ckpt.pth"
    torch.save(state, path)
    fresh = build_model("tiny", num_classes=3)
    said = []
    report = load_checkpoint(fresh, path, say=said.append)
    assert same_weights(fresh, tiny3) and report.loaded == len(tiny3.state_dict()) and not said
    if layout == "official":
        checkpoint = read_checkpoint(path)
        assert isinstance(checkpoint["best_ap"], numbers.Real) and checkpoint["best_ap"] == pytest.approx(0.4123)


def test_trainer_checkpoint_loads_safely(tmp_path):
    """This package's own trainer checkpoints (numpy RNG state inside) load with weights_only too."""
    from edge_yolox.train.checkpoint import save_checkpoint
    from edge_yolox.train.config import TrainConfig
    from edge_yolox.train.ema import ModelEMA
    from edge_yolox.train.optimizer import build_optimizer

    model = build_model("nano", num_classes=2)
    optimizer = build_optimizer(model, TrainConfig())
    path = tmp_path / "best_ckpt.pth"
    save_checkpoint(path, model, ModelEMA(model), optimizer, 3, 0.5, 0.4, TrainConfig(), 2)
    loaded = model_from_checkpoint(path, say=lambda _: None)
    assert loaded.variant == "nano" and loaded.model.head.num_classes == 2 and same_weights(loaded.model, model)


def test_class_count_change_reinitialises_only_class_predictions(tmp_path, tiny3):
    path = tmp_path / "coco80.pth"
    torch.manual_seed(2)
    source = build_model("tiny", num_classes=80)
    torch.save({"model": source.state_dict()}, path)
    said = []
    report = load_checkpoint(tiny3, path, say=said.append)
    expected = sorted(f"head.cls_preds.{i}.{p}" for i in range(3) for p in ("weight", "bias"))
    assert sorted(report.reinitialized) == expected
    assert len(said) == 1 and "80 classes" in said[0] and "3" in said[0] and "head.cls_preds" in said[0]
    assert same_weights(tiny3, source, skip="head.cls_preds.")
    assert all(p.weight.shape[0] == 3 for p in tiny3.head.cls_preds)
    assert all(torch.allclose(p.bias, torch.full_like(p.bias, -np.log(99))) for p in tiny3.head.cls_preds)


def test_missing_and_unexpected_keys_are_reported_briefly(tiny3):
    state = dict(tiny3.state_dict())
    state.pop("head.stems.0.conv.weight")
    state["head.extra.weight"] = torch.zeros(1)
    before = {k: v.clone() for k, v in tiny3.state_dict().items()}
    with pytest.raises(ModelError) as info:
        load_state(tiny3, state, "my.pth")
    message = str(info.value)
    assert "my.pth" in message and "missing 1 keys in head.stems.0" in message
    assert "unexpected 1 keys in head.extra.weight" in message and "\n" not in message
    assert all(torch.equal(before[k], v) for k, v in tiny3.state_dict().items())  # untouched


def test_wrong_variant_says_what_the_checkpoint_is(tmp_path):
    with pytest.raises(ModelError) as info:
        load_checkpoint(build_model("tiny"), nano_checkpoint())
    message = str(info.value)
    assert "looks like YOLOX-nano with 80 classes" in message and len(message) < 2000


def test_unsafe_and_broken_files_are_refused(tmp_path, tiny3):
    unsafe = tmp_path / "unsafe.pth"
    torch.save({"model": tiny3.state_dict(), "args": argparse.Namespace(lr=0.1)}, unsafe)
    with pytest.raises(ModelError, match="refused to unpickle argparse.Namespace"):
        read_checkpoint(unsafe)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(nano_checkpoint().read_bytes()[:100_000])
    with pytest.raises(ModelError, match="truncated.pth: not a readable PyTorch checkpoint"):
        read_checkpoint(truncated)
    with pytest.raises(ModelError, match="checkpoint not found"):
        read_checkpoint(tmp_path / "absent.pth")
    not_a_state = tmp_path / "list.pth"
    torch.save({"model": [1, 2, 3]}, not_a_state)
    with pytest.raises(ModelError, match="no state_dict found"):
        load_checkpoint(tiny3, not_a_state)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_variant_inferred_from_shapes(name):
    state = {k: v for k, v in build_model(name, num_classes=7).state_dict().items()}
    assert infer_variant(state) == (name, 7)


def test_shared_official_checkpoint():
    said = []
    loaded = model_from_checkpoint(nano_checkpoint(), say=said.append)
    assert loaded.variant == "nano" and loaded.model.head.num_classes == 80 and not loaded.model.training
    assert said == [f"{nano_checkpoint()}: inferred YOLOX-nano with 80 classes from the tensor shapes "
                    "(--variant overrides)"]
    strict = build_model("nano")
    strict.load_state_dict(torch.load(nano_checkpoint(), weights_only=True)["model"], strict=True)
    assert same_weights(strict, loaded.model)
