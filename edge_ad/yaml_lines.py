"""YAML with line numbers: plain data plus a map from dotted path to the line it was written on.

``yaml.safe_load`` forgets where a value came from, so an error could only say *what* is wrong.
Here the document is composed into a node tree first (the safe loader's own parser, nothing
executed), every node's line is recorded under its dotted path (``reject.delay_mm``,
``outputs.pins[1]``, the same spelling as :func:`edge_ad.typed_data.join_path`), and the same
tree is then constructed into plain data. Syntax errors become ConfigError ``file:line:col: ...``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from edge_ad.errors import ConfigError
from edge_ad.typed_data import join_path


@dataclass(frozen=True)
class LoadedYaml:
    """A parsed YAML document: ``data`` (plain Python), its ``source`` name and ``lines`` (path -> 1-based line).

    ``lines`` holds the line of each mapping *key* (where a reader looks for it) and of each
    sequence item; the root is ``""``.
    """

    data: Any
    source: str
    lines: dict[str, int] = field(default_factory=dict)

    def line_of(self, path: str) -> int | None:
        """Line of ``path``, or of its nearest written ancestor (a missing key points at its section)."""
        while True:
            if path in self.lines:
                return self.lines[path]
            if not path:
                return None
            path = _parent(path)

    def where(self, path: str) -> str:
        """``source:line`` for ``path`` (``source`` alone when the line is unknown)."""
        line = self.line_of(path)
        return f"{self.source}:{line}" if line is not None else self.source


def _parent(path: str) -> str:
    """``a.b[2]`` -> ``a.b``; ``a.b`` -> ``a``; ``a`` -> ``""``."""
    cut = max(path.rfind("."), path.rfind("["))
    return path[:cut] if cut > 0 else ""


def parse_yaml(text: str, source: str = "<string>") -> LoadedYaml:
    """Parse one YAML document safely, recording line numbers; ConfigError on syntax or duplicate keys."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        lines: dict[str, int] = {}
        if node is None:
            return LoadedYaml(None, source, {"": 1})
        _record_lines(node, "", lines, source)
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{mark.line + 1}:{mark.column + 1}" if mark is not None else source
        problem = "; ".join(part for part in (exc.context, exc.problem) if part)
        raise ConfigError(f"{where}: YAML syntax error: {problem}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: YAML error: {exc}") from None
    finally:
        loader.dispose()
    return LoadedYaml(data, source, lines)


def load_yaml(path: Path) -> LoadedYaml:
    """Read and parse the YAML file at ``path`` (ConfigError when it is missing or unreadable)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {exc}") from None
    return parse_yaml(text, str(path))


def _record_lines(node: yaml.Node, path: str, lines: dict[str, int], source: str) -> None:
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue  # complex keys are refused later by the schema (keys must be strings)
            key = key_node.value
            line = key_node.start_mark.line + 1
            # SafeLoader keeps the last of two equal keys silently: a typo'd copy would win.
            if key in seen:
                raise ConfigError(
                    f"{source}:{line}: duplicate key {join_path(path, key)} (first set on line {seen[key]})"
                )
            seen[key] = line
            child = join_path(path, key)
            lines[child] = line
            _record_lines(value_node, child, lines, source)
    elif isinstance(node, yaml.SequenceNode):
        for index, item in enumerate(node.value):
            _record_lines(item, join_path(path, index), lines, source)
