"""Digital inputs: a hardware trigger (photo-eye) or reject-confirm line, read as timestamped rising edges.

An input never blocks the loop: edges are collected by the backend (a GPIO event callback or a reader
thread) and :meth:`DigitalInput.events` hands over the ones seen since the last call. ``sim`` is here;
``jetson`` and ``gpiod`` live in their backend modules and are imported only when opened.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from edge_ad.clock import Clock
from edge_ad.errors import ConfigError
from edge_ad.registry import Registry


@runtime_checkable
class DigitalInput(Protocol):
    """One input line with rising-edge detection."""

    def read(self) -> bool:
        """The current level."""
        ...

    def events(self) -> list[int]:
        """Clock times (ns) of the rising edges since the previous call, oldest first."""
        ...

    def close(self) -> None:
        """Stop edge detection and release the line (idempotent)."""
        ...


class EdgeBuffer:
    """Thread-safe, bounded store of edge times shared by the input backends (oldest dropped, counted)."""

    def __init__(self, maxlen: int = 1024) -> None:
        self._lock = threading.Lock()
        self._edges: collections.deque[int] = collections.deque(maxlen=maxlen)
        self.overflowed = 0

    def add(self, t_ns: int) -> None:
        """Record one edge (called from a GPIO callback or reader thread)."""
        with self._lock:
            if len(self._edges) == self._edges.maxlen:
                self.overflowed += 1
            self._edges.append(int(t_ns))

    def take(self) -> list[int]:
        """Every stored edge, oldest first; the buffer is emptied."""
        with self._lock:
            edges = list(self._edges)
            self._edges.clear()
            return edges


InputFactory = Callable[..., DigitalInput]
_REGISTRY: Registry[InputFactory] = Registry("input")


def register_input(name: str) -> Callable[[InputFactory], InputFactory]:
    """Register ``factory(clock=..., **options) -> DigitalInput`` under ``name`` (warns on a collision)."""
    return _REGISTRY.register(name)


def open_input(backend: str, clock: Clock, **options: Any) -> DigitalInput:
    """Open the input registered as ``backend``; ConfigError lists the known ones otherwise."""
    factory = _REGISTRY.get(backend)
    if factory is None:
        raise ConfigError(f"input {backend!r}: unknown backend; known inputs: {', '.join(sorted(_REGISTRY))}")
    return factory(clock=clock, **options)


@register_input("sim")
class SimInput:
    """An input driven by the test: :meth:`pulse` records a rising edge (and sets the level)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.level = False
        self._edges = EdgeBuffer()
        self.closed = False

    def pulse(self, t_ns: int | None = None) -> None:
        """A rising edge at ``t_ns`` (now by default); the level returns low right after."""
        self._edges.add(self.clock.now_ns() if t_ns is None else t_ns)

    def read(self) -> bool:
        return self.level

    def events(self) -> list[int]:
        return self._edges.take()

    def close(self) -> None:
        self.closed = True


@register_input("jetson")
def _open_jetson(clock: Clock, **options: Any) -> DigitalInput:
    from edge_ad.line.jetson import JetsonInput

    return JetsonInput(clock=clock, **options)


@register_input("gpiod")
def _open_gpiod(clock: Clock, **options: Any) -> DigitalInput:
    from edge_ad.line.gpiod_backend import GpiodInput

    return GpiodInput(clock=clock, **options)
