"""Frozen dataclasses to and from JSON, with the field path of anything wrong.

The run directory is read by processes that did not write it (an older or newer sft-tui,
a teammate's), so reading is strict about types and tolerant about the rest: a key this
version does not know is kept in the record's `extra` and written back unchanged; a known
field with a wrong type or value raises `SchemaError` naming the file and the field, so a
reader can show that one run as unreadable and go on with the others.
"""

from __future__ import annotations

import math
import types
import typing
from dataclasses import MISSING, fields, is_dataclass
from functools import lru_cache
from typing import Any, TypeVar, Union

T = TypeVar("T")


class SchemaError(ValueError):
    """A run file that does not match its type: `where` is file or file:field, `what` says why."""

    def __init__(self, where: str, what: str):
        self.where = where
        self.what = what
        super().__init__(f"{where}: {what}")


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _is_optional(hint: Any) -> tuple[bool, Any]:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(typing.get_args(hint)) == 2:
            return True, args[0]
    return False, hint


def _value(hint: Any, raw: Any, where: str) -> Any:
    optional, inner = _is_optional(hint)
    if raw is None:
        if optional or inner is Any:
            return None
        raise SchemaError(where, "is null, expected a value")
    origin = typing.get_origin(inner)
    if inner is Any:
        return raw
    if inner is bool:
        if isinstance(raw, bool):
            return raw
        raise SchemaError(where, f"expected true or false, got {raw!r}")
    if inner is int:
        if isinstance(raw, int) and not isinstance(raw, bool):
            return raw
        if isinstance(raw, float) and raw.is_integer():
            return int(raw)
        raise SchemaError(where, f"expected a whole number, got {raw!r}")
    if inner is float:
        if isinstance(raw, (int, float)) and not isinstance(raw, bool):
            return float(raw)
        raise SchemaError(where, f"expected a number, got {raw!r}")
    if inner is str:
        if isinstance(raw, str):
            return raw
        raise SchemaError(where, f"expected text, got {raw!r}")
    if origin is tuple:
        item = typing.get_args(inner)[0]
        if not isinstance(raw, list):
            raise SchemaError(where, f"expected a list, got {raw!r}")
        return tuple(_value(item, v, f"{where}[{i}]") for i, v in enumerate(raw))
    if origin is dict:
        if not isinstance(raw, dict):
            raise SchemaError(where, f"expected an object, got {raw!r}")
        return dict(raw)
    if is_dataclass(inner):
        return decode(inner, raw, where)
    raise TypeError(f"codec cannot read {inner!r}")  # pragma: no cover - a schema bug, not a file problem


def _fast_types(hint: Any) -> tuple[type, ...]:
    """The exact types a value may have to skip the checks in _value (most values); () when every value is checked."""
    optional, inner = _is_optional(hint)
    exact = {str: (str,), int: (int,), float: (float,), bool: (bool,)}.get(inner)
    if exact is None:
        return ()
    return exact + ((type(None),) if optional else ())


@lru_cache(maxsize=None)
def _plan(cls: type) -> tuple[tuple[tuple[str, Any, tuple[type, ...], bool, Any], ...], bool]:
    """Per field: (name, type hint, types that pass at once, required, default factory); and whether the class keeps `extra`.

    Built once per class: metrics files hold 100,000 rows and each is decoded on open.
    """
    hints = _hints(cls)
    steps = []
    for f in fields(cls):
        if f.name == "extra":
            continue
        required = f.default is MISSING and f.default_factory is MISSING
        default = f.default_factory if f.default_factory is not MISSING else (lambda value=f.default: value)
        steps.append((f.name, hints[f.name], _fast_types(hints[f.name]), required, default))
    return tuple(steps), any(f.name == "extra" for f in fields(cls))


def decode(cls: type[T], data: Any, where: str) -> T:
    """Build `cls` from a JSON object: unknown keys go to `extra` (when the class has it), wrong types raise SchemaError."""
    if not isinstance(data, dict):
        raise SchemaError(where, f"expected a JSON object, got {type(data).__name__}")
    steps, keeps_extra = _plan(cls)
    values: dict[str, Any] = {}
    for name, hint, fast_types, required, default in steps:
        if name in data:
            raw = data[name]
            values[name] = raw if type(raw) in fast_types else _value(hint, raw, f"{where}: field {name!r}")
        elif required:
            raise SchemaError(f"{where}: field {name!r}", "missing")
        else:
            values[name] = default()
    if keeps_extra:
        values["extra"] = {k: v for k, v in data.items() if k not in values}
    # frozen dataclasses set each field through object.__setattr__ in __init__; filling __dict__ at once is several times faster
    record = object.__new__(cls)
    record.__dict__.update(values)
    check = getattr(record, "check", None)
    if check is not None:
        check(where)
    return record


def _plain(value: Any) -> Any:
    if is_dataclass(value):
        return encode(value)
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None  # strict JSON readers (jq, browsers) reject NaN and inf
    return value


def encode(record: Any) -> dict[str, Any]:
    """The JSON object of a record: its fields in order, then the keys it kept from the file it was read from."""
    out = {f.name: _plain(getattr(record, f.name)) for f in fields(record) if f.name != "extra"}
    for key, value in (getattr(record, "extra", None) or {}).items():
        out.setdefault(key, value)
    return out
