"""Reject slots for tracked parts: reserved when a part enters the view, decided when it leaves.

The tracker numbers parts 0, 1, 2 ... in the order they open; this keeps the same numbering to take
each part's slot at its *trigger* (the frame on which it was seen entering, or that frame's encoder
count), long before its decision. With ``enforce`` off (replay as fast as possible: no real belt,
no deadline) a slot is made together with its decision, timed from the part's capture as before.

With a hardware trigger input (:mod:`edge_ad.line.trigger_match`) the slots are the triggers' instead:
taken at each trigger edge, a tracked part is matched to one when it enters (again when it leaves, if it
found none), its decision goes to that trigger's slot, and triggers no part matched come back from
:meth:`PartSlots.after_update` / :meth:`PartSlots.end` as unseen, already FAULT_REJECT.
"""

from __future__ import annotations

import dataclasses
from collections import deque
from collections.abc import Callable

from edge_ad.decision import Decision, FaultReason, fault
from edge_ad.errors import ConfigError
from edge_ad.frame import Frame
from edge_ad.line.inputs import DigitalInput
from edge_ad.line.reject import RejectScheduler
from edge_ad.line.trigger_match import Trigger, TriggerMatcher, TriggerWindow
from edge_ad.part_tracker import TrackedPart

_DEFAULT_WINDOW = TriggerWindow()
Unseen = tuple[TrackedPart, Decision]  # an unseen trigger as an empty part (for the record) and its decision


class PartSlots:
    """Bookkeeping between :class:`~edge_ad.part_tracker.PartTracker` and :class:`RejectScheduler`."""

    def __init__(
        self,
        scheduler: RejectScheduler,
        enforce: bool,
        count_at: Callable[[int], int | None] | None = None,
        trigger: DigitalInput | None = None,
        window: TriggerWindow | None = None,
        enter_frames: int = 1,
    ) -> None:
        """``trigger``: slots per trigger edge; ``enter_frames``: the tracker's debounce (to find a part's first frame)."""
        self.scheduler = scheduler
        self.enforce = enforce
        self.count_at = count_at
        self._open: int | None = None
        self._next = 0
        self.matcher: TriggerMatcher | None = None
        if trigger is not None:
            if not enforce:
                raise ConfigError("trigger input: needs a supervised (realtime) run; a lossless replay has no belt")
            self.matcher = TriggerMatcher(trigger, scheduler, window or _DEFAULT_WINDOW)
        # Arrivals of the last ``enter_frames`` inspected frames: a part opens on the last of them, and
        # the tracker debounced it in from the first (the frames it opened on are consecutive).
        self._recent: deque[int] = deque(maxlen=enter_frames)

    def _trigger(self, frame_number: int, arrival_ns: int) -> int:
        if self.scheduler.encoder is None:
            return arrival_ns
        count = self.count_at(frame_number) if self.count_at is not None else None
        return count if count is not None else self.scheduler.position()

    def poll_triggers(self) -> None:
        """Reserve slots for trigger edges seen since the last call (the actuator calls this every tick)."""
        if self.matcher is not None:
            self.matcher.poll()

    def after_update(self, in_part: bool, frame: Frame | None, closed: list[TrackedPart]) -> list[Unseen]:
        """Reserve slots for parts that opened with this frame (call after every tracker update/flush).

        Trigger mode: match the part that opened, and return the triggers no part can match any more.
        """
        if not self.enforce:
            return []
        if frame is not None:
            self._recent.append(frame.arrival_ns)
        for part in closed:
            if self.matcher is None:
                self.scheduler.reserve(part.part_id, self._trigger(part.first_frame, part.first_arrival_ns))
            if self._open == part.part_id:
                self._open = None
            self._next = max(self._next, part.part_id + 1)
        if in_part and self._open is None and frame is not None:
            self._open, self._next = self._next, self._next + 1
            if self.matcher is None:
                self.scheduler.reserve(self._open, self._trigger(frame.frame_number, frame.arrival_ns))
            else:
                self.matcher.match(self._open, self._recent[0])
        if self.matcher is None or frame is None:
            return []
        self.matcher.poll()  # edges the actuator has not taken yet may already be past their window
        # A part not opened yet has its first frame at or after the oldest frame the tracker may still open on.
        return self._unseen(self.matcher.expire(self._recent[0]))

    def end(self) -> list[Unseen]:
        """End of run (after the tracker's flush): every trigger still unmatched is unseen."""
        if self.matcher is None:
            return []
        self.matcher.poll()
        return self._unseen(self.matcher.expire(None))

    def claim_slot(self, part: TrackedPart) -> int | None:
        """The slot the part's decision goes to: its own id, or its trigger's; None for a phantom (counted)."""
        if self.matcher is None:
            return part.part_id
        trigger = self.matcher.match(part.part_id, part.first_arrival_ns)
        if trigger is None:
            self.matcher.phantom()
            return None
        self.matcher.forget(part.part_id)
        return trigger.trigger_id

    def already_faulted(self, slot: int) -> Decision | None:
        """The FAULT_REJECT slot ``slot`` got at its deadline, if it did (no point scoring its part then)."""
        if not self.enforce:
            return None
        decision = self.scheduler.slot_decision(slot)
        return decision if decision is not None and decision.is_fault else None

    def decide(self, slot: int, part: TrackedPart, decision: Decision) -> Decision:
        """Apply ``decision`` to ``slot`` (see :meth:`claim_slot`); returns what the gate will do (late: FAULT_REJECT)."""
        if not self.enforce:
            self.scheduler.schedule(part.part_id, part.capture_ns, decision)
            return decision
        if self.matcher is None:
            self.scheduler.reserve(slot, self._trigger(part.first_frame, part.first_arrival_ns))
        if self.scheduler.decide(slot, decision):
            return decision
        faulted = self.already_faulted(slot)
        return faulted if faulted is not None else decision

    def trigger_counts(self) -> dict[str, int]:
        """Trigger counters for the run summary (empty without a trigger input)."""
        return self.matcher.counts() if self.matcher is not None else {}

    def _unseen(self, triggers: list[Trigger]) -> list[Unseen]:
        unseen: list[Unseen] = []
        window = self.matcher.window if self.matcher is not None else _DEFAULT_WINDOW
        for trigger in triggers:
            decision = self.scheduler.slot_decision(trigger.trigger_id)  # its deadline may have come first
            if decision is None:
                decision = fault(
                    FaultReason.NO_FRAME,
                    f"trigger {trigger.trigger_id}: no part seen within [{window.min_s:g}, {window.max_s:g}] s "
                    "of the edge (frame gap or camera miss)",
                )
                if not self.scheduler.decide(trigger.trigger_id, decision):
                    decision = self.scheduler.slot_decision(trigger.trigger_id) or decision
            part = TrackedPart(trigger.trigger_id, -1, trigger.t_ns, exit_reason="unseen_trigger")
            unseen.append((part, decision))
        return unseen


def as_slot(part: TrackedPart, slot: int) -> TrackedPart:
    """``part`` under its slot's id (trigger mode records and archives a part by its trigger)."""
    return part if part.part_id == slot else dataclasses.replace(part, part_id=slot)
