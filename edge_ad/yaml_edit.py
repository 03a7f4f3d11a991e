"""Change a few values in a YAML file and keep everything else: comments, order, layout.

Calibration writes its results (belt plane, ROI, reject delay) into a station file that an
operator wrote and commented; dumping the parsed data again would throw those comments away.
Instead the edited value's text span is located in the composed node tree and replaced by a
one-line flow-style rendering; a missing key is inserted after its section's last line. The
result is parsed again and every edited path is compared with what was asked, so a bad edit
raises ConfigError instead of being written. :func:`write_text_atomic` then replaces the file in
one step (a crash leaves the old file or the new one, never half of each).
"""

from __future__ import annotations

import math
import os
import re
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from edge_ad.errors import ConfigError
from edge_ad.yaml_lines import parse_yaml


def update_yaml_text(text: str, updates: Mapping[str, Any], source: str = "<string>") -> str:
    """``text`` with each dotted key of ``updates`` (``geometry.plane``) set to its value, comments kept.

    Values must be YAML-safe plain data (numbers, strings, bools, None, lists, dicts). Missing
    sections are created. Raises ConfigError when the document is not a mapping at some level of
    a path, or when the edited text does not read back as intended.
    """
    for dotted, value in updates.items():
        keys = dotted.split(".")
        if not all(keys):
            raise ConfigError(f"{source}: bad key path {dotted!r}")
        text = _set(text, keys, _plain(value), source)
    data = parse_yaml(text, source).data
    for dotted, value in updates.items():
        got: Any = data
        for key in dotted.split("."):
            got = got.get(key) if isinstance(got, dict) else None
        if got != _plain(value):
            raise ConfigError(f"{source}: editing {dotted} produced {got!r} instead of {value!r}; file not changed")
    return text


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically (see :func:`write_bytes_atomic`)."""
    write_bytes_atomic(path, text.encode("utf-8"))


def write_bytes_atomic(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same folder and an atomic rename.

    A crash leaves either the old file or the new one; the old file's permissions are kept.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    tmp = Path(name)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if path.exists():
            tmp.chmod(path.stat().st_mode & 0o777)
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _plain(value: Any) -> Any:
    """numpy scalars and tuples to plain Python (yaml.safe_dump refuses numpy types); 400.0 -> 400."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ConfigError(f"cannot write a non-finite number {value!r} into a YAML file")
        if value.is_integer() and abs(value) < 1e15:
            return int(value)  # `400`, not `400.0`, as a person would write it
    return value


def flow(value: Any) -> str:
    """One-line YAML for ``value`` (``[0.1, 0.2]``, ``{normal: [0, 0, -1], d: 0.5}``, ``0.25``)."""
    text = yaml.safe_dump(value, default_flow_style=True, width=float("inf"), sort_keys=False).strip()
    if text.endswith("\n..."):  # a bare scalar document ends with an explicit end marker
        text = text[: -len("\n...")].rstrip()
    return text


def _content_end(text: str, node: yaml.Node) -> int:
    """Index just past a node's own text (block collections' marks run on into the next line)."""
    if isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style and node.value:
        last = node.value[-1]
        return _content_end(text, last[1] if isinstance(node, yaml.MappingNode) else last)
    start, end = node.start_mark.index, node.end_mark.index
    return start + len(text[start:end].rstrip())


def _child(mapping: yaml.MappingNode, key: str) -> yaml.Node | None:
    for key_node, value_node in mapping.value:
        if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
            return value_node
    return None


def _nest(keys: list[str], value: Any) -> Any:
    for key in reversed(keys):
        value = {key: value}
    return value


def _set(text: str, keys: list[str], value: Any, source: str) -> str:
    root = yaml.compose(text, Loader=yaml.SafeLoader) if text.strip() else None
    if root is None:
        return text.rstrip("\n") + ("\n" if text.strip() else "") + _block(keys[0], _nest(keys[1:], value), 0)
    node: yaml.Node = root
    for depth, key in enumerate(keys):
        where = ".".join(keys[:depth]) or "<root>"
        if not isinstance(node, yaml.MappingNode):
            raise ConfigError(f"{source}: cannot set {'.'.join(keys)}: {where} is not a mapping")
        child = _child(node, key)
        rest = keys[depth + 1 :]
        if child is None:
            return _insert(text, node, key, _nest(rest, value))
        if rest and isinstance(child, yaml.MappingNode):
            node = child
            continue
        new_value = _nest(rest, value)
        if isinstance(new_value, dict) and isinstance(child, yaml.MappingNode) and not child.flow_style:
            # Edit a block mapping key by key so that its other keys and comments stay.
            for sub_key, sub_value in new_value.items():
                text = _set(text, [*keys[: depth + 1], sub_key], sub_value, source)
            return text
        return _replace(text, child.start_mark.index, _content_end(text, child), flow(new_value))
    return text  # unreachable: the loop returns on the last key


def _replace(text: str, start: int, end: int, new: str) -> str:
    """``text[start:end]`` -> ``new``, keeping a comment after it on its column where there is room."""
    rest = text[end:]
    match = re.match(r"( +)#", rest)
    if match:
        spaces = max(1, len(match.group(1)) - (len(new) - (end - start)))
        rest = " " * spaces + rest[len(match.group(1)) :]
    return text[:start] + new + rest


def _insert(text: str, mapping: yaml.MappingNode, key: str, value: Any) -> str:
    """Add ``key: value`` to ``mapping`` (after its last entry; inside the braces of a flow mapping)."""
    if mapping.flow_style:
        close = mapping.end_mark.index - 1  # the closing brace
        separator = ", " if mapping.value else ""
        return text[:close] + f"{separator}{key}: {flow(value)}" + text[close:]
    indent = mapping.value[0][0].start_mark.column if mapping.value else 0
    end = _content_end(text, mapping)
    newline = text.find("\n", end)
    if newline < 0:
        text, newline = text + "\n", len(text)
    return text[: newline + 1] + _block(key, value, indent) + text[newline + 1 :]


def _block(key: str, value: Any, indent: int) -> str:
    pad = " " * indent
    if isinstance(value, dict) and value:
        return f"{pad}{key}:\n" + "".join(_block(k, v, indent + 2) for k, v in value.items())
    return f"{pad}{key}: {flow(value)}\n"
