"""Time-based reject scheduling: a pulse of fixed width at the part's capture time plus a delay.

The delay is the belt travel time from the camera's view to the actuator, so the pulse is timed
from when the part was *captured*, never from when its result happened to be ready. Several
parts can be in flight at once (decided, not yet at the actuator); overlapping pulses merge on
the output. The scheduler owns no thread: whoever drives it calls :meth:`RejectScheduler.poll`
(the runtime's actuator thread, or a test after advancing a FakeClock).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass

from edge_ad.clock import Clock
from edge_ad.decision import Decision, Verdict
from edge_ad.errors import ConfigError
from edge_ad.line.outputs import DigitalOutput


@dataclass(frozen=True)
class RejectTiming:
    """``delay_s``: capture -> part in front of the actuator; ``pulse_s``: how long the actuator fires.

    A pulse raised more than ``late_tolerance_s`` after its due time counts as late. The delay must
    exceed the decision latency (a part is decided once it has left the view, roughly half a
    passage after its best frame): the 1.5 s default covers the synthetic line's default speed.
    """

    delay_s: float = 1.5
    pulse_s: float = 0.05
    late_tolerance_s: float = 0.005

    def __post_init__(self) -> None:
        if not (math.isfinite(self.delay_s) and self.delay_s >= 0):
            raise ConfigError(f"reject.delay_s: must be a finite number >= 0, got {self.delay_s}")
        if not (math.isfinite(self.pulse_s) and self.pulse_s > 0):
            raise ConfigError(f"reject.pulse_s: must be > 0, got {self.pulse_s}")
        if not (math.isfinite(self.late_tolerance_s) and self.late_tolerance_s >= 0):
            raise ConfigError(f"reject.late_tolerance_s: must be a finite number >= 0, got {self.late_tolerance_s}")


@dataclass
class ScheduledPulse:
    """One part's reject pulse: due at ``rise_ns``; ``raised_ns`` is when the output actually went high."""

    part_id: int
    verdict: Verdict
    rise_ns: int
    width_ns: int
    raised_ns: int | None = None

    @property
    def fall_ns(self) -> int:
        """When the pulse ends: a full width after it actually rose (or was due to)."""
        start = self.raised_ns if self.raised_ns is not None else self.rise_ns
        return start + self.width_ns


class RejectScheduler:
    """Turns reject decisions into timed pulses on a :class:`DigitalOutput` (thread-safe)."""

    def __init__(self, output: DigitalOutput, clock: Clock, timing: RejectTiming = RejectTiming()) -> None:
        self.output = output
        self.clock = clock
        self.timing = timing
        self._lock = threading.Lock()
        self._pending: list[ScheduledPulse] = []
        self._level = False
        self.history: list[ScheduledPulse] = []
        self.scheduled = 0
        self.fired = 0
        self.late = 0
        self.max_late_ns = 0
        self._tolerance_ns = round(timing.late_tolerance_s * 1e9)

    def schedule(self, part_id: int, capture_ns: int, decision: Decision) -> ScheduledPulse | None:
        """Plan the pulse for a decided part (None for ACCEPT): rise at ``capture_ns`` + delay."""
        if not decision.rejects:
            return None
        pulse = ScheduledPulse(
            part_id,
            decision.verdict,
            capture_ns + round(self.timing.delay_s * 1e9),
            round(self.timing.pulse_s * 1e9),
        )
        with self._lock:
            self._pending.append(pulse)
            self._pending.sort(key=lambda p: p.rise_ns)
            self.history.append(pulse)
            self.scheduled += 1
        return pulse

    @property
    def pending(self) -> int:
        """Pulses not yet completed (waiting or high)."""
        with self._lock:
            return len(self._pending)

    def next_edge_ns(self) -> int | None:
        """Clock time of the next rise or fall, None when nothing is pending."""
        with self._lock:
            times = [p.rise_ns if p.raised_ns is None else p.fall_ns for p in self._pending]
        return min(times) if times else None

    def poll(self) -> bool:
        """Apply every edge due by now; returns the output level.

        A pulse found already past its rise time (the caller polled late, or the decision came
        after the part reached the actuator) still fires, for its full width from now, and is
        counted as late beyond the tolerance: a reject is never silently skipped.
        """
        with self._lock:
            now = self.clock.now_ns()
            for pulse in self._pending:
                if pulse.raised_ns is None and pulse.rise_ns <= now:
                    pulse.raised_ns = now
                    lateness = now - pulse.rise_ns
                    self.max_late_ns = max(self.max_late_ns, lateness)
                    if lateness > self._tolerance_ns:
                        self.late += 1
            remaining = [p for p in self._pending if p.raised_ns is None or p.fall_ns > now]
            self.fired += len(self._pending) - len(remaining)
            self._pending = remaining
            level = any(p.raised_ns is not None for p in self._pending)
            if level != self._level:
                self.output.set(level, now)
                self._level = level
            return level
