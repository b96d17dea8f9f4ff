"""Hostile and careless input (tests/hostile.py) against the real CLI: every bad file or flag ends with exit 2 and
one line on stderr naming the file and key — never a traceback, a signal, a hang, or code run from the file."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from hostile import (
    LINE_TOTALS,
    MARKER_NAME,
    NON_UTF8_CONFIG,
    UNIT_INJECTIONS,
    YAML_CONFIGS,
    ZONES_FILES,
    coco_mutations,
    demo_meta,
    evil_pickle,
    meta_mutations,
)
from runtime_helpers import ROOT, cli

from edge_yolox.errors import ConfigError
from edge_yolox.service import render

DEMO = ROOT / "edge_yolox" / "demo" / "yolox-nano-shapes-int8.ncnn"
RUN = ("-q", "run", "--board", "x86", "--source", "synthetic", "--limit", "2")


def assert_rejected(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stderr[-2000:])
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


# ---- checkpoints: nothing in a pickle runs, on any path that reads one


@pytest.mark.parametrize("command", ["train --resume", "train --weights", "eval", "export"])
def test_pickle_payload_never_runs(tmp_path, command):
    pytest.importorskip("torch")
    marker = tmp_path / MARKER_NAME
    evil = evil_pickle(tmp_path / "evil.pth", marker)
    coco = tmp_path / "coco.json"
    coco.write_text(json.dumps({"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "x"}]}))
    train = ["train", "--data", "synthetic:4", "--epochs", "1", "--workers", "0", "--out", tmp_path / "out"]
    argv = {"train --resume": [*train, "--resume", evil], "train --weights": [*train, "--weights", evil],
            "eval": ["eval", "--data", coco, "--model", evil],
            "export": ["export", "--out", tmp_path / "bundle", "--weights", evil]}[command]
    result = cli(*argv, timeout=300)
    assert not marker.exists(), "the checkpoint's pickle ran a command"
    assert_rejected(result, str(evil))


# ---- configs: bounded, decoded, finite, and errors name the right file


@pytest.mark.parametrize("name", sorted(YAML_CONFIGS))
def test_hostile_config_files(tmp_path, name):
    config = tmp_path / "site.yaml"
    config.write_text(YAML_CONFIGS[name])
    started = time.monotonic()
    result = cli(*RUN, "--model", DEMO, "--config", config, timeout=60)  # runs in ROOT
    assert_rejected(result, str(config))
    assert time.monotonic() - started < 30  # a bound, not a benchmark: the unbounded bomb ran for minutes
    assert not (ROOT / MARKER_NAME).exists()


def test_non_utf8_and_oversized_configs(tmp_path):
    config = tmp_path / "latin1.yaml"
    config.write_bytes(NON_UTF8_CONFIG)
    assert_rejected(cli(*RUN, "--model", DEMO, "--config", config), str(config), "UTF-8")
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 200_000)
    assert_rejected(cli(*RUN, "--model", DEMO, "--config", big), str(big), "larger than")
    assert_rejected(cli(*RUN, "--model", DEMO, "--config", tmp_path), str(tmp_path), "directory")


@pytest.mark.parametrize("flags, key", [
    (["--conf", "nan"], "detect.conf"),
    (["--nms", "nan"], "detect.iou"),
    (["--nms", "inf"], "detect.iou"),
    (["--stats-interval", "nan"], "runtime.stats_interval_s"),
    (["--img-size", "100000"], "model.input_size"),
    (["--max-det", "0"], "detect.max_det"),
])
def test_non_finite_and_out_of_range_flags(flags, key):
    assert_rejected(cli(*RUN, "--model", DEMO, *flags), "command line", key)


@pytest.mark.parametrize("argv, fragment", [
    (["eval", "--model", "m.onnx", "--data", "d", "--conf", "5"], "--conf"),
    (["eval", "--model", "m.onnx", "--data", "d", "--iou", "nan"], "--iou"),
    (["train", "--data", "synthetic", "--batch", "0"], "batch"),
    (["train", "--data", "synthetic", "--epochs", "-1"], "epochs"),
    (["train", "--data", "synthetic", "--variant", "huge"], "variant"),
])
def test_training_side_flags(argv, fragment):
    result = cli(*argv)
    assert_rejected(result, fragment)


def test_training_config_file_values(tmp_path):
    pytest.importorskip("torch")
    config = tmp_path / "train.yaml"
    config.write_text("aug:\n  flip_prob: .nan\n")
    assert_rejected(cli("train", "--data", "synthetic", "--config", config), str(config), "aug.flip_prob")
    config.write_text(YAML_CONFIGS["alias bomb"])
    assert_rejected(cli("train", "--data", "synthetic", "--config", config), str(config))


def test_errors_name_the_file_that_set_the_key(tmp_path):
    config = tmp_path / "site.yaml"
    config.write_text("outputs:\n  jsonl:\n    flush_every: nope\n")
    assert_rejected(cli(*RUN, "--model", DEMO, "--config", config), str(config), "outputs.jsonl.flush_every")
    config.write_text("outputs:\n  stdout: 5\n")
    result = cli(*RUN, "--model", DEMO, "--config", config)
    assert_rejected(result, str(config), "outputs.stdout")
    assert "boards/x86.yaml" not in result.stderr


# ---- zones files and the line totals kept across restarts


@pytest.mark.parametrize("name", sorted(ZONES_FILES))
def test_hostile_zones_files(tmp_path, name):
    content, fragment = ZONES_FILES[name]
    zones = tmp_path / "zones.yaml"
    zones.write_text(content)
    result = cli(*RUN, "--model", DEMO, "--zones", zones, "--state-dir", tmp_path, timeout=60)
    assert_rejected(result, str(zones), fragment)
    assert not (ROOT / MARKER_NAME).exists()


def test_corrupt_line_totals_are_kept_aside_and_the_run_goes_on(tmp_path):
    state = tmp_path / "lines.json"
    state.write_bytes(LINE_TOTALS["deep nesting"])
    result = cli(*RUN, "--model", DEMO, "--line", "gate=0.5,0,0.5,1", "--state-dir", tmp_path, timeout=60)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (warning,) = [line for line in result.stderr.splitlines() if line.strip()]
    (aside,) = tmp_path.glob("lines.json.corrupt-*")
    assert str(state) in warning and aside.name in warning and "start at zero" in warning
    assert aside.read_bytes() == LINE_TOTALS["deep nesting"]
    assert not state.exists()  # nothing crossed, nothing written
    assert all(json.loads(line)["lines"] == {"gate": {}} for line in result.stdout.splitlines())


# ---- model bundles: schema-checked meta.json, files confined to the bundle


@pytest.mark.parametrize("name", sorted(meta_mutations(demo_meta(DEMO))))
def test_hostile_meta_json(tmp_path, name):
    bundle = tmp_path / "bundle"
    shutil.copytree(DEMO, bundle)
    content, key = meta_mutations(demo_meta(DEMO))[name]
    (bundle / "meta.json").write_text(content if isinstance(content, str) else json.dumps(content))
    result = cli(*RUN, "--model", bundle, timeout=60)
    assert_rejected(result, "meta.json", key)


@pytest.mark.parametrize("name", sorted(coco_mutations()))
def test_hostile_coco_json(tmp_path, name):
    content, fragment = coco_mutations()[name]
    annotations = tmp_path / "instances.json"
    annotations.write_text(json.dumps(content))
    result = cli("eval", "--model", DEMO, "--data", annotations, "--no-progress", timeout=120)
    assert_rejected(result, str(annotations), fragment)


# ---- the service unit: nothing a flag holds can add a directive


@pytest.mark.parametrize("value", UNIT_INJECTIONS)
@pytest.mark.parametrize("flag", ["--mqtt-password-file", "--mqtt-key"])
def test_unit_injection_is_refused(flag, value):
    args = ["--", "--source", "synthetic", "--model", str(DEMO), "--mqtt", "mqtts://u@127.0.0.1/x", flag, value]
    with pytest.raises(ConfigError) as err:
        render("edge-yolox", "edge-yolox", args)
    assert "\n" not in str(err.value)


def test_unit_specifiers_and_quotes_are_escaped(tmp_path):
    secret = tmp_path / "100% secret"
    secret.write_text("pw\n")
    weird_python = tmp_path / 'py "3" \\ $HOME %n' / "python"
    args = ["--", "--source", "synthetic", "--model", str(DEMO), "--mqtt", "mqtt://u@127.0.0.1/x",
            "--mqtt-password-file", str(secret)]
    unit = render("edge-yolox", "edge-yolox", args, python=str(weird_python)).unit
    assert f"LoadCredential=mqtt-password:{tmp_path}/100%% secret" in unit.splitlines()
    exec_start = next(line for line in unit.splitlines() if line.startswith("ExecStart="))
    assert exec_start.startswith(f'ExecStart="{tmp_path}/py \\"3\\" \\\\ $$HOME %%n/python" -m edge_yolox.cli run')
    plain = render("edge-yolox", "edge-yolox", args).unit
    assert len(unit.splitlines()) == len(plain.splitlines())


# ---- images: degenerate shapes are frames like any other


@pytest.mark.parametrize("shape", [(20000, 1, 3), (1, 20000, 3), (1, 1, 3)])
def test_degenerate_images_are_detected_on(tmp_path, shape):
    import cv2
    import numpy as np

    image = tmp_path / "strip.png"
    cv2.imwrite(str(image), np.full(shape, 200, np.uint8))
    result = cli("-q", "run", "--board", "x86", "--model", DEMO, "--source", image)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-2000:]
    (record,) = [json.loads(line) for line in result.stdout.splitlines()]
    assert record["size"] == list(shape[:2])


def test_bare_model_declaring_a_huge_input(tmp_path):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    shape = [1, 3, 100000, 100000]
    graph = helper.make_graph([helper.make_node("Identity", ["images"], ["out"])], "huge",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, shape)])
    model = tmp_path / "huge.onnx"
    onnx.save(helper.make_model(graph), model)
    assert_rejected(cli(*RUN, "--model", model, timeout=60), str(model), "4096")


def test_a_failing_sink_releases_the_running_source(tmp_path):
    """The sinks are built after the source's capture thread started: their failure must stop it (a thread left
    running aborted the interpreter: 'terminate called without an active exception', exit 134)."""
    (tmp_path / "a-file").write_text("")
    result = cli(*RUN, "--model", DEMO, "--jsonl", tmp_path / "a-file" / "out.jsonl", timeout=60)
    assert_rejected(result, "outputs.jsonl")
    assert "terminate called" not in result.stderr


@pytest.mark.parametrize("url", ["rtsp://u:pa/ss@cam.lan/live", "rtsp://u:p@ss@cam.lan/live", "rtsp://u:pass@/x",
                                 "http://u:pass@cam.lan:notaport/x", "u:pass@cam.lan"])
def test_stream_urls_never_show_their_password(url):
    """Stream and MQTT URLs share one redaction; the source's own version showed `pa/ss` and `p@ss` passwords."""
    from edge_yolox.errors import redact

    shown = redact(url)
    assert not any(secret in shown for secret in ("pass", "pa/ss", "p@ss")), shown
    assert shown.endswith("cam.lan/live") or shown.endswith("/x") or shown.endswith("cam.lan")
