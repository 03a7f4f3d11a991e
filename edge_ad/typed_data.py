"""Plain data (from ``yaml.safe_load`` / ``json.load``) into frozen dataclasses, strictly.

Unknown keys, missing fields and wrong types fail with the dotted path of the offending value
(``scoring.threshold.value: expected a number, got str 'abc'``), raised as the caller's error type
(BundleError for manifests, ConfigError for station files). Field types come from the dataclass
annotations; supported: bool, int, float (ints accepted), str, Any, Literal[...], X | None,
tuple[X, ...] (from a list), dict[str, X] (from a mapping) and nested dataclasses. Cross-field rules
go in an optional ``validate(path)`` method on the dataclass, called after construction.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union, get_args, get_origin, get_type_hints

from edge_ad.errors import EdgeAdError

T = TypeVar("T")


def join_path(path: str, key: str | int) -> str:
    """Dotted path of a child value: ``join_path("a.b", "c") == "a.b.c"``, list items as ``a[2]``."""
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _describe(value: object) -> str:
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{type(value).__name__} {text}"


def field_error(error: type[EdgeAdError], path: str, message: str) -> EdgeAdError:
    """``error("<dotted path>: <message>")``, the one format of every schema error."""
    return error(f"{path or '<root>'}: {message}")


def load_dataclass(cls: type[T], data: object, *, error: type[EdgeAdError], path: str = "") -> T:
    """Build dataclass ``cls`` from plain ``data``; raise ``error`` naming the dotted path on any mismatch."""
    if not isinstance(data, Mapping):
        raise field_error(error, path, f"expected a mapping for {cls.__name__}, got {_describe(data)}")
    hints = get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = [key for key in data if key not in fields]
    if unknown:
        allowed = ", ".join(fields)
        raise field_error(error, join_path(path, str(unknown[0])), f"unknown key (allowed: {allowed})")
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        child = join_path(path, name)
        if name not in data:
            has_default = (
                field.default is not dataclasses.MISSING or field.default_factory is not dataclasses.MISSING
            )
            if not has_default:
                raise field_error(error, child, "missing field")
            continue
        kwargs[name] = load_value(hints[name], data[name], error=error, path=child)
    obj = cls(**kwargs)
    validate = getattr(obj, "validate", None)
    if callable(validate):
        validate(path)
    return obj


def load_value(tp: Any, data: object, *, error: type[EdgeAdError], path: str) -> Any:
    """Convert one plain value to annotation ``tp`` (see the module docstring for what is supported)."""
    origin = get_origin(tp)
    if tp is Any:
        return data
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        return load_dataclass(tp, data, error=error, path=path)
    if origin in (Union, types.UnionType):
        options = [arg for arg in get_args(tp) if arg is not type(None)]
        if data is None:
            if len(options) < len(get_args(tp)):
                return None
            raise field_error(error, path, "must not be null")
        if len(options) != 1:
            raise TypeError(f"unsupported annotation {tp!r} at {path}: only X | None unions")
        return load_value(options[0], data, error=error, path=path)
    if origin is Literal:
        choices = get_args(tp)
        if data not in choices or type(data) not in {type(choice) for choice in choices}:
            raise field_error(
                error, path, f"must be one of {', '.join(map(repr, choices))}, got {_describe(data)}"
            )
        return data
    if tp is bool:
        if not isinstance(data, bool):
            raise field_error(error, path, f"expected true/false, got {_describe(data)}")
        return data
    if tp is int:
        if isinstance(data, bool) or not isinstance(data, int):
            raise field_error(error, path, f"expected an integer, got {_describe(data)}")
        return data
    if tp is float:
        if isinstance(data, bool) or not isinstance(data, (int, float)):
            raise field_error(error, path, f"expected a number, got {_describe(data)}")
        if not math.isfinite(data):
            raise field_error(error, path, f"expected a finite number, got {data!r}")
        return float(data)
    if tp is str:
        if not isinstance(data, str):
            raise field_error(error, path, f"expected a string, got {_describe(data)}")
        return data
    if origin is tuple:
        args = get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"unsupported annotation {tp!r} at {path}: only tuple[X, ...]")
        if not isinstance(data, (list, tuple)):
            raise field_error(error, path, f"expected a list, got {_describe(data)}")
        return tuple(
            load_value(args[0], item, error=error, path=join_path(path, i)) for i, item in enumerate(data)
        )
    if origin in (dict, Mapping, typing.Mapping):
        _key_type, value_type = get_args(tp)
        if not isinstance(data, Mapping):
            raise field_error(error, path, f"expected a mapping, got {_describe(data)}")
        result: dict[str, Any] = {}
        for key, value in data.items():
            if not isinstance(key, str):
                raise field_error(error, path, f"keys must be strings, got {_describe(key)}")
            result[key] = load_value(value_type, value, error=error, path=join_path(path, key))
        return result
    raise TypeError(f"unsupported annotation {tp!r} at {path}")


def to_plain(obj: object) -> Any:
    """Dataclasses, tuples and mappings to plain dicts and lists (YAML/JSON-safe), recursively."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, Mapping):
        return {str(key): to_plain(value) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(item) for item in obj]
    return obj
