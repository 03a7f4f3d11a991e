"""Digital outputs that drive the reject actuator; ``sim`` records a timeline instead of toggling a pin.

Level True = line energised (driven high). What energised *means* is the wiring's polarity
(:class:`edge_ad.line.reject.Polarity`): in ``energize_to_reject`` it fires the actuator, in
``energize_to_accept`` (positive release, the fail-safe wiring) it lets the part pass. An output starts
at, and ``close`` returns it to, the de-energised level False: the level the line also falls back to
when the process dies (JetPack 6 reverts a pin to its default pinmux state, jetson-gpio #110, #117), so
the wiring, not the software, decides what a dead controller does.

Backends: ``sim`` (here; optionally file-backed so the timeline survives a killed process), ``jetson``
(Jetson.GPIO) and ``gpiod`` (libgpiod v2), the last two imported only when opened.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from edge_ad.clock import Clock
from edge_ad.errors import ConfigError
from edge_ad.registry import Registry

SAFE_LEVEL = False


@runtime_checkable
class DigitalOutput(Protocol):
    """One output line."""

    def set(self, level: bool, t_ns: int) -> None:
        """Drive the line to ``level``; ``t_ns`` is the clock time of the call (for logs and timelines)."""
        ...

    def close(self) -> None:
        """Return to the safe level and release the line (idempotent)."""
        ...


OutputFactory = Callable[..., DigitalOutput]
_REGISTRY: Registry[OutputFactory] = Registry("digital output")


def register_output(name: str) -> Callable[[OutputFactory], OutputFactory]:
    """Register a factory ``factory(clock=..., **options) -> DigitalOutput`` under ``name`` (warns on a collision).

    Every factory takes the runtime's ``clock`` keyword (an output may time edges it makes itself).
    """
    return _REGISTRY.register(name)


def known_outputs() -> list[str]:
    """Registered output names, sorted."""
    return _REGISTRY.names()


def open_output(backend: str, clock: Clock, **options: Any) -> DigitalOutput:
    """Open an output of the backend registered as ``backend`` (at its safe level); ConfigError lists the known ones."""
    factory = _REGISTRY.get(backend)
    if factory is None:
        raise ConfigError(f"--gpio {backend!r}: unknown output; known outputs: {', '.join(known_outputs())}")
    return factory(clock=clock, **options)


@register_output("jetson")
def _open_jetson(clock: Clock, **options: Any) -> DigitalOutput:
    from edge_ad.line.jetson import JetsonOutput  # Jetson.GPIO raises on import off a Jetson

    return JetsonOutput(clock=clock, **options)


@register_output("gpiod")
def _open_gpiod(clock: Clock, **options: Any) -> DigitalOutput:
    from edge_ad.line.gpiod_backend import GpiodOutput

    return GpiodOutput(clock=clock, **options)


@dataclass(frozen=True)
class LineRecord:
    """One line of a file-backed sim output: ``open`` (level = default), ``edge`` or ``close``."""

    kind: str
    name: str
    t_ns: int
    level: bool
    pid: int


def read_line_file(path: Path) -> list[LineRecord]:
    """Parse a file written by file-backed :class:`SimOutput` s (a torn last line is ignored)."""
    records: list[LineRecord] = []
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if len(fields) != 5 or fields[0] not in ("open", "edge", "close"):
            continue  # a line cut short by a kill -9
        kind, name, t_ns, level, pid = fields
        records.append(LineRecord(kind, name, int(t_ns), level == "1", int(pid)))
    return records


@register_output("sim")
class SimOutput:
    """An in-memory output: records every level change as ``(t_ns, level)`` (thread-safe).

    ``clock`` times the falling edge that ``close`` writes when the line is still high. With ``path``
    every open, edge and close is also appended (flushed at once) to that file as
    ``kind name t_ns level pid``, so a test can read what the line did after the process was killed;
    :func:`read_line_file` parses it. ``name`` tells several outputs sharing one file apart.
    """

    def __init__(self, clock: Clock | None = None, path: Path | str | None = None, name: str = "reject") -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.level = SAFE_LEVEL
        self.timeline: list[tuple[int, bool]] = []
        self.closed = False
        self.ignored_after_close = 0
        self.name = name
        self._file = Path(path).open("a", buffering=1) if path is not None else None  # kept open: edges are appended as they happen
        self._write("open", clock.now_ns() if clock is not None else 0, SAFE_LEVEL)

    def _write(self, kind: str, t_ns: int, level: bool) -> None:
        if self._file is not None:
            self._file.write(f"{kind} {self.name} {t_ns} {int(level)} {os.getpid()}\n")
            self._file.flush()

    def set(self, level: bool, t_ns: int) -> None:
        """Record an edge when ``level`` differs from the current one (repeats are not edges).

        After ``close`` the line stays at its safe level: late calls are counted, not applied.
        """
        with self._lock:
            if self.closed:
                self.ignored_after_close += 1
                return
            self._apply(bool(level), int(t_ns))

    def close(self) -> None:
        """Drop to the safe level (recording the edge) and refuse further changes."""
        with self._lock:
            if self.closed:
                return
            if self.level != SAFE_LEVEL:
                last = self.timeline[-1][0]
                now = self._clock.now_ns() if self._clock is not None else last
                self._apply(SAFE_LEVEL, max(now, last))
            self.closed = True
            if self._file is not None:
                self._write("close", self._clock.now_ns() if self._clock is not None else 0, SAFE_LEVEL)
                self._file.close()

    def _apply(self, level: bool, t_ns: int) -> None:
        if level != self.level:
            self.level = level
            self.timeline.append((t_ns, level))
            self._write("edge", t_ns, level)

    def pulses(self) -> list[tuple[int, int | None]]:
        """``(rise_ns, fall_ns)`` of every pulse, ``fall_ns`` None for one still high."""
        with self._lock:
            edges = list(self.timeline)
        pulses: list[tuple[int, int | None]] = []
        for t_ns, level in edges:
            if level:
                pulses.append((t_ns, None))
            elif pulses and pulses[-1][1] is None:
                pulses[-1] = (pulses[-1][0], t_ns)
        return pulses
