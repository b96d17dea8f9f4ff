"""The hostile-input corpus: files an attacker or a careless user could hand edge-yolox. Each entry is built
here (not stored as a blob) so that what it contains is readable in review. Used by test_hostile.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path

MARKER_NAME = "PWNED"


def evil_pickle(path: Path, marker: Path) -> Path:
    """A .pth whose unpickling would create `marker` (the classic `__reduce__` payload)."""
    import torch

    class Payload:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {marker}",))

    torch.save({"model": {}, "train_model": {}, "start_epoch": Payload()}, path)
    return path


def yaml_bomb(levels: int = 9) -> str:
    """"Billion laughs": each level lists the previous one 9 times, 9**levels values once expanded."""
    lines = ['a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for n in range(1, levels):
        lines.append(f"a{n}: &a{n} [" + ",".join([f"*a{n - 1}"] * 9) + "]")
    return "\n".join(lines) + "\n"


YAML_CONFIGS = {
    "alias bomb": yaml_bomb(),
    "recursive alias": "model: &m\n  self: *m\n",
    "deep nesting": "a: " + "[" * 200_000 + "]" * 200_000 + "\n",
    "python object tag": "model: !!python/object/apply:os.system ['touch PWNED']\n",
    "not a mapping": "- just\n- a list\n",
    "nan threshold": "detect:\n  conf: .nan\n",
    "nan reconnect": "source:\n  reconnect_min_s: .nan\n",
    "inf stats": "runtime:\n  stats_interval_s: .inf\n",
    "newline in device id": 'runtime:\n  device: "cam\\nExecStartPre=+/bin/sh"\n',
    "bad outputs section": "outputs:\n  stdout: 5\n",
    "bad sink value": "outputs:\n  jsonl:\n    path: 7\n",
    "huge input size": "model:\n  input_size: [100000, 100000]\n",
    "binary junk": "\x00\x01\x02",
}
NON_UTF8_CONFIG = b"detect:\n  conf: \xff\xfe0.5\n"


def demo_meta(bundle: Path) -> dict:
    return json.loads((bundle / "meta.json").read_text())


def meta_mutations(meta: dict) -> dict[str, tuple[dict | str, str]]:
    """name -> (meta.json content, the key the error must name)."""
    def with_(key: str, value, sub: str | None = None):
        out = copy.deepcopy(meta)
        if sub:
            out[key][sub] = value
        else:
            out[key] = value
        return out

    first = next(iter(meta["files"]))
    return {
        "negative stride": (with_("strides", [-8, 16, 32]), "strides"),
        "files as a list": (with_("files", []), "files"),
        "scale not a number": (with_("preprocess", "abc", "scale"), "preprocess.scale"),
        "2-element mean": (with_("preprocess", [0.5, 0.5], "mean"), "preprocess.mean"),
        "class_names a number": (with_("class_names", 5), "class_names"),
        "class_names holding html": (with_("class_names", ["<img src=x onerror=alert(1)>\n"] * 4), "class_names"),
        "path escaping the bundle": (with_("files", {"../../../etc/passwd": meta["files"][first]}), "files"),
        "absolute path": (with_("files", {"/etc/passwd": meta["files"][first]}), "files"),
        "huge input": (with_("input_size", [100000, 100000]), "input_size"),
        "nan scale": ('{"num_classes": 4, "input_size": [320, 320], "preprocess": {"scale": NaN}}', "NaN"),
        "num_classes negative": (with_("num_classes", -1), "num_classes"),
        "num_classes missing": ({k: v for k, v in meta.items() if k != "num_classes"}, "num_classes"),
        "unknown layout": (with_("layout", "diagonal"), "layout"),
        "format_version text": (with_("format_version", "x"), "format_version"),
        "unknown key": (with_("run_this", "rm -rf /"), "run_this"),
        "top level list": ([meta], "mapping"),
        "deep nesting": ("[" * 200_000 + "]" * 200_000, "nested"),
        "unlisted model file": (with_("files", {}), "model.ncnn"),
        "digest not hex": (with_("files", {k: "zz" for k in meta["files"]}), "sha256"),
    }


def coco_mutations() -> dict[str, tuple[object, str]]:
    """name -> (COCO JSON content, what the error must name)."""
    good_image = {"id": 1, "file_name": "a.jpg", "width": 64, "height": 48}
    cats = [{"id": 1, "name": "thing"}]
    return {
        "images not a list": ({"images": {"id": 1}, "categories": cats}, "images"),
        "images missing": ({"categories": cats}, "images"),
        "category without name": ({"images": [good_image], "categories": [{"id": 1}]}, "categories[0].name"),
        "file_name escaping": ({"images": [{**good_image, "file_name": "../../etc/x.jpg"}], "categories": cats},
                               "file_name"),
        "nan bbox": ({"images": [good_image], "categories": cats,
                      "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, "nan", 4]}]},
                     "annotations[0]"),
        "negative height": ({"images": [{**good_image, "height": -3}], "categories": cats}, "height"),
        "top level list": ([good_image], "COCO"),
    }


_TRIANGLE = "[[0, 0], [1, 0], [1, 1]]"
# `--zones` files: name -> (content, what the one-line error must hold besides the file's name).
ZONES_FILES = {
    "nan coordinate": ("zones:\n  d:\n    polygon: [[0, 0], [.nan, 1], [1, 1]]\n", "zones.d.polygon"),
    "infinite coordinate": ("lines:\n  g:\n    points: [[0, 0], [.inf, 1]]\n", "lines.g.points"),
    "1e5 points": ("zones:\n  d:\n    polygon: [" + "[1, 2], " * 100_000 + "[3, 4]]\n", "3 to 1000 points"),
    "1e6 points": ("zones:\n  d:\n    polygon: [" + "[1, 2], " * 1_000_000 + "[3, 4]]\n", "larger than"),
    "polygon not a list": ("zones:\n  d:\n    polygon: {x: 1}\n", "zones.d.polygon"),
    "zones not a mapping": ("zones: [door, yard]\n", "zones"),
    "zone not a mapping": ("zones:\n  door: 5\n", "zones.door"),
    "file not a mapping": ("- zones\n", "mapping"),
    "huge nesting": ("zones:\n  d:\n    polygon: " + "[" * 200_000 + "]" * 200_000 + "\n", "nested"),
    "alias bomb": (yaml_bomb(), "refused"),
    "python tag": ("zones: !!python/object/apply:os.system ['touch PWNED']\n", "invalid YAML"),
    "slash in a name": (f"zones:\n  a/b:\n    polygon: {_TRIANGLE}\n", "zones.a/b"),
    "wildcard in a name": ("lines:\n  '+':\n    points: [[0, 0], [1, 1]]\n", "lines.+"),
    "newline in a name": (f'zones:\n  "a\\nb":\n    polygon: {_TRIANGLE}\n', "control characters"),
    "number as a name": (f"zones:\n  7:\n    polygon: {_TRIANGLE}\n", "string keys"),
    "one point line": ("lines:\n  g:\n    points: [[0, 0]]\n", "lines.g.points"),
    "other sections": ("zones: {}\nmodel:\n  path: /tmp/evil.onnx\n", "allowed in a zones file"),
}

# <state_dir>/lines.json contents that are not what edge-yolox writes: kept aside, the totals start at zero. Bytes
# (latin-1 keeps each character's code): "binary" is not UTF-8.
LINE_TOTALS = {name: text.encode("latin-1") for name, text in {
    "not json": '{"version": 1, "lines": {',
    "nan count": '{"version": 1, "lines": {"gate": {"person": {"in": NaN, "out": 0}}}}',
    "huge number": '{"version": 1, "lines": {"gate": {"person": {"in": 1e400, "out": 0}}}}',
    "negative count": '{"version": 1, "lines": {"gate": {"person": {"in": -1, "out": 0}}}}',
    "missing direction": '{"version": 1, "lines": {"gate": {"person": {"in": 1}}}}',
    "string count": '{"version": 1, "lines": {"gate": {"person": {"in": "9", "out": 0}}}}',
    "other version": '{"version": 2, "lines": {}}',
    "a list": "[1, 2]",
    "control character": '{"version": 1, "lines": {"gate": {"per\\nson": {"in": 1, "out": 0}}}}',
    "deep nesting": '{"version": 1, "lines": ' + "[" * 200_000 + "]" * 200_000 + "}",
    "oversized": '{"version": 1, "lines": {}}' + " " * (2 << 20),
    "binary": "\x00\xff",
    "empty": "",
}.items()}

# Values for `service install` flags that must never add a line to the unit.
UNIT_INJECTIONS = [
    "/p\nExecStartPre=+/bin/sh -c id",
    "/k\nUser=root",
    "/k\rUser=root",
    "/p\x00x",
    "relative/path",
]
