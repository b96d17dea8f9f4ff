"""Reading the files users and other tools hand us (configs, board files, meta.json, datasets): bounded in
size, nesting and alias expansion, decoded as UTF-8, parsed without executing anything (YAML's safe loader,
plain JSON). Every failure is a ConfigError that names the file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Union

import yaml

from edge_yolox.errors import ConfigError

CONFIG_BYTES = 1 << 20  # configs, board files, meta.json: a real one is a few kB
DATA_BYTES = 1 << 31  # dataset annotations: COCO's train2017 JSON is 450 MB
MAX_DEPTH = 32  # nesting of mappings/lists: our deepest schema uses 4
MAX_NODES = 1_000_000  # YAML values after aliases are expanded: stops "billion laughs"


def read_text(path: Union[str, Path], what: str = "file", max_bytes: int = CONFIG_BYTES) -> str:
    """The file's text; refuses non-files, files over `max_bytes` and text that is not UTF-8."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            data = f.read(max_bytes + 1)
    except IsADirectoryError:
        raise ConfigError(f"{path}: cannot read {what}: is a directory") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read {what} ({exc.strerror or exc})") from None
    if len(data) > max_bytes:
        raise ConfigError(f"{path}: {what} larger than {max_bytes >> 20} MiB: refused")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: {what} is not UTF-8 text (byte {exc.start})") from None


def parse_yaml(text: str, origin: str) -> Any:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise ConfigError(f"{origin}:{where} invalid YAML ({getattr(exc, 'problem', None) or exc})") from None
    except RecursionError:
        raise ConfigError(f"{origin}: nested deeper than {MAX_DEPTH} levels: refused") from None
    check_bounds(data, origin)
    return data


def parse_json(text: str, origin: str) -> Any:
    """Plain JSON (no NaN/Infinity). JSON has no aliases, so size is bounded by the bytes read; the C parser
    raises RecursionError on deep nesting before it allocates much."""
    try:
        return json.loads(text, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{origin}: line {exc.lineno} invalid JSON ({exc.msg})") from None
    except ValueError as exc:
        raise ConfigError(f"{origin}: invalid JSON ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{origin}: nested too deeply: refused") from None


def load_yaml(path: Union[str, Path], what: str = "YAML file", max_bytes: int = CONFIG_BYTES) -> Any:
    return parse_yaml(read_text(path, what, max_bytes), str(path))


def load_json(path: Union[str, Path], what: str = "JSON file", max_bytes: int = CONFIG_BYTES) -> Any:
    return parse_json(read_text(path, what, max_bytes), str(path))


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON value")


def check_bounds(data: Any, origin: str) -> None:
    """Refuse trees nested deeper than MAX_DEPTH, holding themselves (YAML `&a [*a]`), or expanding to more than
    MAX_NODES values: YAML aliases share objects, so the count is memoised by identity and stays linear."""
    sizes: dict[int, int] = {}

    def size(node: Any, depth: int) -> int:
        if not isinstance(node, (dict, list)):
            return 1
        if depth > MAX_DEPTH:
            raise ConfigError(f"{origin}: nested deeper than {MAX_DEPTH} levels: refused")
        key = id(node)
        if key in sizes:
            if sizes[key] < 0:
                raise ConfigError(f"{origin}: a value contains itself (recursive YAML alias): refused")
            return sizes[key]
        sizes[key] = -1
        children = node.values() if isinstance(node, dict) else node
        total = 1 + sum(size(child, depth + 1) for child in children)
        if total > MAX_NODES:
            raise ConfigError(f"{origin}: expands to more than {MAX_NODES:,} values (YAML alias bomb?): refused")
        sizes[key] = total
        return total

    size(data, 0)
