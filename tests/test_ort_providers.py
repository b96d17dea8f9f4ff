"""onnxruntime execution providers (`--provider`, `model.options.onnxruntime.provider`). Neither TensorRT nor
onnxruntime-gpu can be installed here, so the selection is tested as a function over what an installation could
offer, and the real session only on the CPU: a provider asked for but not installed falls back with one line."""

from __future__ import annotations

import logging
from pathlib import Path

import onnxruntime as ort
import pytest
from runtime_helpers import onnx_model

from edge_yolox.backends import load_backend
from edge_yolox.backends import onnxruntime as ort_backend
from edge_yolox.backends.onnxruntime import engine_cache, select_providers
from edge_yolox.cli import build_parser
from edge_yolox.config import load_config
from edge_yolox.errors import ConfigError
from edge_yolox.runflags import overrides_from_args

TRT, CUDA, CPU = "TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"
JETSON = [TRT, CUDA, CPU]  # what JetPack's onnxruntime-gpu lists
CACHE = Path("/var/lib/edge-yolox/trt")


@pytest.mark.parametrize(("requested", "available", "expected"), [
    ("auto", JETSON, [TRT, CUDA, CPU]),
    ("auto", [CUDA, CPU], [CUDA, CPU]),
    ("auto", [CPU], [CPU]),
    ("auto", ["AzureExecutionProvider", CPU], [CPU]),  # the PyPI wheel: providers we do not use are skipped
    ("auto", [], [CPU]),  # the CPU is always the fallback
    ("tensorrt", JETSON, [TRT, CUDA, CPU]),
    ("tensorrt", [CUDA, CPU], [CUDA, CPU]),  # not installed: the next best
    ("tensorrt", [CPU], [CPU]),
    ("cuda", JETSON, [CUDA, CPU]),  # asking for CUDA skips TensorRT
    ("cuda", [TRT, CPU], [CPU]),
    ("cuda", [CPU], [CPU]),
    ("cpu", JETSON, [CPU]),
])
def test_provider_order(requested, available, expected):
    chosen = select_providers(requested, available, "fp32", CACHE)
    assert [name for name, _ in chosen] == expected
    assert all(options == {} for name, options in chosen if name != TRT)


@pytest.mark.parametrize(("precision", "int8"), [("int8", True), ("fp16", False), ("fp32", False), (None, False)])
def test_tensorrt_options(precision, int8):
    (name, options), *_ = select_providers("auto", JETSON, precision, CACHE)
    assert name == TRT
    expected = {"trt_fp16_enable": True, "trt_engine_cache_enable": True, "trt_engine_cache_path": str(CACHE)}
    assert options == ({**expected, "trt_int8_enable": True} if int8 else expected)


def test_engine_cache_in_the_state_directory(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", f"{tmp_path}/edge-yolox:{tmp_path}/other")
    assert engine_cache() == tmp_path / "edge-yolox" / "trt"
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert engine_cache() == tmp_path / ".cache" / "edge-yolox" / "trt"


def test_missing_provider_falls_back_to_the_cpu_with_one_line(caplog):
    assert CUDA not in ort.get_available_providers()  # this machine: the CPU wheel
    with caplog.at_level(logging.INFO):
        backend = load_backend(onnx_model(), threads=2, options={"onnxruntime": {"provider": "cuda"}})
    assert backend.device == backend.session.get_providers()[0] == CPU
    why = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(why) == 1 and f"provider {CUDA} is not installed here" in why[0] and f"using {CPU} instead" in why[0]
    assert any(f"with onnxruntime on {CPU}" in r.getMessage() for r in caplog.records)


@pytest.mark.filterwarnings("ignore:Specified provider")  # onnxruntime's own warning about the pretended ones
def test_tensorrt_cache_directory_is_created(monkeypatch, tmp_path, caplog):
    """With TensorRT listed (pretended: onnxruntime skips a provider it lacks), the cache's parents are made."""
    monkeypatch.setattr(ort, "get_available_providers", lambda: JETSON)
    monkeypatch.setenv("STATE_DIRECTORY", str(tmp_path / "state"))
    with caplog.at_level(logging.WARNING):
        backend = load_backend(onnx_model(), threads=2)
    assert (tmp_path / "state" / "trt").is_dir() and backend.device == CPU
    assert not caplog.records  # auto asks for nothing in particular: no fallback line


def test_bad_provider_is_a_one_line_config_error(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text("model:\n  options:\n    onnxruntime: {provider: gpu}\n")
    with pytest.raises(ConfigError) as raised:
        load_config("x86", str(config))
    message = str(raised.value)
    assert "\n" not in message
    assert message == (f"{config}: model.options.onnxruntime.provider: invalid value 'gpu'; "
                       "allowed: auto, tensorrt, cuda, cpu")


def test_provider_flag_and_boards():
    args = build_parser().parse_args(["run", "--demo", "--provider", "tensorrt"])
    assert overrides_from_args(args)["model"]["options"] == {"onnxruntime": {"provider": "tensorrt"}}
    with pytest.raises(SystemExit):
        build_parser().parse_args(["bench", "--model", "m.onnx", "--provider", "gpu"])
    for board in ("jetson-orin-nano", "jetson-nano"):
        assert load_config(board).model.options["onnxruntime"] == {"provider": "auto"}
    assert ort_backend.OPTIONS["provider"] == "auto"
