"""Status lines for the PLC: ready, fault, line stop, and a heartbeat that toggles.

A heartbeat is an *edge*, not a level: a static "OK" bit can stay high after its sender died, while a
toggle that stops is seen by a PLC edge watchdog (timer slightly longer than the period). It toggles
only when :meth:`StatusLines.beat` is called, which the supervisor does only from the healthy loop
path, never from a timer thread that would keep beating while the loop is wedged.
"""

from __future__ import annotations

from edge_ad.clock import Clock
from edge_ad.errors import ConfigError
from edge_ad.line.outputs import DigitalOutput

ROLES = ("ready", "fault", "line_stop", "heartbeat")


class StatusLines:
    """Optional status outputs by role; a role without an output is simply not driven.

    ``ready``: ON while RUNNING or DEGRADED (off when the process dies, since the pin reverts).
    ``fault`` and ``line_stop``: ON while in FAULT. ``heartbeat``: toggled at most every ``period_s``.
    """

    def __init__(self, clock: Clock, outputs: dict[str, DigitalOutput] | None = None, period_s: float = 0.05) -> None:
        outputs = dict(outputs or {})
        unknown = sorted(set(outputs) - set(ROLES))
        if unknown:
            raise ConfigError(f"status outputs: unknown role(s) {unknown}; known roles: {', '.join(ROLES)}")
        if not period_s > 0:
            raise ConfigError(f"status.heartbeat_period_s: must be > 0, got {period_s}")
        self.clock = clock
        self.outputs = outputs
        self.period_ns = round(period_s * 1e9)
        self._hb_level = False
        self._last_toggle_ns: int | None = None
        self.toggles = 0

    def show(self, ready: bool, fault: bool) -> None:
        """Drive ready / fault / line_stop for the supervisor's state."""
        now = self.clock.now_ns()
        for role, level in (("ready", ready), ("fault", fault), ("line_stop", fault)):
            output = self.outputs.get(role)
            if output is not None:
                output.set(level, now)

    def beat(self) -> bool:
        """Toggle the heartbeat if a period has passed since the last toggle; True when it toggled."""
        output = self.outputs.get("heartbeat")
        now = self.clock.now_ns()
        if output is None or (self._last_toggle_ns is not None and now - self._last_toggle_ns < self.period_ns):
            return False
        self._hb_level = not self._hb_level
        output.set(self._hb_level, now)
        self._last_toggle_ns = now
        self.toggles += 1
        return True

    def close(self) -> None:
        """Release every status output (each returns to its de-energised level)."""
        for output in self.outputs.values():
            output.close()
