"""Digital outputs that drive the reject actuator; ``sim`` records a timeline instead of toggling a pin.

Level True = actuator energised (push the part off). An output starts at, and ``close`` returns it
to, its safe level False, so a crashed or stopped runtime leaves the gate idle. The Jetson.GPIO
and gpiod backends register here under their own names.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from typing import Any, Protocol, runtime_checkable

from edge_ad.clock import Clock
from edge_ad.errors import ConfigError

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
_REGISTRY: dict[str, OutputFactory] = {}


def register_output(name: str) -> Callable[[OutputFactory], OutputFactory]:
    """Register a factory ``factory(clock=..., **options) -> DigitalOutput`` under ``name`` (warns on a collision).

    Every factory takes the runtime's ``clock`` keyword (an output may time edges it makes itself).
    """

    def decorator(factory: OutputFactory) -> OutputFactory:
        if name in _REGISTRY and _REGISTRY[name] is not factory:
            warnings.warn(f"digital output {name!r} registered twice; the later one wins", stacklevel=2)
        _REGISTRY[name] = factory
        return factory

    return decorator


def known_outputs() -> list[str]:
    """Registered output names, sorted."""
    return sorted(_REGISTRY)


def open_output(name: str, clock: Clock, **options: Any) -> DigitalOutput:
    """Open the output registered as ``name`` (at its safe level); ConfigError lists the known names otherwise."""
    factory = _REGISTRY.get(name)
    if factory is None:
        raise ConfigError(f"--gpio {name!r}: unknown output; known outputs: {', '.join(known_outputs())}")
    return factory(clock=clock, **options)


@register_output("sim")
class SimOutput:
    """An in-memory output: records every level change as ``(t_ns, level)`` (thread-safe).

    ``clock`` times the falling edge that ``close`` writes when the line is still high.
    """

    def __init__(self, clock: Clock | None = None) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self.level = SAFE_LEVEL
        self.timeline: list[tuple[int, bool]] = []
        self.closed = False
        self.ignored_after_close = 0

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

    def _apply(self, level: bool, t_ns: int) -> None:
        if level != self.level:
            self.level = level
            self.timeline.append((t_ns, level))

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
