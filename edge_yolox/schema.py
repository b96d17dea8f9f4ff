"""Declared schemas: a dataclass's field types plus `metadata` (range, choices, length, items, filename) are the
schema; `build` checks parsed YAML/JSON against it and instantiates the dataclass, or raises a ConfigError
naming the file, the dotted key and what is allowed.

Numbers must be finite (NaN passes every range comparison), strings must not hold control characters (they
would end a line in a unit file, a log or a serial frame), and a `filename` must name a file inside its
directory (no separators, no `..`).
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import field
from typing import Any, Callable, Optional, Union

from edge_yolox.errors import ConfigError, redact

Origin = Callable[[str], str]  # dotted key -> the file (or "command line") that set it


def choice(*allowed: str, **kw) -> Any:
    return field(metadata={"choices": allowed}, **kw)


class Choice(str):
    """A plugin option's default that also names every allowed value (`options` checks against them)."""

    allowed: tuple[str, ...]

    def __new__(cls, default: str, *allowed: str) -> Choice:
        self = super().__new__(cls, default)
        self.allowed = allowed
        return self


def bounded(lo: float, hi: Optional[float] = None, **kw) -> Any:
    return field(metadata={"range": (lo, hi)}, **kw)


def build(cls, data: Any, origin: Origin, prefix: str = ""):
    """Instantiate dataclass `cls` from `data`, checking every key and value against its declared schema."""
    key = prefix.rstrip(".")
    if not isinstance(data, dict):
        raise _invalid(origin, key, data, "a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls) if f.init}
    hints = typing.get_type_hints(cls)
    unknown = [k for k in data if k not in fields]
    if unknown:
        bad = f"{prefix}{unknown[0]}"
        raise ConfigError(f"{origin(bad)}: {bad}: unknown key; allowed: {', '.join(fields)}")
    missing = [n for n, f in fields.items() if n not in data
               and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
    if missing:
        raise ConfigError(f"{origin(key)}: {prefix}{missing[0]}: missing (required)")
    return cls(**{name: check(value, hints[name], fields[name].metadata, f"{prefix}{name}", origin)
                  for name, value in data.items()})


def check(value: Any, hint: Any, meta: typing.Mapping, key: str, origin: Origin) -> Any:
    """`value` checked against type `hint` and `meta`, converted (lists to tuples where declared)."""
    if dataclasses.is_dataclass(hint):
        return build(hint, value, origin, key + ".")
    kind, args = typing.get_origin(hint), typing.get_args(hint)
    if kind in (Union, types.UnionType):  # Optional[X], X | None
        if value is None:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return check(value, hint, meta, key, origin)
    if kind is dict:
        return _mapping(value, args[1], meta, key, origin)
    if kind in (list, tuple):
        return _sequence(value, kind, args[0], meta, key, origin)
    if hint is Any:
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise _invalid(origin, key, value, "true or false")
        return value
    if hint in (int, float):
        return _number(value, hint, meta, key, origin)
    if hint is str:
        return _string(value, meta, key, origin)
    raise TypeError(f"schema field {key}: unsupported type {hint}")  # a bug in a schema, not user input


def _invalid(origin: Origin, key: str, value: Any, allowed: str) -> ConfigError:
    shown = redact(repr(value)) if isinstance(value, str) and "@" in value else repr(value)  # URL passwords
    shown = shown if len(shown) <= 80 else shown[:77] + "..."
    where = origin(key)
    return ConfigError(f"{where + ': ' if where else ''}{key}: invalid value {shown}; allowed: {allowed}")


def _mapping(value: Any, item: Any, meta: typing.Mapping, key: str, origin: Origin) -> dict:
    if not isinstance(value, dict):
        raise _invalid(origin, key, value, "a mapping")
    out = {}
    for name, entry in value.items():
        if not isinstance(name, str):
            raise _invalid(origin, key, name, "string keys")
        sub = f"{key}.{name}"
        if item is dict:  # sections validated by their owner (sinks); `name:` alone means defaults
            if not isinstance(entry, (dict, type(None))):
                raise _invalid(origin, sub, entry, "a mapping of options")
            out[name] = dict(entry or {})
        else:
            _string(name, meta, sub, origin)  # e.g. a bundle's file names
            out[name] = check(entry, item, {}, sub, origin)
    return out


def _sequence(value: Any, kind: type, item: Any, meta: typing.Mapping, key: str, origin: Origin):
    if isinstance(value, (str, int, float)) and not isinstance(value, bool) and "length" not in meta:
        value = [value]  # a single value where a list is expected: `classes: person`
    if not isinstance(value, (list, tuple)):
        raise _invalid(origin, key, value, f"a list of {getattr(item, '__name__', item)}")
    length = meta.get("length")
    if length is not None and len(value) != length:
        raise _invalid(origin, key, value, f"a list of {length} {getattr(item, '__name__', item)} values")
    if "min_length" in meta and len(value) < meta["min_length"]:
        raise _invalid(origin, key, value, f"at least {meta['min_length']} values")
    item_meta = {k: m for k, m in meta.items() if k not in ("length", "min_length", "items")}
    items = [check(v, item, item_meta, key, origin) for v in value]
    if "items" in meta and any(v not in meta["items"] for v in items):
        raise _invalid(origin, key, value, f"a list of {', '.join(meta['items'])}")
    return tuple(items) if kind is tuple else items


def _number(value: Any, hint: type, meta: typing.Mapping, key: str, origin: Origin):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or (hint is int and value != int(value)):
        raise _invalid(origin, key, value, "an integer" if hint is int else "a finite number")
    value = hint(value)
    lo, hi = meta.get("range", (None, None))
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        raise _invalid(origin, key, value, f"{lo} to {hi}" if hi is not None else f">= {lo}")
    return value


def _string(value: Any, meta: typing.Mapping, key: str, origin: Origin) -> str:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise _invalid(origin, key, value, "a string")
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise _invalid(origin, key, value, "text without control characters (newlines, tabs)")
    if "choices" in meta and value not in meta["choices"]:
        raise _invalid(origin, key, value, ", ".join(meta["choices"]))
    if meta.get("filename") and (not value or value in (".", "..") or "/" in value or "\\" in value):
        raise _invalid(origin, key, value, "a file name inside the bundle (no '/', no '..')")
    return value


def options(section: dict[str, Any], key: str, defaults: dict[str, Any]) -> dict[str, Any]:
    """A plugin's section (a sink's `outputs.<name>`, a backend's `model.options.<name>`) checked against the
    plugin's `defaults` (unknown keys, types, finite numbers, no control characters in text) and completed with
    them. Errors name the dotted key; the caller adds the file that set it."""
    for name, value in section.items():
        if name not in defaults:
            raise ConfigError(f"{key}.{name}: unknown key; allowed: {', '.join(defaults) or 'none'}")
        default = defaults[name]
        numeric = isinstance(default, (int, float)) and not isinstance(default, bool)
        kind = str if isinstance(default, str) else type(default)  # a Choice takes plain strings
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) if numeric \
            else default is None or isinstance(value, kind)
        if not ok:
            raise ConfigError(f"{key}.{name}: invalid value {value!r}; allowed: a {kind.__name__}")
        hint = float if numeric else list[str] if isinstance(value, list) else str if isinstance(value, str) else None
        if hint is not None:
            meta = {"choices": default.allowed} if isinstance(default, Choice) else {}
            check(value, hint, meta, f"{key}.{name}", lambda _: "")
    return {**defaults, **section}


def check_sections(sections: dict[str, dict], prefix: str, defaults: dict[str, dict[str, Any]], origin: Origin,
                   kind: str) -> None:
    """Every `<prefix>.<name>` section against the `defaults` of plugin `name` (a sink, a backend) when the config
    is loaded, so `service install` refuses what would otherwise fail at boot; errors name the file that set the
    offending key."""
    for name, section in sections.items():
        if name not in defaults:
            raise ConfigError(f"{origin(f'{prefix}.{name}')}: {prefix}.{name}: unknown {kind}; allowed: "
                              f"{', '.join(defaults)}")
        for key, value in section.items():
            try:
                options({key: value}, f"{prefix}.{name}", defaults[name])
            except ConfigError as exc:
                raise ConfigError(f"{origin(f'{prefix}.{name}.{key}')}: {exc}") from None
