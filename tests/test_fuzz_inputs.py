"""Property-based fuzzing (Hypothesis) of every loader a user's file reaches, and of the command-line flags: random
and mutated configs, meta.json files, COCO datasets and flag values are either accepted or refused with the
package's one error type (a one-line message) — never another exception. Bounded for CI (a minute or two)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import string

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from runtime_helpers import ROOT, cli

from edge_yolox.bundle import ModelMeta
from edge_yolox.cli import build_parser, config_from_args
from edge_yolox.config import load_config
from edge_yolox.errors import EdgeYoloxError
from edge_yolox.files import parse_json, parse_yaml

DEMO = ROOT / "edge_yolox" / "demo" / "yolox-nano-shapes-int8.ncnn"
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-2**70, 2**70), st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=20), st.sampled_from(["", "..", "../../etc/passwd", "<img src=x onerror=alert(1)>",
                                           "a\nb", "%n", "${HOME}", "\x00", "nan", "-1", "1e309"]))
values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(st.text(max_size=12), inner, max_size=4)),
                      max_leaves=12)
CONFIG_KEYS = ["board", "model", "model.path", "model.threads", "model.input_size", "model.backends", "detect",
               "detect.conf", "detect.iou", "detect.classes", "detect.max_det", "camera.fps", "camera.kind",
               "source.uri", "source.reconnect_min_s", "source.timeout_s", "runtime.stats_interval_s",
               "runtime.device", "outputs", "outputs.stdout", "outputs.jsonl", "outputs.jsonl.path",
               "outputs.mqtt.url", "outputs.mqtt.qos", "outputs.serial.baud", "outputs.http.port"]


def nested(key: str, value) -> dict:
    out: dict = {}
    node = out
    *parents, leaf = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
    node[leaf] = value
    return out


def accepted_or_refused(call) -> None:
    """`call()` returns what it accepted, all of it clean (finite numbers, text without control characters), or
    raises the package's user error with a message."""
    try:
        result = call()
    except EdgeYoloxError as exc:
        assert str(exc).strip(), "an error without a message"
        return
    assert_clean(dataclasses.asdict(result) if dataclasses.is_dataclass(result) else result)


def assert_clean(value) -> None:
    if isinstance(value, float):
        assert math.isfinite(value), value
    elif isinstance(value, str):
        assert not any(ord(c) < 32 for c in value), repr(value)
    elif isinstance(value, dict):
        for v in value.values():
            assert_clean(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            assert_clean(v)


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(CONFIG_KEYS), values), min_size=1, max_size=4))
def test_random_config_values(tmp_path, entries):
    layer: dict = {}
    for key, value in entries:
        layer.update(nested(key, value))
    config = tmp_path / "fuzz.yaml"
    try:
        config.write_text(yaml.safe_dump(layer))
    except (yaml.YAMLError, UnicodeEncodeError):
        return  # not representable as a YAML file (lone surrogates)
    accepted_or_refused(lambda: load_config("x86", str(config)))


BOARD_TEXT = (ROOT / "boards" / "rpi4.yaml").read_text()


@FUZZ
@given(st.lists(st.tuples(st.integers(0, len(BOARD_TEXT)), st.integers(0, 8),
                          st.text(alphabet=string.printable + "&*!|>{}[]\x00\x85\u2028", max_size=6)),
                min_size=1, max_size=6))
def test_mutated_board_files(tmp_path, edits):
    text = BOARD_TEXT
    for at, cut, insert in edits:
        text = text[:at] + insert + text[at + cut:]
    board = tmp_path / "mutant.yaml"
    board.write_text(text, encoding="utf-8", errors="surrogatepass")
    accepted_or_refused(lambda: load_config(str(board)))


META = json.loads((DEMO / "meta.json").read_text())


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(sorted(META) + ["preprocess.scale", "preprocess.mean", "preprocess.color",
                                                           "files.model.ncnn.bin", "extra.x"]), values),
                min_size=1, max_size=4))
def test_mutated_meta_json(entries):
    meta = copy.deepcopy(META)
    for key, value in entries:
        head, _, rest = key.partition(".")
        if rest and isinstance(meta.get(head), dict):
            meta[head][rest] = value
        else:
            meta[head] = value
    def load():
        loaded = ModelMeta.from_json(parse_json(json.dumps(meta), "meta.json"), "meta.json")
        loaded.extra = {}  # producer notes, shown as data and never interpreted: free-form by design
        return loaded

    accepted_or_refused(load)


@FUZZ
@given(st.text(alphabet='{}[]":,0123456789.-eEtrufalsnNI \n', max_size=200))
def test_random_json_and_yaml_text(text):
    accepted_or_refused(lambda: parse_json(text, "x.json") and None)  # JSON without NaN/Infinity
    try:
        parse_yaml(text, "x.yaml")  # YAML may hold .nan: the schema refuses it where a number is wanted
    except EdgeYoloxError:
        pass


@FUZZ
@given(st.dictionaries(st.sampled_from(["images", "annotations", "categories", "info"]), values, max_size=4),
       st.lists(st.dictionaries(st.sampled_from(["id", "image_id", "category_id", "bbox", "iscrowd"]), values),
                max_size=3))
def test_random_coco_files(tmp_path, top, annotations):
    pytest.importorskip("torch")
    from edge_yolox.train.data.datasets import coco_dataset

    data = {"images": [{"id": 1, "file_name": "a.jpg"}], "categories": [{"id": 1, "name": "x"}], **top}
    if annotations:
        data["annotations"] = annotations
    path = tmp_path / "instances.json"
    path.write_text(json.dumps(data))
    accepted_or_refused(lambda: coco_dataset(path) and None)


RUN_FLAGS = ["--conf", "--nms", "--threads", "--max-det", "--limit", "--stats-interval", "--img-size", "--classes",
             "--device-id", "--mqtt", "--mqtt-qos", "--mqtt-max-rate", "--mqtt-queue", "--serial", "--serve",
             "--jsonl", "--save", "--camera"]
flag_values = st.one_of(st.sampled_from(["nan", "inf", "-inf", "-1", "0", "1e309", "0x10", "", "5", "0.5", "65536",
                                         "mqtt://u:pw@/x", "a\nb", "99999999999999999999"]),
                        st.text(alphabet=string.printable, max_size=12))


@FUZZ
@given(st.lists(st.tuples(st.sampled_from(RUN_FLAGS), flag_values), max_size=4))
def test_random_run_flags(flags):
    argv = ["run", "--board", "x86", "--model", str(DEMO)] + [part for flag, value in flags for part in (flag, value)]
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # the Parser printed one line
        assert exc.code == 2
        return
    accepted_or_refused(lambda: config_from_args(args))


@settings(max_examples=6, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["--conf", "--nms", "--max-det", "--img-size", "--stats-interval"]),
                          flag_values), min_size=1, max_size=3))
def test_random_flags_end_to_end(flags):
    """The real process: exit 0 or 2, and a refusal is one line without a traceback (no signal, no hang)."""
    argv = ["-q", "run", "--board", "x86", "--model", DEMO, "--source", "synthetic", "--limit", "1"]
    result = cli(*argv, *[part for flag, value in flags for part in (flag, value)], timeout=60)
    assert result.returncode in (0, 2), result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    if result.returncode == 2:
        assert len([line for line in result.stderr.splitlines() if line.strip()]) == 1, result.stderr
