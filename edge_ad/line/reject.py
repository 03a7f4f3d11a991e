"""Reject scheduling: every part gets a slot at the gate, keyed by part id, timed from its trigger.

A slot is due at trigger + delay - actuator lead, where the trigger is the part's capture time (time
mode) or the belt encoder count at capture (encoder mode: positions, not time, so a stopped belt holds
its slots and a slow belt delays them). The window then lasts ``pulse_s``. Several parts are in flight at
once; a result is applied only to the slot of its own part id, never to "the next pulse".

Fail-safe rules:

* :meth:`RejectScheduler.reserve` takes the slot at trigger time. If no decision has arrived by the
  slot's deadline (= its due position), the part becomes FAULT_REJECT on the spot: a late or lost result
  never lets a part through, and a result arriving after that is counted and dropped.
* Polarity says what the line's energised level means. ``energize_to_reject``: the output fires the
  actuator during reject windows. ``energize_to_accept`` (positive release): the gate rejects *unless* the
  output is ON during the part's window, and the scheduler drives it ON only for parts decided ACCEPT in
  time (a reject window overlapping an accept window wins). Jetson GPIO does not hold state when the
  process dies (jetson-gpio #117; on JetPack 6 the pin reverts to its default pinmux state, #110), so only
  in positive-release wiring does a dead controller mean "reject" -- the wiring to prefer.
* :meth:`RejectScheduler.hold_safe` forces the gate's reject level (supervisor FAULT: stalled camera,
  hung model) until :meth:`RejectScheduler.release_safe`; a window that passes during a hold is a reject.

The scheduler owns no thread: the runtime's actuator thread (or a test on a FakeClock) calls :meth:`poll`.
"""

from __future__ import annotations

import collections
import threading
from collections import deque
from dataclasses import dataclass

from edge_ad.clock import Clock
from edge_ad.decision import Decision, FaultReason, Verdict, fault
from edge_ad.errors import ConfigError, EdgeAdError
from edge_ad.line.encoder import EncoderInput
from edge_ad.line.outputs import DigitalOutput
from edge_ad.line.timing import EncoderTiming, Polarity, RejectTiming

_FINISHED_KEPT = 4096
_DEFAULT_TIMING = RejectTiming()
__all__ = ["EncoderTiming", "Polarity", "RejectScheduler", "RejectTiming", "ScheduledPulse"]


# Reject slots kept for inspection by tests and the summary.
HISTORY_SLOTS = 10_000


@dataclass
class ScheduledPulse:
    """One part's slot: due at ``due`` (clock ns, or encoder counts in encoder mode), ``width_ns`` long.

    ``verdict`` is None until decided; ``deadline`` (same unit as ``due``) is None for a slot made with
    its decision already known. ``raised_ns``: clock time the window actually opened.
    """

    part_id: int
    verdict: Verdict | None
    due: int
    width_ns: int
    raised_ns: int | None = None
    deadline: int | None = None
    decision: Decision | None = None
    during_hold: bool = False

    @property
    def rise_ns(self) -> int:
        """The due position (named for time mode, where it is the clock time the window opens)."""
        return self.due

    @property
    def rejects(self) -> bool:
        """True when the part leaves the line at this slot (REJECT or FAULT_REJECT)."""
        return self.verdict is not None and self.verdict is not Verdict.ACCEPT

    @property
    def fall_ns(self) -> int:
        """When the window ends: a full width after it actually opened (time mode: or was due to)."""
        start = self.raised_ns if self.raised_ns is not None else self.due
        return start + self.width_ns


class RejectScheduler:
    """Part slots -> timed windows on a :class:`DigitalOutput` (thread-safe); see the module docstring."""

    def __init__(
        self,
        output: DigitalOutput,
        clock: Clock,
        timing: RejectTiming = _DEFAULT_TIMING,
        polarity: Polarity = Polarity.ENERGIZE_TO_REJECT,
        encoder: EncoderInput | None = None,
        encoder_timing: EncoderTiming | None = None,
    ) -> None:
        if (encoder is None) != (encoder_timing is None):
            raise ConfigError("reject scheduler: an encoder needs encoder timing (offset_counts) and vice versa")
        self.output, self.clock, self.timing = output, clock, timing
        self.polarity = Polarity(polarity)
        self.encoder, self.encoder_timing = encoder, encoder_timing
        self._lock = threading.Lock()
        self._slots: dict[int, ScheduledPulse] = {}
        # Finished slots, so a decision or reservation arriving after its window never makes a second one.
        self._finished: collections.OrderedDict[int, ScheduledPulse] = collections.OrderedDict()
        self._level = False
        self.safe_hold: str | None = None
        # The most recent reject slots, in decision order (bounded: a line runs for weeks).
        self.history: deque[ScheduledPulse] = deque(maxlen=HISTORY_SLOTS)
        self.missed: list[int] = []  # part ids faulted at their deadline, for the runtime to collect
        self.scheduled = self.fired = self.late = self.max_late_ns = 0
        self.reserved = self.deadline_misses = self.late_decisions = self.forced_rejects = 0
        self.max_late_counts = 0
        self.belt_stop_exceeded = False
        self._last_pos: int | None = None
        self._last_move_ns = clock.now_ns()
        if encoder_timing is None:
            self._offset = round(timing.delay_s * 1e9) - round(timing.actuator_lead_s * 1e9)
            self._tolerance = round(timing.late_tolerance_s * 1e9)
        else:
            self._offset = encoder_timing.offset_counts - encoder_timing.actuator_lead_counts
            self._tolerance = encoder_timing.late_tolerance_counts
        self._width_ns = round(timing.pulse_s * 1e9)

    def position(self) -> int:
        """Where the belt is: the encoder count, or the clock in time mode."""
        return self.encoder.count() if self.encoder is not None else self.clock.now_ns()

    def reserve(self, part_id: int, trigger: int | None = None) -> ScheduledPulse:
        """Take ``part_id``'s slot at its trigger (capture ns / encoder count; now by default), with a deadline."""
        with self._lock:
            return self._reserve(part_id, self.position() if trigger is None else trigger, deadline=True)

    def decide(self, part_id: int, decision: Decision) -> bool:
        """Give a reserved slot its decision; False (counted) when its deadline already made it FAULT_REJECT."""
        with self._lock:
            slot = self._slots.get(part_id) or self._finished.get(part_id)
            if slot is None:
                raise EdgeAdError(f"reject scheduler: decision for part {part_id}, which has no slot reserved")
            self._expire(self.position())
            if slot.verdict is not None:
                self.late_decisions += 1
                return False
            self._resolve(slot, decision)
            return True

    def schedule(self, part_id: int, capture_ns: int, decision: Decision) -> ScheduledPulse | None:
        """Slot and decision at once (replay: no deadline); returns the slot when it rejects, else None.

        A slot found already past its due time still opens, late and counted: never silently skipped.
        """
        with self._lock:
            slot = self._reserve(part_id, capture_ns, deadline=False)
            if slot.verdict is None:
                self._resolve(slot, decision)
            return slot if slot.rejects else None

    def hold_safe(self, reason: str) -> None:
        """Force the reject level now and keep it until :meth:`release_safe`."""
        with self._lock:
            self.safe_hold = reason
            self._apply(self.clock.now_ns())

    def release_safe(self) -> None:
        """End a safe hold; slots resume their own windows."""
        with self._lock:
            self.safe_hold = None
            self._apply(self.clock.now_ns())

    def slot_decision(self, part_id: int) -> Decision | None:
        """The decision a part's slot holds (its own, or the FAULT_REJECT of a missed deadline); None if none yet."""
        with self._lock:
            slot = self._slots.get(part_id) or self._finished.get(part_id)
            return slot.decision if slot is not None else None

    def take_missed(self) -> list[int]:
        """Part ids faulted at their deadline since the last call."""
        with self._lock:
            missed, self.missed = self.missed, []
            return missed

    @property
    def pending(self) -> int:
        """Slots not yet finished (undecided, waiting or open)."""
        with self._lock:
            return len(self._slots)

    @property
    def pending_rejects(self) -> int:
        """Reject slots whose window has not finished."""
        with self._lock:
            return sum(1 for slot in self._slots.values() if slot.rejects)

    def next_edge_ns(self) -> int | None:
        """Clock time of the next known deadline, opening or closing (time mode; closings only with an encoder)."""
        with self._lock:
            times = [s.fall_ns for s in self._slots.values() if s.raised_ns is not None]
            if self.encoder is None:
                times += [s.due for s in self._slots.values() if s.raised_ns is None]
            return min(times) if times else None

    def poll(self) -> bool:
        """Fault slots past their deadline, open and close windows due by now; returns the output level."""
        with self._lock:
            now, pos = self.clock.now_ns(), self.position()
            self._watch_belt(now, pos)
            self._expire(pos)
            for slot in list(self._slots.values()):
                if slot.raised_ns is None and slot.verdict is not None and pos >= slot.due:
                    slot.raised_ns = now
                    slot.during_hold = self.safe_hold is not None
                    lateness = pos - slot.due
                    if self.encoder is None:
                        self.max_late_ns = max(self.max_late_ns, lateness)
                    else:
                        self.max_late_counts = max(self.max_late_counts, lateness)
                    if lateness > self._tolerance:
                        self.late += 1
                if slot.raised_ns is not None and now >= slot.fall_ns:
                    self._finish(slot)
                    if slot.rejects:
                        self.fired += 1
                    elif slot.during_hold or self.safe_hold is not None:
                        self.forced_rejects += 1  # accepted, but the gate was held safe in its window
            return self._apply(now)

    # --- internals (called with the lock held) -----------------------------------------------------

    def _finish(self, slot: ScheduledPulse) -> None:
        del self._slots[slot.part_id]
        self._finished[slot.part_id] = slot
        while len(self._finished) > _FINISHED_KEPT:
            self._finished.popitem(last=False)

    def _reserve(self, part_id: int, trigger: int, deadline: bool) -> ScheduledPulse:
        existing = self._slots.get(part_id) or self._finished.get(part_id)
        if existing is not None:
            return existing
        due = int(trigger) + self._offset
        slot = ScheduledPulse(part_id, None, due, self._width_ns, deadline=due if deadline else None)
        self._slots[part_id] = slot
        self.reserved += 1
        return slot

    def _resolve(self, slot: ScheduledPulse, decision: Decision) -> None:
        slot.verdict, slot.decision = decision.verdict, decision
        if slot.rejects:
            self.scheduled += 1
            self.history.append(slot)
        elif self.polarity is Polarity.ENERGIZE_TO_REJECT:
            self._finish(slot)  # an accept needs no window when energised means reject

    def _expire(self, pos: int) -> None:
        for slot in list(self._slots.values()):
            if slot.verdict is None and slot.deadline is not None and pos >= slot.deadline:
                self._fault(slot, FaultReason.DEADLINE_MISS, f"no decision by slot position {slot.deadline}")
                self.deadline_misses += 1

    def _fault(self, slot: ScheduledPulse, reason: FaultReason, detail: str) -> None:
        self._resolve(slot, fault(reason, detail))
        self.missed.append(slot.part_id)

    def _watch_belt(self, now: int, pos: int) -> None:
        """Encoder mode: a belt stopped past ``max_hold_s`` with slots waiting applies the stop policy."""
        if self.encoder_timing is None:
            return
        if pos != self._last_pos or not self._slots:
            self._last_pos, self._last_move_ns = pos, now
            self.belt_stop_exceeded = False
            return
        if now - self._last_move_ns > self.encoder_timing.max_hold_s * 1e9 and not self.belt_stop_exceeded:
            self.belt_stop_exceeded = True
            if self.encoder_timing.stop_policy == "fault":
                for slot in list(self._slots.values()):
                    if slot.verdict is None:
                        self._fault(slot, FaultReason.NO_FRAME, "belt stopped longer than max_hold_s")

    def _apply(self, now: int) -> bool:
        open_slots = [s for s in self._slots.values() if s.raised_ns is not None]
        rejecting = any(s.rejects for s in open_slots)
        if self.polarity is Polarity.ENERGIZE_TO_REJECT:
            level = rejecting or self.safe_hold is not None
        else:
            accepting = any(s.verdict is Verdict.ACCEPT for s in open_slots)
            level = accepting and not rejecting and self.safe_hold is None
        if level != self._level:
            self.output.set(level, now)
            self._level = level
        return level
