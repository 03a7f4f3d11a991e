"""Injectable monotonic time: the runtime measures stages and deadlines through a Clock.

The wall clock jumps (NTP, daylight saving, an operator setting the time); deadlines and stage
timings must not, so everything asks a :class:`Clock` for monotonic nanoseconds and tests swap in
a :class:`FakeClock` that moves only when told to.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable


@runtime_checkable
class Clock(Protocol):
    """A source of monotonic time in nanoseconds."""

    def now_ns(self) -> int:
        """Current monotonic time in nanoseconds (arbitrary epoch, never goes backwards)."""
        ...


class MonotonicClock:
    """The real clock: ``time.monotonic_ns``."""

    def now_ns(self) -> int:
        """Current monotonic time in nanoseconds."""
        return time.monotonic_ns()


class FakeClock:
    """A clock for tests: starts at ``start_ns`` and advances only by ``advance`` or ``step_ns``.

    ``step_ns`` (default 0) is added after every reading, so code that reads the clock twice around
    a stage sees a known, non-zero duration without the test having to interleave calls.
    """

    def __init__(self, start_ns: int = 0, step_ns: int = 0) -> None:
        if start_ns < 0 or step_ns < 0:
            raise ValueError(f"FakeClock needs start_ns >= 0 and step_ns >= 0, got {start_ns}, {step_ns}")
        self._now = int(start_ns)
        self.step_ns = int(step_ns)

    def now_ns(self) -> int:
        """The current fake time; then moves forward by ``step_ns``."""
        now = self._now
        self._now += self.step_ns
        return now

    def advance(self, ns: int) -> None:
        """Move time forward by ``ns`` nanoseconds (never backwards: a monotonic clock cannot)."""
        if ns < 0:
            raise ValueError(f"a monotonic clock cannot go backwards (advance by {ns} ns)")
        self._now += int(ns)

    def advance_ms(self, ms: float) -> None:
        """Move time forward by ``ms`` milliseconds."""
        self.advance(round(ms * 1_000_000))


def elapsed_ms(start_ns: int, end_ns: int) -> float:
    """Milliseconds between two ``now_ns`` readings."""
    return (end_ns - start_ns) / 1_000_000.0
