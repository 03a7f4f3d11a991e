"""Capped exponential backoff and an error-rate breaker: the supervisor's two counting rules."""

from __future__ import annotations

import collections


class Backoff:
    """Capped exponential delays: ``initial``, 2x, 4x ... never above ``cap``; :meth:`reset` after success."""

    def __init__(self, initial_s: float, cap_s: float) -> None:
        self.initial_s, self.cap_s = initial_s, cap_s
        self._next = initial_s
        self.attempts = 0

    def next_delay(self) -> float:
        """The delay before the next attempt (counted)."""
        delay = self._next
        self._next = min(self._next * 2, self.cap_s)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """Start again from ``initial`` (attempts keep counting)."""
        self._next = self.initial_s


class ErrorRateBreaker:
    """Trips when more than ``limit`` errors fall within the last ``window_s``."""

    def __init__(self, limit: int, window_s: float) -> None:
        self.limit = limit
        self.window_ns = round(window_s * 1e9)
        self._times: collections.deque[int] = collections.deque()

    def record(self, now_ns: int) -> bool:
        """Count one error at ``now_ns``; True when the rate is over the limit."""
        self._times.append(now_ns)
        return self.over(now_ns)

    def over(self, now_ns: int) -> bool:
        """True while more than ``limit`` errors are inside the window ending now."""
        while self._times and now_ns - self._times[0] > self.window_ns:
            self._times.popleft()
        return len(self._times) > self.limit
